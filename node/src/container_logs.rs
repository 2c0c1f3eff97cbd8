//! A container's log for `pods/log` (upstream's kubelet `GetContainerLogs`): which instance
//! of the container to read, and the log lines as the bytes the API server streams.
//!
//! The node agent labels every container it creates with its pod's UID (unique across the
//! cluster, so agents sharing one runtime never read each other's) and its name in the pod
//! spec, and records the restart attempt in its metadata, so the current
//! instance is the newest attempt and `previous` is the one before it, as long as the
//! runtime still holds it.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use kybernetes_runtime::{ContainerFilter, LogOptions, Runtime, labels};

use crate::{Error, Result};

/// Which log to read and how (upstream's `PodLogOptions`, already validated and with the
/// container name defaulted by the API server).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerLogRequest {
    /// The pod's namespace (for messages).
    pub namespace: String,
    /// The pod's name (for messages).
    pub pod: String,
    /// The pod's UID: a newer pod of the same name never answers.
    pub pod_uid: String,
    /// The container's name in the pod spec.
    pub container: String,
    /// The previous, terminated instance instead of the current one.
    pub previous: bool,
    /// Keep the stream open until the container exits.
    pub follow: bool,
    /// Only the last N lines.
    pub tail_lines: Option<usize>,
    /// Only lines written at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Prefix each line with its RFC 3339 time, as upstream's `timestamps=true`.
    pub timestamps: bool,
    /// Stop after this many bytes (possibly mid-line, as upstream).
    pub limit_bytes: Option<u64>,
}

/// The log of one container instance as a byte stream: each line ends in `\n`.
pub async fn container_logs(
    runtime: &dyn Runtime,
    request: &ContainerLogRequest,
) -> Result<BoxStream<'static, Bytes>> {
    let id = instance(runtime, request).await?;
    let options = LogOptions {
        follow: request.follow,
        tail_lines: request.tail_lines,
        since: request.since,
    };
    let lines = runtime
        .logs(&id, &options)
        .await
        .map_err(|source| Error::Runtime {
            context: format!("read the log of container {id}"),
            source,
        })?;
    let timestamps = request.timestamps;
    let bytes = lines.map(move |l| {
        let text = if timestamps {
            format!(
                "{} {}\n",
                l.time.to_rfc3339_opts(SecondsFormat::Nanos, true),
                l.line
            )
        } else {
            format!("{}\n", l.line)
        };
        Bytes::from(text)
    });
    Ok(match request.limit_bytes {
        Some(limit) => limited(bytes, limit),
        None => bytes.boxed(),
    })
}

/// The runtime's id of the instance asked for: the newest attempt, or with `previous` the
/// one before it.
async fn instance(runtime: &dyn Runtime, request: &ContainerLogRequest) -> Result<String> {
    let filter = ContainerFilter {
        labels: BTreeMap::from([
            (labels::POD_UID.to_string(), request.pod_uid.clone()),
            (
                labels::CONTAINER_NAME.to_string(),
                request.container.clone(),
            ),
        ]),
        ..Default::default()
    };
    let mut found = runtime
        .list_containers(&filter)
        .await
        .map_err(|source| Error::Runtime {
            context: format!(
                "list the instances of container {:?} in pod {}/{}",
                request.container, request.namespace, request.pod
            ),
            source,
        })?;
    // Newest first: the attempt number orders restarts; creation time breaks ties.
    found.sort_by(|a, b| {
        (b.metadata.attempt, b.created_at).cmp(&(a.metadata.attempt, a.created_at))
    });
    let wanted = usize::from(request.previous);
    match found.into_iter().nth(wanted) {
        Some(c) => Ok(c.id),
        None if request.previous => Err(Error::ContainerNotFound {
            message: format!(
                "previous terminated container {:?} in pod {:?} not found",
                request.container, request.pod
            ),
        }),
        None => Err(Error::ContainerNotFound {
            message: format!(
                "container {:?} in pod {:?} is not available",
                request.container, request.pod
            ),
        }),
    }
}

/// Cuts a byte stream after `limit` bytes.
fn limited(
    bytes: impl futures::Stream<Item = Bytes> + Send + 'static,
    limit: u64,
) -> BoxStream<'static, Bytes> {
    bytes
        .scan(limit, |left, mut chunk| {
            if *left == 0 {
                return futures::future::ready(None);
            }
            let len = chunk.len() as u64;
            if len > *left {
                chunk.truncate(usize::try_from(*left).unwrap_or(usize::MAX));
            }
            *left = left.saturating_sub(len);
            futures::future::ready(Some(chunk))
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    #[tokio::test]
    async fn a_limit_cuts_mid_line_and_ends_the_stream() {
        let lines =
            stream::iter([b"one\n".as_slice(), b"two\n", b"three\n"].map(Bytes::from_static));
        let out: Vec<Bytes> = limited(lines, 6).collect().await;
        assert_eq!(out.concat(), b"one\ntw");
    }
}
