//! Starting a container's main process: its own process group, its environment, its output
//! pumped into the CRI log file, and a task that records its exit.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::{Inner, backend_io};
use crate::container::{ContainerEventKind, ContainerState};
use crate::stream::{LogLine, LogStreamKind};
use crate::{Error, Result};

/// Lines longer than this are cut into partial (`P`) records, as CRI runtimes do.
pub(crate) const MAX_LOG_LINE: usize = 16 * 1024;

/// How long the log pumps may drain after the main process exited and its group was killed
/// (a process that left the group may hold the pipes open).
const DRAIN: Duration = Duration::from_secs(2);

/// Sends `signal` to the main process `pid` only, as a container runtime signals a
/// container's init. A process that is already gone is fine.
pub(crate) fn signal_main(pid: u32, signal: Signal) {
    signal_with(pid, signal, rustix::process::kill_process);
}

/// Sends `signal` to the process group `pgid`. A group that is already gone is fine.
pub(crate) fn kill_group(pgid: u32, signal: Signal) {
    signal_with(pgid, signal, rustix::process::kill_process_group);
}

fn signal_with(pgid: u32, signal: Signal, send: fn(Pid, Signal) -> rustix::io::Result<()>) {
    let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) else {
        return;
    };
    match send(pid, signal) {
        Ok(()) => {}
        Err(rustix::io::Errno::SRCH) => {}
        Err(e) => warn!(pgid, ?signal, error = %e, "signalling a process group failed"),
    }
}

/// The exit code a container reports: the process's own, or 128 + the signal that killed
/// it, as shells and upstream runtimes report.
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255)
}

/// A command for `argv` in its own process group (`pgid` 0) or the group `pgid`, with `env`
/// only and `dir` as its working directory, as `user` (uid, gid) if given.
pub(crate) fn command(
    argv: &[String],
    env: &[(String, String)],
    dir: &Path,
    pgid: u32,
    user: Option<(u32, u32)>,
) -> Result<Command> {
    let Some((program, args)) = argv.split_first() else {
        return Err(Error::InvalidState {
            id: String::new(),
            message: "no command to run".into(),
        });
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .process_group(i32::try_from(pgid).unwrap_or(0))
        .kill_on_drop(true);
    if let Some((uid, gid)) = user {
        // Set after fork, before exec; as root, the standard library also drops the
        // agent's supplementary groups.
        cmd.uid(uid).gid(gid);
    }
    Ok(cmd)
}

/// Why a program could not be started, in the words upstream runtimes use.
pub(crate) fn start_error(program: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound if !program.contains('/') => {
            format!("exec: \"{program}\": executable file not found in $PATH")
        }
        std::io::ErrorKind::NotFound => {
            format!("exec: \"{program}\": stat {program}: no such file or directory")
        }
        std::io::ErrorKind::PermissionDenied => {
            format!("exec: \"{program}\": permission denied")
        }
        _ => format!("exec: \"{program}\": {e}"),
    }
}

/// Spawns the main process of container `id` and the tasks that pump its output and record
/// its exit. Returns its pid.
pub(crate) fn start(inner: &Arc<Inner>, id: &str) -> Result<u32> {
    let (argv, env, dir, log_file, version, open_stdin, netns, user) = {
        let st = inner.lock();
        let c = st
            .containers
            .get(id)
            .ok_or_else(|| super::not_found("container", id))?;
        (
            c.argv.clone(),
            c.env.clone(),
            c.working_dir.clone(),
            c.log_file.clone(),
            c.version.clone(),
            c.open_stdin,
            c.netns.clone(),
            c.user,
        )
    };
    if let Some(parent) = log_file.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| backend_io(format!("create log directory {}", parent.display()), e))?;
    }
    let file = File::options()
        .create(true)
        .append(true)
        .open(&log_file)
        .map_err(|e| backend_io(format!("open log file {}", log_file.display()), e))?;
    let mut cmd = command(&argv, &env, &dir, 0, user)?;
    cmd.stdin(if open_stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let program = argv.first().cloned().unwrap_or_default();
    let mut child = spawn_in(&mut cmd, netns.as_deref()).map_err(|e| Error::Backend {
        context: start_error(&program, &e),
        source: Some(Box::new(e)),
    })?;
    let pid = child.id().ok_or_else(|| Error::Backend {
        context: format!("{program} exited before its pid was read"),
        source: None,
    })?;
    let sink = Arc::new(Mutex::new(file));
    let mut pumps = tokio::task::JoinSet::new();
    if let Some(out) = child.stdout.take() {
        pumps.spawn(pump(
            out,
            LogStreamKind::Stdout,
            sink.clone(),
            inner.clock.clone(),
            version.clone(),
        ));
    }
    if let Some(err) = child.stderr.take() {
        pumps.spawn(pump(
            err,
            LogStreamKind::Stderr,
            sink,
            inner.clock.clone(),
            version,
        ));
    }
    {
        // Running is recorded before the exit watcher exists, so an instant exit cannot be
        // overwritten.
        let mut st = inner.lock();
        if let Some(c) = st.containers.get_mut(id) {
            c.status.state = ContainerState::Running {
                started_at: inner.clock.now(),
            };
            c.pid = Some(pid);
            c.stdin = child
                .stdin
                .take()
                .map(|s| Arc::new(tokio::sync::Mutex::new(Some(s))));
            inner.emit(c, ContainerEventKind::Started);
        } else {
            // Removed while starting: the watcher below reaps it.
            kill_group(pid, Signal::KILL);
        }
    }
    tokio::spawn(watch_exit(
        Arc::downgrade(inner),
        id.to_string(),
        pid,
        child,
        pumps,
    ));
    Ok(pid)
}

/// Spawns `cmd`, inside the network namespace at `netns` if there is one. Namespaces belong
/// to threads, so a short-lived thread enters it and forks; the child inherits the thread's
/// namespace and no runtime thread ever changes its own.
pub(crate) fn spawn_in(cmd: &mut Command, netns: Option<&Path>) -> std::io::Result<Child> {
    let Some(netns) = netns else {
        return cmd.spawn();
    };
    let runtime = tokio::runtime::Handle::current();
    std::thread::scope(|s| {
        s.spawn(move || {
            // The child registers with the caller's reactor for its exit.
            let _enter = runtime.enter();
            let ns = File::open(netns)?;
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&ns),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            cmd.spawn()
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the spawning thread panicked")))
    })
}

/// Kills the group on drop, so a dropped tokio runtime (a test that ended, a panic) leaves
/// no process behind.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            kill_group(pgid, Signal::KILL);
        }
    }
}

async fn watch_exit(
    inner: Weak<Inner>,
    id: String,
    pid: u32,
    mut child: Child,
    mut pumps: tokio::task::JoinSet<()>,
) {
    let mut guard = GroupGuard(Some(pid));
    let status = child.wait().await;
    // The container ends with its main process: the rest of its group goes too.
    guard.0 = None;
    kill_group(pid, Signal::KILL);
    let drained =
        tokio::time::timeout(DRAIN, async { while pumps.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        debug!(container = %id, "log pipes stayed open after the container exited");
        pumps.abort_all();
    }
    let Some(inner) = inner.upgrade() else {
        return;
    };
    // Isolated mode: the kept cgroup says whether the OOM killer struck; then runc forgets
    // the container.
    let bundle = inner
        .lock()
        .containers
        .get(&id)
        .and_then(|c| c.bundle.clone());
    let reaped = match (&inner.isolation, bundle) {
        (Some(iso), Some(bundle)) => Some(iso.reap(&id, &bundle).await),
        _ => None,
    };
    let oom = reaped.as_ref().is_some_and(|r| r.oom);
    let start_error = reaped.and_then(|r| r.start_error);
    let start_failed = start_error.is_some();
    let (exit_code, message) = match (status, start_error) {
        (_, Some(message)) => (128, message),
        (Ok(s), None) => (exit_code(s), String::new()),
        (Err(e), None) => (255, format!("waiting for the process failed: {e}")),
    };
    let mut st = inner.lock();
    let Some(c) = st.containers.get_mut(&id) else {
        return;
    };
    let started_at = match &c.status.state {
        ContainerState::Running { started_at } => Some(*started_at),
        _ => None,
    };
    debug!(container = %id, pid, exit_code, "container process exited");
    // Attaches that still hold the pipe see it closed rather than writing into nothing.
    c.stdin = None;
    c.status.state = ContainerState::Exited {
        exit_code,
        reason: if start_failed {
            "StartError"
        } else if oom {
            "OOMKilled"
        } else if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
        .into(),
        message,
        started_at,
        finished_at: inner.clock.now(),
    };
    c.pid = None;
    c.version.send_modify(|v| *v += 1);
    inner.emit(c, ContainerEventKind::Stopped);
}

/// Copies one output stream into the log file, a CRI record per line.
pub(crate) async fn pump(
    stream: impl AsyncRead + Unpin,
    kind: LogStreamKind,
    sink: Arc<Mutex<File>>,
    clock: kybernetes_core::Clock,
    version: Arc<watch::Sender<u64>>,
) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match read_record(&mut reader, &mut buf).await {
            Ok(None) => return,
            Ok(Some(full)) => {
                let line = LogLine {
                    time: clock.now(),
                    stream: kind,
                    line: String::from_utf8_lossy(&buf).into_owned(),
                };
                let record = format!(
                    "{} {} {} {}\n",
                    line.time.format("%Y-%m-%dT%H:%M:%S%.9fZ"),
                    kind.as_str(),
                    if full { "F" } else { "P" },
                    line.line
                );
                let written = sink
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .write_all(record.as_bytes());
                if let Err(e) = written {
                    warn!(error = %e, "writing a container log failed");
                    return;
                }
                version.send_modify(|v| *v += 1);
            }
            Err(e) => {
                debug!(error = %e, "reading container output failed");
                return;
            }
        }
    }
}

/// Reads one line (without its newline) into `buf`, at most [`MAX_LOG_LINE`] bytes. Returns
/// whether the line is complete (`F`) or cut (`P`), or `None` at the end of the stream.
async fn read_record(
    reader: &mut BufReader<impl AsyncRead + Unpin>,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<bool>> {
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() { None } else { Some(true) });
        }
        let room = MAX_LOG_LINE - buf.len();
        let window = &available[..available.len().min(room)];
        if let Some(nl) = window.iter().position(|b| *b == b'\n') {
            buf.extend_from_slice(&window[..nl]);
            reader.consume(nl + 1);
            return Ok(Some(true));
        }
        let n = window.len();
        buf.extend_from_slice(window);
        reader.consume(n);
        if buf.len() >= MAX_LOG_LINE {
            return Ok(Some(false));
        }
    }
}
