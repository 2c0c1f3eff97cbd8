//! The plumbing an exec or attach session shares across runtimes: the caller's ends of the
//! three pipes as an [`ExecSession`], and a container's log lines fed to an attach's
//! stdout and stderr.

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

use crate::Result;
use crate::stream::{ExecSession, LogLine, LogStreamKind};

/// An [`ExecSession`] over the caller's ends of the three pipes, keeping the ones asked for.
pub(crate) fn session(
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
    (in_w, out_r, err_r): (DuplexStream, DuplexStream, DuplexStream),
    exit: impl std::future::Future<Output = Result<i32>> + Send + 'static,
) -> ExecSession {
    let resize = tty.then(|| {
        let (tx, mut rx) = mpsc::channel(4);
        // A fake terminal has no size to change; take the messages so senders never block.
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        tx
    });
    // A stream nobody asked for is drained, so that the process never blocks writing it.
    let out_r = if stdout {
        Some(out_r)
    } else {
        tokio::spawn(drain(out_r));
        None
    };
    let err_r = if stderr && !tty {
        Some(err_r)
    } else {
        tokio::spawn(drain(err_r));
        None
    };
    ExecSession {
        stdin: stdin.then(|| Box::pin(in_w) as _),
        stdout: out_r.map(|r| Box::pin(r) as _),
        stderr: err_r.map(|r| Box::pin(r) as _),
        resize,
        exit: Box::pin(exit),
    }
}

/// Reads and discards until the end.
pub(crate) async fn drain(mut r: impl AsyncRead + Unpin) {
    let mut buf = [0u8; 4096];
    while matches!(r.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// Writes each new log line to stdout or stderr (both to stdout with a terminal).
pub(crate) async fn forward_log_lines(
    mut lines: BoxStream<'static, LogLine>,
    mut stdout: DuplexStream,
    mut stderr: DuplexStream,
    tty: bool,
) {
    while let Some(line) = lines.next().await {
        let to = if line.stream == LogStreamKind::Stderr && !tty {
            &mut stderr
        } else {
            &mut stdout
        };
        let mut bytes = line.line.into_bytes();
        bytes.push(b'\n');
        if to.write_all(&bytes).await.is_err() {
            // The client detached.
            return;
        }
    }
}
