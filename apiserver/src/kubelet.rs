//! How the API server reaches node agents (upstream's `pkg/kubelet/client`).
//!
//! The API server never holds a container runtime. Streaming subresources (`pods/log`,
//! `pods/exec`, `pods/attach`, `pods/portforward`) and resource metrics go to the node agent
//! of the pod's node through a [`KubeletConnection`], found by node name in the
//! [`KubeletDirectory`]. So does `nodes/proxy`; `pods/proxy` and `services/proxy` reach the
//! pod's port through the agent's port-forward. In-process node agents register an in-memory connection when they
//! start; an agent on another machine will register one that speaks HTTPS to it. Either way
//! the API server's handlers are the same.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use axum::body::Body;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use kybernetes_core::ApiError;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// Which container of which pod a request is for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerRef {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's UID, so that a request never reaches a newer pod of the same name.
    pub pod_uid: String,
    /// The container's name (already defaulted by the API server, as upstream does).
    pub container: String,
}

/// The `pods/log` query (upstream's `PodLogOptions`), already validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Keep the stream open and send new lines as they are written.
    pub follow: bool,
    /// Only the last N lines.
    pub tail_lines: Option<i64>,
    /// Only lines newer than this many seconds.
    pub since_seconds: Option<i64>,
    /// Only lines at or after this time.
    pub since_time: Option<DateTime<Utc>>,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// The previous, terminated instance of the container.
    pub previous: bool,
    /// Stop after this many bytes.
    pub limit_bytes: Option<i64>,
}

/// An exec or attach request: which streams, and with exec the command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// The command and its arguments (empty for attach).
    pub command: Vec<String>,
    /// Attach stdin.
    pub stdin: bool,
    /// Attach stdout.
    pub stdout: bool,
    /// Attach stderr (ignored with a terminal).
    pub stderr: bool,
    /// Allocate a terminal.
    pub tty: bool,
}

/// A terminal size from a resize message (channel 4 of the exec protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// A running exec or attach: the streams that were asked for, a resize channel with a
/// terminal, and the exit code once the process ends.
pub struct StreamSession {
    /// Write here to feed stdin; drop it to close stdin.
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    /// The process's stdout (with a terminal: the terminal's output).
    pub stdout: Option<Pin<Box<dyn AsyncRead + Send>>>,
    /// The process's stderr (`None` with a terminal).
    pub stderr: Option<Pin<Box<dyn AsyncRead + Send>>>,
    /// Resize the terminal (only with a terminal).
    pub resize: Option<mpsc::Sender<TerminalSize>>,
    /// Resolves to the exit code when the process ends.
    pub exit: BoxFuture<'static, Result<i32, ApiError>>,
}

impl StreamSession {
    /// A session with no streams whose process ends at once with `error`: what the client
    /// reads on the error channel when the command could not be started after the upgrade.
    pub fn failed(error: ApiError) -> Self {
        StreamSession {
            stdin: None,
            stdout: None,
            stderr: None,
            resize: None,
            exit: futures::future::ready(Err(error)).boxed(),
        }
    }
}

impl fmt::Debug for StreamSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSession")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("tty", &self.resize.is_some())
            .finish_non_exhaustive()
    }
}

/// A byte stream both ways: one port-forward connection to a port inside a pod.
pub trait DuplexStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> DuplexStream for T {}

/// CPU and memory use, as the metrics API reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResourceUsage {
    /// CPU in nanocores (a whole core is 1e9).
    pub cpu_nanocores: u64,
    /// Working-set memory in bytes.
    pub memory_bytes: u64,
}

/// One container's usage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerMetrics {
    /// The container's name.
    pub name: String,
    /// What it uses.
    pub usage: ResourceUsage,
}

/// One pod's usage, per container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodMetrics {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// Per running container.
    pub containers: Vec<ContainerMetrics>,
}

/// What a node agent reports at `/metrics/resource`: the node and its pods, sampled at one
/// time over one window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeResourceMetrics {
    /// When the sample was taken (cluster clock).
    pub timestamp: DateTime<Utc>,
    /// The window the CPU rate was measured over.
    pub window: std::time::Duration,
    /// The whole node.
    pub node: ResourceUsage,
    /// Each pod with running containers.
    pub pods: Vec<PodMetrics>,
}

/// The calls the API server makes to one node agent (upstream: the kubelet's server API).
#[async_trait]
pub trait KubeletConnection: Send + Sync + 'static {
    /// A container's log, as bytes (lines ending in `\n`, with timestamps if asked).
    async fn container_logs(
        &self,
        container: &ContainerRef,
        query: &LogQuery,
    ) -> Result<BoxStream<'static, Result<Bytes, ApiError>>, ApiError>;

    /// Runs a command in a running container.
    async fn exec(
        &self,
        container: &ContainerRef,
        options: &StreamOptions,
    ) -> Result<StreamSession, ApiError>;

    /// Attaches to a running container's main process.
    async fn attach(
        &self,
        container: &ContainerRef,
        options: &StreamOptions,
    ) -> Result<StreamSession, ApiError>;

    /// Opens one connection to `port` in the pod's network namespace.
    async fn port_forward(
        &self,
        namespace: &str,
        pod: &str,
        pod_uid: &str,
        port: u16,
    ) -> Result<Box<dyn DuplexStream>, ApiError>;

    /// The node's and its pods' current CPU and memory use.
    async fn resource_metrics(&self) -> Result<NodeResourceMetrics, ApiError>;

    /// Serves one HTTP request to the node agent's own endpoints (upstream's kubelet server:
    /// `/healthz`, `/pods`, `/stats/summary`, `/metrics/resource`), as `nodes/proxy` does.
    /// The request's URI is the path and query on the agent. It is plain HTTP both ways, so
    /// an agent on another machine forwards it over HTTPS unchanged.
    async fn proxy(&self, request: http::Request<Body>) -> Result<http::Response<Body>, ApiError>;
}

/// The node agents the API server can reach, by node name.
#[derive(Clone, Default)]
pub struct KubeletDirectory {
    nodes: Arc<RwLock<HashMap<String, Arc<dyn KubeletConnection>>>>,
}

impl fmt::Debug for KubeletDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeletDirectory")
            .field("nodes", &self.names())
            .finish()
    }
}

impl KubeletDirectory {
    /// Registers (or replaces) the connection to `node`'s agent.
    pub fn register(&self, node: &str, connection: Arc<dyn KubeletConnection>) {
        match self.nodes.write() {
            Ok(mut m) => {
                m.insert(node.to_string(), connection);
            }
            Err(poisoned) => {
                poisoned.into_inner().insert(node.to_string(), connection);
            }
        }
    }

    /// Forgets `node`'s agent (it stopped).
    pub fn unregister(&self, node: &str) {
        match self.nodes.write() {
            Ok(mut m) => {
                m.remove(node);
            }
            Err(poisoned) => {
                poisoned.into_inner().remove(node);
            }
        }
    }

    /// The connection to `node`'s agent, or 503-style error text if none is registered.
    pub fn connection(&self, node: &str) -> Result<Arc<dyn KubeletConnection>, ApiError> {
        let found = match self.nodes.read() {
            Ok(m) => m.get(node).cloned(),
            Err(poisoned) => poisoned.into_inner().get(node).cloned(),
        };
        found.ok_or_else(|| {
            ApiError::unavailable(format!("no node agent is reachable for node {node:?}"))
        })
    }

    /// Every registered node, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = match self.nodes.read() {
            Ok(m) => m.keys().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().keys().cloned().collect(),
        };
        v.sort();
        v
    }

    /// Every registered connection, with its node name.
    pub fn all(&self) -> Vec<(String, Arc<dyn KubeletConnection>)> {
        match self.nodes.read() {
            Ok(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(poisoned) => poisoned
                .into_inner()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}
