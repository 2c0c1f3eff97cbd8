//! exec on containerd: a process added to the container's task (Tasks.Exec) with the
//! container's own process spec and another argv, its streams through FIFOs. With a terminal
//! (`kubectl exec -t`) the process gets a pty from the shim: one output FIFO (no stderr, as
//! CRI has it), and resizes through `Tasks.ResizePty`.

use std::path::PathBuf;
use std::time::Duration;

use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    CloseIoRequest, DeleteProcessRequest, ExecProcessRequest, KillRequest, ResizePtyRequest,
    StartRequest, WaitRequest,
};
use futures::FutureExt;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tracing::debug;

use super::{ContainerdRuntime, backend, grpc, is_not_found};
use crate::session_pipes::drain;
use crate::stream::{ExecRequest, ExecResult, ExecSession, TerminalSize};
use crate::{Error, Result};

/// The type URL containerd expects for a JSON OCI process spec.
const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// A started exec process: its output ends (no stderr with a terminal), its stdin, and what
/// ends it.
struct Started {
    stdout: pipe::Receiver,
    stderr: Option<pipe::Receiver>,
    stdin: Option<pipe::Sender>,
    finish: Finish,
}

/// Waits for an exec process and cleans up after it.
struct Finish {
    rt: ContainerdRuntime,
    container_id: String,
    exec_id: String,
    dir: PathBuf,
    /// Write ends held so that the readers see no end of file before the shim opens the
    /// FIFOs; dropped once the shim has flushed and closed its own.
    holders: Vec<pipe::Sender>,
}

impl Finish {
    /// The exit code, once the process has exited and been deleted.
    async fn wait(self) -> Result<i32> {
        let waited = TasksClient::new(self.rt.channel.clone())
            .wait(self.rt.request(
                WaitRequest {
                    container_id: self.container_id.clone(),
                    exec_id: self.exec_id.clone(),
                },
                None,
            )?)
            .await;
        let exec_id = self.exec_id.clone();
        self.delete().await;
        let status = waited.map_err(|s| grpc(format!("wait for exec {exec_id}"), s))?;
        Ok(i32::try_from(status.into_inner().exit_status).unwrap_or(255))
    }

    /// Deletes the process (the shim closes its streams then), and the FIFOs.
    async fn delete(self) {
        if let Ok(request) = self.rt.request(
            DeleteProcessRequest {
                container_id: self.container_id.clone(),
                exec_id: self.exec_id.clone(),
            },
            None,
        ) {
            match TasksClient::new(self.rt.channel.clone())
                .delete_process(request)
                .await
            {
                Ok(_) => {}
                Err(s) if is_not_found(&s) => {}
                Err(s) => {
                    debug!(exec = %self.exec_id, error = %s, "deleting an exec process failed")
                }
            }
        }
        drop(self.holders);
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            debug!(dir = %self.dir.display(), error = %e, "removing an exec's FIFOs failed");
        }
    }
}

/// Makes a FIFO at `path` (one already there is fine).
pub(super) fn fifo(path: &std::path::Path) -> Result<()> {
    match nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(backend(format!("create FIFO {}", path.display()), e)),
    }
}

/// How an exec process is wired: stdin fed, a terminal.
#[derive(Clone, Copy)]
struct Wiring {
    stdin: bool,
    tty: bool,
}

/// Starts `cmd` in running container `id`.
async fn start(
    rt: &ContainerdRuntime,
    id: &str,
    cmd: &[String],
    wiring: Wiring,
) -> Result<Started> {
    let mut process = {
        let st = rt.inner.lock();
        let c = st
            .containers
            .get(id)
            .ok_or_else(|| super::not_found("container", id))?;
        if !c.status.state.is_running() {
            return Err(Error::InvalidState {
                id: id.into(),
                message: "container is not running".into(),
            });
        }
        c.process.clone()
    };
    if cmd.is_empty() {
        return Err(Error::InvalidState {
            id: id.into(),
            message: "no command to exec".into(),
        });
    }
    process["args"] = serde_json::json!(cmd);
    process["terminal"] = serde_json::json!(wiring.tty);
    let exec_id = super::new_id();
    let dir = rt
        .inner
        .root
        .join("io")
        .join(format!("{id}-exec-{exec_id}"));
    std::fs::create_dir_all(&dir).map_err(|e| backend(format!("create {}", dir.display()), e))?;
    let mut finish = Finish {
        rt: rt.clone(),
        container_id: id.into(),
        exec_id: exec_id.clone(),
        dir: dir.clone(),
        holders: Vec::new(),
    };
    let opened = open_fifos(&dir, wiring, &mut finish.holders);
    let (stdout, stderr, stdin_w) = match opened {
        Ok(o) => o,
        Err(e) => {
            finish.delete().await;
            return Err(e);
        }
    };
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let spec = serde_json::to_vec(&process).map_err(|e| backend("encode the exec spec", e))?;
    let mut tasks = TasksClient::new(rt.channel.clone());
    let created = tasks
        .exec(rt.request(
            ExecProcessRequest {
                container_id: id.into(),
                stdin: if wiring.stdin {
                    path("stdin")
                } else {
                    String::new()
                },
                stdout: path("stdout"),
                stderr: if wiring.tty {
                    String::new()
                } else {
                    path("stderr")
                },
                terminal: wiring.tty,
                spec: Some(prost_types::Any {
                    type_url: PROCESS_TYPE_URL.into(),
                    value: spec,
                }),
                exec_id: exec_id.clone(),
            },
            None,
        )?)
        .await;
    let started = match created {
        Ok(_) => tasks
            .start(rt.request(
                StartRequest {
                    container_id: id.into(),
                    exec_id: exec_id.clone(),
                },
                None,
            )?)
            .await
            .map(|_| ()),
        Err(s) => Err(s),
    };
    if let Err(s) = started {
        finish.delete().await;
        return Err(Error::Backend {
            context: format!("exec {cmd:?} in container {id}: {}", s.message().trim()),
            source: Some(Box::new(s)),
        });
    }
    Ok(Started {
        stdout,
        stderr,
        stdin: stdin_w,
        finish,
    })
}

type Fifos = (pipe::Receiver, Option<pipe::Receiver>, Option<pipe::Sender>);

fn open_fifos(
    dir: &std::path::Path,
    wiring: Wiring,
    holders: &mut Vec<pipe::Sender>,
) -> Result<Fifos> {
    let open_err = |p: &std::path::Path, e| backend(format!("open FIFO {}", p.display()), e);
    let mut readers = Vec::new();
    let names: &[&str] = if wiring.tty {
        &["stdout"]
    } else {
        &["stdout", "stderr"]
    };
    for name in names {
        let p = dir.join(name);
        fifo(&p)?;
        readers.push(
            pipe::OpenOptions::new()
                .open_receiver(&p)
                .map_err(|e| open_err(&p, e))?,
        );
        holders.push(
            pipe::OpenOptions::new()
                .open_sender(&p)
                .map_err(|e| open_err(&p, e))?,
        );
    }
    let stdin = if wiring.stdin {
        let p = dir.join("stdin");
        fifo(&p)?;
        // Read-write, so that it opens before the shim opens the read end.
        Some(
            pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(&p)
                .map_err(|e| open_err(&p, e))?,
        )
    } else {
        None
    };
    let mut readers = readers.into_iter();
    let stdout = readers
        .next()
        .ok_or_else(|| backend("no stdout FIFO", std::io::Error::other("missing")))?;
    Ok((stdout, readers.next(), stdin))
}

/// Runs `cmd` in container `id` to completion, up to `timeout`; a command still running
/// then is killed.
pub(super) async fn exec_sync(
    rt: &ContainerdRuntime,
    id: &str,
    cmd: &[String],
    timeout: Duration,
) -> Result<ExecResult> {
    let Started {
        mut stdout,
        stderr,
        stdin: _,
        finish,
    } = start(
        rt,
        id,
        cmd,
        Wiring {
            stdin: false,
            tty: false,
        },
    )
    .await?;
    let mut stderr =
        stderr.ok_or_else(|| backend("no stderr FIFO", std::io::Error::other("missing")))?;
    let exec_id = finish.exec_id.clone();
    let run = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (code, o, e) = tokio::join!(
            finish.wait(),
            stdout.read_to_end(&mut out),
            stderr.read_to_end(&mut err)
        );
        for read in [o, e] {
            read.map_err(|e| backend(format!("read the output of exec {cmd:?}"), e))?;
        }
        Ok::<_, Error>(ExecResult {
            exit_code: code?,
            stdout: out.into(),
            stderr: err.into(),
        })
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(result) => result,
        Err(_) => {
            if let Ok(request) = rt.request(
                KillRequest {
                    container_id: id.into(),
                    exec_id: exec_id.clone(),
                    signal: 9,
                    all: false,
                },
                None,
            ) && let Err(s) = TasksClient::new(rt.channel.clone()).kill(request).await
            {
                debug!(exec = %exec_id, error = %s, "killing a timed-out exec failed");
            }
            Err(Error::Timeout {
                operation: format!("exec {cmd:?}"),
                timeout,
            })
        }
    }
}

/// Starts `request.cmd` with the streams asked for; with `tty`, on a terminal whose size
/// follows the session's resize messages.
pub(super) async fn exec(
    rt: &ContainerdRuntime,
    id: &str,
    request: ExecRequest,
) -> Result<ExecSession> {
    let wiring = Wiring {
        stdin: request.stdin,
        tty: request.tty,
    };
    let Started {
        stdout,
        stderr,
        stdin,
        finish,
    } = start(rt, id, &request.cmd, wiring).await?;
    let keep = |wanted: bool, r: Option<pipe::Receiver>| match r {
        Some(r) if wanted => {
            Some(Box::pin(r) as std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>)
        }
        Some(r) => {
            // A stream nobody asked for is drained, so the process never blocks writing it.
            tokio::spawn(drain(r));
            None
        }
        None => None,
    };
    let stdin = stdin.map(|fifo| {
        let (writer, reader) = tokio::io::duplex(64 * 1024);
        tokio::spawn(feed_stdin(
            rt.clone(),
            id.to_string(),
            finish.exec_id.clone(),
            reader,
            fifo,
        ));
        Box::pin(writer) as std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>
    });
    let resize = request
        .tty
        .then(|| resize_pty(rt.clone(), id.to_string(), finish.exec_id.clone()));
    // The wait runs on its own: the output streams end only once it has deleted the process,
    // and the caller may read them to the end before awaiting the exit.
    let waiter = tokio::spawn(finish.wait());
    Ok(ExecSession {
        stdin,
        stdout: keep(request.stdout, Some(stdout)),
        stderr: keep(request.stderr, stderr),
        resize,
        exit: async move {
            waiter
                .await
                .map_err(|e| backend("waiting for an exec process", e))?
        }
        .boxed(),
    })
}

/// A resize channel for the terminal of process `exec_id` of container `container_id` (the
/// main process for an empty `exec_id`): each size goes to `Tasks.ResizePty`, until the
/// session drops its sender.
pub(super) fn resize_pty(
    rt: ContainerdRuntime,
    container_id: String,
    exec_id: String,
) -> mpsc::Sender<TerminalSize> {
    let (tx, mut rx) = mpsc::channel::<TerminalSize>(4);
    tokio::spawn(async move {
        while let Some(size) = rx.recv().await {
            let request = match rt.request(
                ResizePtyRequest {
                    container_id: container_id.clone(),
                    exec_id: exec_id.clone(),
                    width: u32::from(size.width),
                    height: u32::from(size.height),
                },
                None,
            ) {
                Ok(r) => r,
                Err(e) => {
                    debug!(container = %container_id, error = %e, "a resize request failed");
                    continue;
                }
            };
            match TasksClient::new(rt.channel.clone())
                .resize_pty(request)
                .await
            {
                Ok(_) => {}
                // A resize that comes after the process ended is moot.
                Err(s) if is_not_found(&s) => {}
                Err(s) => {
                    debug!(container = %container_id, exec = %exec_id, error = %s, "resizing a terminal failed")
                }
            }
        }
    });
    tx
}

/// Copies the caller's stdin into the exec's stdin FIFO; once the caller closes it, tells the
/// shim to close the process's stdin (the shim holds a write end of its own until then).
async fn feed_stdin(
    rt: ContainerdRuntime,
    container_id: String,
    exec_id: String,
    mut from: tokio::io::DuplexStream,
    mut fifo: pipe::Sender,
) {
    if let Err(e) = tokio::io::copy(&mut from, &mut fifo).await {
        debug!(exec = %exec_id, error = %e, "feeding an exec's stdin ended");
    }
    drop(fifo);
    close_stdin(&rt, container_id, exec_id).await;
}

/// Tells the shim to close the stdin of process `exec_id` of container `container_id` (the
/// main process for an empty `exec_id`), which gives the process its end of file.
pub(super) async fn close_stdin(rt: &ContainerdRuntime, container_id: String, exec_id: String) {
    let Ok(request) = rt.request(
        CloseIoRequest {
            container_id: container_id.clone(),
            exec_id: exec_id.clone(),
            stdin: true,
        },
        None,
    ) else {
        return;
    };
    match TasksClient::new(rt.channel.clone()).close_io(request).await {
        Ok(_) => {}
        Err(s) if is_not_found(&s) => {}
        Err(s) => {
            debug!(container = %container_id, exec = %exec_id, error = %s, "closing a process's stdin failed")
        }
    }
}
