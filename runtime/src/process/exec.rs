//! exec in a process container: the command joins the container's process group (so a stop
//! ends it too) and runs with the container's environment and working directory.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures::FutureExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::Inner;
use super::spawn::{command, exit_code, start_error};
use crate::stream::{ExecRequest, ExecResult, ExecSession};
use crate::{Error, Result};

/// What an exec needs from its container.
pub(crate) struct ExecTarget {
    env: Vec<(String, String)>,
    dir: PathBuf,
    pgid: u32,
    user: Option<(u32, u32)>,
    /// Isolated mode: the `runc exec <id>` argv the command goes after.
    runc: Option<Vec<String>>,
}

impl ExecTarget {
    /// The running container `id`'s environment, directory and process group.
    pub(crate) fn of(inner: &Inner, id: &str) -> Result<ExecTarget> {
        let st = inner.lock();
        let c = st
            .containers
            .get(id)
            .ok_or_else(|| super::not_found("container", id))?;
        match (c.status.state.is_running(), c.pid, &inner.isolation) {
            (true, Some(_), Some(iso)) if c.bundle.is_some() => Ok(ExecTarget {
                // runc gives the command the container's environment, user and directory.
                env: Vec::new(),
                dir: c.working_dir.clone(),
                pgid: 0,
                user: None,
                runc: Some(iso.exec_argv(id)),
            }),
            (true, Some(pgid), _) => Ok(ExecTarget {
                env: c.env.clone(),
                dir: c.working_dir.clone(),
                pgid,
                user: c.user,
                runc: None,
            }),
            _ => Err(Error::InvalidState {
                id: id.into(),
                message: "container is not running".into(),
            }),
        }
    }

    fn command(&self, cmd: &[String]) -> Result<tokio::process::Command> {
        match &self.runc {
            Some(prefix) => {
                if cmd.is_empty() {
                    return command(cmd, &self.env, &self.dir, self.pgid, self.user);
                }
                let argv: Vec<String> = prefix.iter().chain(cmd).cloned().collect();
                command(&argv, &self.env, &self.dir, self.pgid, self.user)
            }
            None => command(cmd, &self.env, &self.dir, self.pgid, self.user),
        }
    }
}

fn spawn_error(cmd: &[String], e: std::io::Error) -> Error {
    let program = cmd.first().map(String::as_str).unwrap_or("");
    Error::Backend {
        context: start_error(program, &e),
        source: Some(Box::new(e)),
    }
}

/// Runs `cmd` to completion, up to `timeout`; a command still running then is killed.
pub(crate) async fn exec_sync(
    target: ExecTarget,
    cmd: &[String],
    timeout: Duration,
) -> Result<ExecResult> {
    let mut command = target.command(cmd)?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().map_err(|e| spawn_error(cmd, e))?;
    // On timeout the future, and with it the child (kill_on_drop), is dropped.
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(ExecResult {
            exit_code: exit_code(out.status),
            stdout: out.stdout.into(),
            stderr: out.stderr.into(),
        }),
        Ok(Err(e)) => Err(super::backend_io(format!("exec {cmd:?}"), e)),
        Err(_) => Err(Error::Timeout {
            operation: format!("exec {cmd:?}"),
            timeout,
        }),
    }
}

/// Copies `from` into the shared `to` chunk by chunk, until either side closes.
async fn forward(
    from: Option<impl tokio::io::AsyncRead + Unpin>,
    to: &tokio::sync::Mutex<tokio::io::DuplexStream>,
) {
    use tokio::io::AsyncReadExt;
    let Some(mut from) = from else {
        return;
    };
    let mut buf = vec![0u8; 8192];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.lock().await.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// How much a terminal session's merged output buffers.
const TTY_PIPE_BYTES: usize = 64 * 1024;

/// Starts `request.cmd` with the streams asked for. Host mode has no terminal: with `tty`,
/// stderr is merged into stdout and resizes are accepted and ignored.
pub(crate) fn exec(target: ExecTarget, request: ExecRequest) -> Result<ExecSession> {
    let mut command = target.command(&request.cmd)?;
    let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    command
        .stdin(piped(request.stdin))
        .stdout(piped(request.stdout))
        .stderr(piped(request.stderr || (request.tty && request.stdout)));
    let mut child = command.spawn().map_err(|e| spawn_error(&request.cmd, e))?;
    let stdin = child
        .stdin
        .take()
        .map(|s| Box::pin(s) as std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>);
    let out = child.stdout.take();
    let err = child.stderr.take();
    let (stdout, stderr, resize) = if request.tty {
        let (reader, writer) = tokio::io::duplex(TTY_PIPE_BYTES);
        let writer = std::sync::Arc::new(tokio::sync::Mutex::new(writer));
        tokio::spawn(async move {
            tokio::join!(forward(out, &writer), forward(err, &writer));
            // Closing the merged stream tells the reader the output ended; a reader that
            // went away already needs nothing more.
            let _ = writer.lock().await.shutdown().await;
        });
        let (tx, mut rx) = mpsc::channel(4);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let stdout: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>> = Box::pin(reader);
        (Some(stdout), None, Some(tx))
    } else {
        (
            out.map(|o| Box::pin(o) as std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>),
            err.map(|e| Box::pin(e) as std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>),
            None,
        )
    };
    let cmd = request.cmd.clone();
    let exit = async move {
        child
            .wait()
            .await
            .map(exit_code)
            .map_err(|e| super::backend_io(format!("exec {cmd:?}"), e))
    }
    .boxed();
    Ok(ExecSession {
        stdin,
        stdout,
        stderr,
        resize,
        exit,
    })
}
