//! Attach on containerd (CRI `Attach`): joins a running container's main process, as
//! containerd's CRI does.
//!
//! - Output: what the process writes from now on, as the shim hands it over (the log pump
//!   tees it, see `task_io.rs`), so a shell's prompt shows before its newline.
//! - stdin: fed when the spec says `stdin: true` (the task then has a stdin FIFO that the
//!   runtime keeps open); refused otherwise. When the client closes its stdin, the attach
//!   ends; with `stdinOnce` and no terminal the process's stdin is closed instead, and the
//!   output stays attached until the container exits.
//! - A container with `tty: true` has a terminal: one output stream, resized through
//!   `Tasks.ResizePty`.

use std::future::Future;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{broadcast, watch};
use tracing::debug;

use super::task_io::{OutputChunk, StdinPipe};
use super::{ContainerdRuntime, exec};
use crate::session_pipes::{drain, session};
use crate::stream::{AttachRequest, ExecSession, LogStreamKind};
use crate::{ContainerState, Error, Result};

/// How much each stream of an attach buffers.
const PIPE_BYTES: usize = 64 * 1024;

/// Attaches to running container `id`.
pub(super) async fn attach(
    rt: &ContainerdRuntime,
    id: &str,
    request: AttachRequest,
) -> Result<ExecSession> {
    let (output, stdin_pipe, stdin_once, tty) = {
        let st = rt.inner.lock();
        let c = st
            .containers
            .get(id)
            .ok_or_else(|| super::not_found("container", id))?;
        let output = c
            .streams
            .output
            .as_ref()
            .filter(|_| c.status.state.is_running())
            .ok_or_else(|| Error::InvalidState {
                id: id.into(),
                message: "container is not running".into(),
            })?
            .subscribe();
        (
            output,
            c.streams.stdin.clone(),
            c.streams.stdin_once,
            c.streams.tty,
        )
    };
    if request.stdin && stdin_pipe.is_none() {
        // Upstream's kubelet refuses the same way: stdin was never opened for this process.
        return Err(Error::InvalidState {
            id: id.into(),
            message: "stdin is not open for this container (set `stdin: true` in its spec)".into(),
        });
    }
    let (in_w, in_r) = tokio::io::duplex(PIPE_BYTES);
    let (out_w, out_r) = tokio::io::duplex(PIPE_BYTES);
    let (err_w, err_r) = tokio::io::duplex(PIPE_BYTES);
    // Set once the client has closed its stdin and the attach ends with it.
    let (detach, detached) = watch::channel(false);
    match stdin_pipe.filter(|_| request.stdin) {
        Some(pipe) => {
            let feeder = Feeder {
                rt: rt.clone(),
                id: id.to_string(),
                pipe,
                close_stdin: stdin_once && !tty,
                detach,
            };
            tokio::spawn(feeder.feed(in_r));
        }
        None => {
            tokio::spawn(drain(in_r));
        }
    }
    tokio::spawn(forward_output(
        output,
        out_w,
        err_w,
        until_detached(detached.clone()),
    ));
    let exit = exit_code(rt.clone(), id.to_string(), until_detached(detached));
    let mut session = session(
        request.stdin,
        request.stdout,
        request.stderr,
        tty,
        (in_w, out_r, err_r),
        exit,
    );
    if tty {
        session.resize = Some(exec::resize_pty(rt.clone(), id.to_string(), String::new()));
    }
    Ok(session)
}

/// Resolves once the attach is detached; never, if it is not (its sender went without).
async fn until_detached(mut detached: watch::Receiver<bool>) {
    if detached.wait_for(|d| *d).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Copies what the client writes into the container's stdin.
struct Feeder {
    rt: ContainerdRuntime,
    id: String,
    pipe: StdinPipe,
    /// Close the process's stdin once the client closes its own (`stdinOnce` without a
    /// terminal); otherwise the attach ends then and stdin stays open for the next one.
    close_stdin: bool,
    detach: watch::Sender<bool>,
}

impl Feeder {
    async fn feed(self, mut from: DuplexStream) {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut guard = self.pipe.lock().await;
            let Some(stdin) = guard.as_mut() else {
                break;
            };
            if let Err(e) = stdin.write_all(&buf[..n]).await {
                debug!(container = %self.id, error = %e, "the container's stdin is closed");
                *guard = None;
                break;
            }
        }
        if self.close_stdin {
            // Dropping this side's write end, then the shim's, gives the process its end of
            // file.
            self.pipe.lock().await.take();
            exec::close_stdin(&self.rt, self.id.clone(), String::new()).await;
        } else {
            self.detach.send_replace(true);
        }
    }
}

/// Writes the container's output to the attach's stdout and stderr (a terminal has only
/// stdout) until the container's task is gone, the client detaches or `detached` resolves.
async fn forward_output(
    mut output: broadcast::Receiver<OutputChunk>,
    mut stdout: DuplexStream,
    mut stderr: DuplexStream,
    detached: impl Future<Output = ()>,
) {
    tokio::pin!(detached);
    loop {
        let received = tokio::select! {
            received = output.recv() => received,
            () = &mut detached => return,
        };
        match received {
            Ok(chunk) => {
                let to = match chunk.stream {
                    LogStreamKind::Stdout => &mut stdout,
                    LogStreamKind::Stderr => &mut stderr,
                };
                if to.write_all(&chunk.bytes).await.is_err() {
                    // The client detached.
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                debug!(missed, "an attach fell behind the container's output");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The container's exit code once it exits, or 0 once the attach is detached (the kubelet
/// reports success then).
async fn exit_code(
    rt: ContainerdRuntime,
    id: String,
    detached: impl Future<Output = ()>,
) -> Result<i32> {
    let mut version = {
        let st = rt.inner.lock();
        let c = st
            .containers
            .get(&id)
            .ok_or_else(|| super::not_found("container", &id))?;
        c.version.subscribe()
    };
    tokio::pin!(detached);
    loop {
        if let Some(c) = rt.inner.lock().containers.get(&id)
            && let ContainerState::Exited { exit_code, .. } = c.status.state
        {
            return Ok(exit_code);
        }
        tokio::select! {
            changed = version.changed() => if changed.is_err() {
                // Removed while running: it was killed.
                return Ok(137);
            },
            () = &mut detached => return Ok(0),
        }
    }
}
