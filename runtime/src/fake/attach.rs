//! Attach to a fake container's main process: what it writes from now on (its new log
//! lines), and its stdin, which it echoes to its stdout if scripted to
//! ([`ContainerScript::echo_stdin`](super::ContainerScript::echo_stdin)).

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, BufReader, DuplexStream};

use super::Inner;
use super::logs::log_stream;
use crate::session_pipes::{forward_log_lines, session};
use crate::stream::{AttachRequest, ExecSession, LogLine, LogOptions, LogStreamKind};
use crate::{ContainerState, Error, Result};

/// How much each stream of an attach buffers.
const PIPE_BYTES: usize = 64 * 1024;

/// Attaches to running container `id`.
pub(crate) fn attach_session(
    inner: &Arc<Inner>,
    id: &str,
    request: AttachRequest,
    echo_stdin: bool,
) -> Result<ExecSession> {
    // Only what is written from now on, until the container exits.
    let lines = log_stream(
        inner,
        id,
        &LogOptions {
            follow: true,
            tail_lines: Some(0),
            since: None,
        },
    )?;
    let (in_w, in_r) = tokio::io::duplex(PIPE_BYTES);
    let (out_w, out_r) = tokio::io::duplex(PIPE_BYTES);
    let (err_w, err_r) = tokio::io::duplex(PIPE_BYTES);
    tokio::spawn(forward_log_lines(lines, out_w, err_w, request.tty));
    tokio::spawn(read_stdin(inner.clone(), id.to_string(), in_r, echo_stdin));
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

/// Takes what the client writes: with `echo`, each line becomes a stdout line of the
/// container (so every attach and the log see it); otherwise it is read and dropped.
async fn read_stdin(inner: Arc<Inner>, id: String, stdin: DuplexStream, echo: bool) {
    let mut stdin = BufReader::new(stdin);
    let mut line = String::new();
    loop {
        line.clear();
        match stdin.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if !echo {
            continue;
        }
        let text = line.strip_suffix('\n').unwrap_or(&line);
        let text = text.strip_suffix('\r').unwrap_or(text).to_string();
        let time = inner.clock.now();
        let mut st = inner.lock();
        match st.containers.get_mut(&id) {
            Some(c) if c.status.state.is_running() => c.push_log(LogLine {
                time,
                stream: LogStreamKind::Stdout,
                line: text,
            }),
            _ => return,
        }
    }
}

/// The container's exit code once it exits.
async fn exit_code(inner: Arc<Inner>, id: String) -> Result<i32> {
    let mut version = {
        let st = inner.lock();
        let c = st.containers.get(&id).ok_or_else(|| Error::NotFound {
            kind: "container",
            id: id.clone(),
        })?;
        c.log_version.subscribe()
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
