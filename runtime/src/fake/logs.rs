//! The fake's streams: log following and interactive exec.

use std::sync::Arc;

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::Inner;
use crate::stream::{ExecRequest, ExecResult, ExecSession, LogLine, LogOptions, LogStream};
use crate::{Error, Result};

struct Follow {
    inner: Arc<Inner>,
    id: String,
    next: usize,
    version: watch::Receiver<u64>,
    follow: bool,
    since: Option<chrono::DateTime<chrono::Utc>>,
}

enum Step {
    Line(LogLine),
    Skip,
    Wait,
    End,
}

impl Follow {
    fn step(&mut self) -> Step {
        let st = self.inner.lock();
        let Some(c) = st.containers.get(&self.id) else {
            return Step::End;
        };
        if let Some(line) = c.logs.get(self.next) {
            self.next += 1;
            if self.since.is_some_and(|s| line.time < s) {
                return Step::Skip;
            }
            return Step::Line(line.clone());
        }
        if !self.follow
            || !(c.status.state.is_running() || c.status.state == crate::ContainerState::Created)
        {
            return Step::End;
        }
        Step::Wait
    }
}

/// A container's log lines; with `follow`, new lines until it exits or is removed.
pub(crate) fn log_stream(inner: &Arc<Inner>, id: &str, options: &LogOptions) -> Result<LogStream> {
    let (start, version) = {
        let st = inner.lock();
        let c = st.containers.get(id).ok_or_else(|| Error::NotFound {
            kind: "container",
            id: id.into(),
        })?;
        let start = options
            .tail_lines
            .map(|n| c.logs.len().saturating_sub(n))
            .unwrap_or(0);
        (start, c.log_version.subscribe())
    };
    let state = Follow {
        inner: inner.clone(),
        id: id.to_string(),
        next: start,
        version,
        follow: options.follow,
        since: options.since,
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        loop {
            match s.step() {
                Step::Line(l) => return Some((l, s)),
                Step::Skip => continue,
                Step::End => return None,
                Step::Wait => {
                    if s.version.changed().await.is_err() {
                        // The container was removed: send what is left, then end.
                        s.follow = false;
                    }
                }
            }
        }
    });
    Ok(stream.boxed())
}

/// An exec session that prints the scripted result. `cat` echoes stdin to stdout.
pub(crate) fn exec_session(request: ExecRequest, result: ExecResult) -> ExecSession {
    let is_cat = request.cmd.first().is_some_and(|c| c == "cat") && request.cmd.len() == 1;
    let (out_w, out_r) = tokio::io::duplex(64 * 1024);
    let (err_w, err_r) = tokio::io::duplex(64 * 1024);
    let (in_w, in_r) = tokio::io::duplex(64 * 1024);
    let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
    let tty = request.tty;
    tokio::spawn(async move {
        let mut out_w = out_w;
        let mut err_w = err_w;
        let mut in_r = in_r;
        if is_cat {
            let _ = tokio::io::copy(&mut in_r, &mut out_w).await;
        } else {
            // Read and discard stdin until it closes, so writers never block.
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(in_r.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
        let _ = out_w.write_all(&result.stdout).await;
        if tty {
            let _ = out_w.write_all(&result.stderr).await;
        } else {
            let _ = err_w.write_all(&result.stderr).await;
        }
        drop(out_w);
        drop(err_w);
        let _ = exit_tx.send(result.exit_code);
    });
    let (resize, mut resize_rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move { while resize_rx.recv().await.is_some() {} });
    ExecSession {
        stdin: request.stdin.then(|| Box::pin(in_w) as _),
        stdout: request.stdout.then(|| Box::pin(out_r) as _),
        stderr: (request.stderr && !tty).then(|| Box::pin(err_r) as _),
        resize: tty.then_some(resize),
        exit: Box::pin(async move {
            exit_rx.await.map_err(|_| Error::Backend {
                context: "exec session ended without an exit code".into(),
                source: None,
            })
        }),
    }
}
