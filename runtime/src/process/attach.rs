//! Attach to a process container's main process (CRI `Attach`): what it writes from now on,
//! read back from its log as kubelet's attach does, and its stdin when the container spec
//! keeps stdin open. With `stdinOnce` the process sees end-of-file when the first attach
//! that fed its stdin detaches, as upstream runtimes close it.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::process::ChildStdin;
use tracing::debug;

use super::Inner;
use super::logs::log_stream;
use crate::session_pipes::{drain, forward_log_lines, session};
use crate::stream::{AttachRequest, ExecSession, LogOptions};
use crate::{ContainerState, Error, Result};

/// How much each stream of an attach buffers.
const PIPE_BYTES: usize = 64 * 1024;

/// The write end of a container's stdin, shared by its attaches; `None` once closed.
pub(crate) type StdinPipe = Arc<tokio::sync::Mutex<Option<ChildStdin>>>;

/// Attaches to running container `id`.
pub(crate) async fn attach_session(
    inner: &Arc<Inner>,
    id: &str,
    request: AttachRequest,
) -> Result<ExecSession> {
    let (stdin_pipe, stdin_once) = {
        let st = inner.lock();
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
        (c.stdin.clone(), c.stdin_once)
    };
    if request.stdin && stdin_pipe.is_none() {
        // Upstream's kubelet refuses the same way: stdin was never opened for this process.
        return Err(Error::InvalidState {
            id: id.into(),
            message: "stdin is not open for this container (set `stdin: true` in its spec)".into(),
        });
    }
    let lines = log_stream(
        inner,
        id,
        &LogOptions {
            follow: true,
            tail_lines: Some(0),
            since: None,
        },
    )
    .await?;
    let (in_w, in_r) = tokio::io::duplex(PIPE_BYTES);
    let (out_w, out_r) = tokio::io::duplex(PIPE_BYTES);
    let (err_w, err_r) = tokio::io::duplex(PIPE_BYTES);
    tokio::spawn(forward_log_lines(lines, out_w, err_w, request.tty));
    match stdin_pipe.filter(|_| request.stdin) {
        Some(pipe) => {
            tokio::spawn(feed_stdin(in_r, pipe, stdin_once, id.to_string()));
        }
        None => {
            tokio::spawn(drain(in_r));
        }
    }
    let exit = exit_code(inner.clone(), id.to_string());
    Ok(session(
        request.stdin,
        request.stdout,
        request.stderr,
        request.tty,
        (in_w, out_r, err_r),
        exit,
    ))
}

/// Copies what the client writes into the process's stdin until the client detaches; then,
/// with `stdin_once`, closes the process's stdin.
async fn feed_stdin(mut from: DuplexStream, pipe: StdinPipe, stdin_once: bool, id: String) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut guard = pipe.lock().await;
        let Some(stdin) = guard.as_mut() else {
            break;
        };
        if let Err(e) = stdin.write_all(&buf[..n]).await {
            debug!(container = %id, error = %e, "the process closed its stdin");
            *guard = None;
            return;
        }
        if let Err(e) = stdin.flush().await {
            debug!(container = %id, error = %e, "flushing the process's stdin failed");
        }
    }
    if stdin_once {
        // Dropping the write end is what gives the process its end-of-file.
        pipe.lock().await.take();
    }
}

/// The container's exit code once it exits.
async fn exit_code(inner: Arc<Inner>, id: String) -> Result<i32> {
    let mut version = {
        let st = inner.lock();
        let c = st
            .containers
            .get(&id)
            .ok_or_else(|| super::not_found("container", &id))?;
        c.version.subscribe()
    };
    loop {
        if let Some(c) = inner.lock().containers.get(&id)
            && let ContainerState::Exited { exit_code, .. } = c.status.state
        {
            return Ok(exit_code);
        }
        if version.changed().await.is_err() {
            // Removed while running: it was killed.
            return Ok(137);
        }
    }
}
