//! Reading a container's CRI log file, followed or not.

use std::collections::VecDeque;
use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;
use tracing::debug;

use super::Inner;
use crate::stream::{LogLine, LogOptions, LogStream, LogStreamKind};
use crate::{ContainerState, Result};

/// Parses one CRI log record: `<RFC3339Nano> <stream> <F|P> <text>`. Returns the line and
/// whether it is complete.
pub(crate) fn parse_record(record: &str) -> Option<(LogLine, bool)> {
    let mut parts = record.splitn(4, ' ');
    let time = DateTime::parse_from_rfc3339(parts.next()?).ok()?.to_utc();
    let stream = match parts.next()? {
        "stdout" => LogStreamKind::Stdout,
        "stderr" => LogStreamKind::Stderr,
        _ => return None,
    };
    let full = parts.next()? != "P";
    let line = parts.next().unwrap_or("").to_string();
    Some((LogLine { time, stream, line }, full))
}

/// Reads a log file from an offset, joining partial records.
struct Reader {
    path: PathBuf,
    offset: u64,
    partial: Option<LogLine>,
}

impl Reader {
    /// The complete lines written since the last call.
    async fn read_new(&mut self) -> std::io::Result<Vec<LogLine>> {
        let mut file = match tokio::fs::File::open(&self.path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(self.offset)).await?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).await?;
        let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else {
            return Ok(Vec::new());
        };
        self.offset += end as u64 + 1;
        let mut out = Vec::new();
        for record in String::from_utf8_lossy(&bytes[..end]).split('\n') {
            let Some((line, full)) = parse_record(record) else {
                debug!(path = %self.path.display(), "skipping a malformed log record");
                continue;
            };
            let line = match self.partial.take() {
                Some(mut head) => {
                    head.line.push_str(&line.line);
                    head
                }
                None => line,
            };
            if full {
                out.push(line);
            } else {
                self.partial = Some(line);
            }
        }
        Ok(out)
    }
}

/// Whether a container may still write to its log (created or running, and not removed).
pub(crate) type StillWriting = Box<dyn Fn() -> bool + Send + Sync>;

struct Follow {
    writing: StillWriting,
    id: String,
    reader: Reader,
    pending: VecDeque<LogLine>,
    version: watch::Receiver<u64>,
    follow: bool,
    since: Option<DateTime<Utc>>,
}

impl Follow {
    async fn next_line(&mut self) -> Option<LogLine> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                if self.since.is_some_and(|s| line.time < s) {
                    continue;
                }
                return Some(line);
            }
            // Read the state before the file: a line written just before an exit is then
            // still read below.
            let writing = self.follow && (self.writing)();
            self.version.borrow_and_update();
            match self.reader.read_new().await {
                Ok(lines) if !lines.is_empty() => {
                    self.pending.extend(lines);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    debug!(container = %self.id, error = %e, "reading a container log failed");
                    return None;
                }
            }
            if !writing {
                return None;
            }
            if self.version.changed().await.is_err() {
                // Removed: read what is left, then end.
                self.follow = false;
            }
        }
    }
}

/// A container's log lines; with `follow`, new lines until it exits or is removed.
pub(crate) async fn log_stream(
    inner: &Arc<Inner>,
    id: &str,
    options: &LogOptions,
) -> Result<LogStream> {
    let (path, version) = {
        let st = inner.lock();
        let c = st
            .containers
            .get(id)
            .ok_or_else(|| super::not_found("container", id))?;
        (c.log_file.clone(), c.version.subscribe())
    };
    let (inner, container) = (inner.clone(), id.to_string());
    let writing = Box::new(move || {
        inner.lock().containers.get(&container).is_some_and(|c| {
            matches!(
                c.status.state,
                ContainerState::Created | ContainerState::Running { .. }
            )
        })
    });
    follow_file(id, path, version, writing, options).await
}

/// The lines of the CRI log file at `path` of container `id`; with `options.follow`, new
/// lines too while `writing` says the container may still write, woken by `version`, which
/// the writer bumps on every line and on exit (and drops on removal).
pub(crate) async fn follow_file(
    id: &str,
    path: PathBuf,
    version: watch::Receiver<u64>,
    writing: StillWriting,
    options: &LogOptions,
) -> Result<LogStream> {
    let mut reader = Reader {
        path,
        offset: 0,
        partial: None,
    };
    let mut pending = VecDeque::new();
    if let Some(n) = options.tail_lines {
        let lines = reader
            .read_new()
            .await
            .map_err(|e| super::backend_io(format!("read the log of container {id}"), e))?;
        let skip = lines.len().saturating_sub(n);
        pending.extend(lines.into_iter().skip(skip));
    }
    let state = Follow {
        writing,
        id: id.to_string(),
        reader,
        pending,
        version,
        follow: options.follow,
        since: options.since,
    };
    let stream =
        futures::stream::unfold(
            state,
            |mut s| async move { s.next_line().await.map(|l| (l, s)) },
        );
    Ok(stream.boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_with_their_stream_and_tag() {
        let (l, full) = parse_record("2024-01-02T03:04:05.000000001Z stderr P a b").unwrap();
        assert_eq!(
            (l.stream, l.line.as_str(), full),
            (LogStreamKind::Stderr, "a b", false)
        );
        let (l, full) = parse_record("2024-01-02T03:04:05Z stdout F ").unwrap();
        assert_eq!((l.line.as_str(), full), ("", true));
        assert!(parse_record("garbage").is_none());
    }
}
