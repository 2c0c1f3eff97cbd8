//! The fake's log streams, followed or not.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::watch;

use super::Inner;
use crate::stream::{LogLine, LogOptions, LogStream};
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
