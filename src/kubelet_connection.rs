//! The in-process node agent's side of [`KubeletConnection`]: how the API server reaches the
//! containers of a node whose agent runs in this process, for logs, exec, attach,
//! port-forward and resource metrics.
//!
//! The API server holds no runtime: it finds this connection by node name in its
//! [`KubeletDirectory`](kybernetes_apiserver::kubelet::KubeletDirectory), and the connection
//! finds the container in the node's runtime by the labels the agent put on it. A node agent
//! on another machine will register a connection that makes the same calls over HTTPS.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use kybernetes_apiserver::kubelet::{
    ContainerRef, DuplexStream, KubeletConnection, LogQuery, NodeResourceMetrics, StreamOptions,
    StreamSession,
};
use kybernetes_core::{ApiError, Clock};
use kybernetes_net::Network;
use kybernetes_node::ContainerLogRequest;
use kybernetes_runtime::Runtime;

use crate::kubelet_streams;

/// The connection to a node agent running in this process.
pub struct InProcessKubelet {
    node: String,
    runtime: Arc<dyn Runtime>,
    network: Arc<dyn Network>,
    clock: Clock,
}

impl InProcessKubelet {
    /// The connection to node `node`, whose agent drives `runtime` and `network`.
    pub fn new(
        node: &str,
        runtime: Arc<dyn Runtime>,
        network: Arc<dyn Network>,
        clock: Clock,
    ) -> Self {
        InProcessKubelet {
            node: node.to_string(),
            runtime,
            network,
            clock,
        }
    }

    fn not_wired(&self, what: &str) -> ApiError {
        let _ = (&self.runtime, &self.network, &self.clock);
        ApiError::unavailable(format!("{what} is not served by node {:?} yet", self.node))
    }
}

#[async_trait]
impl KubeletConnection for InProcessKubelet {
    async fn container_logs(
        &self,
        container: &ContainerRef,
        query: &LogQuery,
    ) -> Result<BoxStream<'static, Result<Bytes, ApiError>>, ApiError> {
        let since = match (query.since_time, query.since_seconds) {
            (Some(t), _) => Some(t),
            (None, Some(secs)) => Some(self.clock.now() - chrono::Duration::seconds(secs)),
            (None, None) => None,
        };
        let request = ContainerLogRequest {
            namespace: container.namespace.clone(),
            pod: container.pod.clone(),
            pod_uid: container.pod_uid.clone(),
            container: container.container.clone(),
            previous: query.previous,
            follow: query.follow,
            tail_lines: query.tail_lines.and_then(|n| usize::try_from(n).ok()),
            since,
            timestamps: query.timestamps,
            limit_bytes: query.limit_bytes.and_then(|n| u64::try_from(n).ok()),
        };
        match kybernetes_node::container_logs(self.runtime.as_ref(), &request).await {
            Ok(lines) => Ok(lines.map(Ok).boxed()),
            // Upstream's kubelet answers a container it cannot find with 400, which the API
            // server passes on.
            Err(kybernetes_node::Error::ContainerNotFound { message }) => {
                Err(ApiError::bad_request(message))
            }
            Err(e) => Err(ApiError::internal(format!(
                "node {:?} could not read the log: {e}",
                self.node
            ))),
        }
    }

    async fn exec(
        &self,
        container: &ContainerRef,
        options: &StreamOptions,
    ) -> Result<StreamSession, ApiError> {
        kubelet_streams::exec(&*self.runtime, container, options).await
    }

    async fn attach(
        &self,
        container: &ContainerRef,
        options: &StreamOptions,
    ) -> Result<StreamSession, ApiError> {
        kubelet_streams::attach(&*self.runtime, container, options).await
    }

    async fn port_forward(
        &self,
        namespace: &str,
        pod: &str,
        pod_uid: &str,
        port: u16,
    ) -> Result<Box<dyn DuplexStream>, ApiError> {
        kubelet_streams::port_forward(&*self.runtime, namespace, pod, pod_uid, port).await
    }

    async fn resource_metrics(&self) -> Result<NodeResourceMetrics, ApiError> {
        Err(self.not_wired("metrics/resource"))
    }
}
