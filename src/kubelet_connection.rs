//! The in-process node agent's side of [`KubeletConnection`]: how the API server reaches the
//! containers of a node whose agent runs in this process, for logs, exec, attach,
//! port-forward, resource metrics and the agent's own HTTP endpoints (`nodes/proxy`).
//!
//! The API server holds no runtime: it finds this connection by node name in its
//! [`KubeletDirectory`](kybernetes_apiserver::kubelet::KubeletDirectory), and the connection
//! finds the container in the node's runtime by the labels the agent put on it. A node agent
//! on another machine will register a connection that makes the same calls over HTTPS.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use kybernetes_apiserver::kubelet::{
    ContainerMetrics, ContainerRef, DuplexStream, KubeletConnection, LogQuery, NodeResourceMetrics,
    PodMetrics, ResourceUsage, StreamOptions, StreamSession,
};
use kybernetes_core::{ApiError, Clock};
use kybernetes_node::{ContainerLogRequest, KubeletServer, ResourceSample};
use kybernetes_runtime::Runtime;

use crate::kubelet_streams;

/// The connection to a node agent running in this process.
pub struct InProcessKubelet {
    node: String,
    runtime: Arc<dyn Runtime>,
    clock: Clock,
    server: KubeletServer,
}

/// The largest request body the agent's endpoints read (they take none upstream).
const MAX_PROXY_BODY: usize = 1024 * 1024;

impl InProcessKubelet {
    /// The connection to node `node`, whose agent drives `runtime`; its `/pods` endpoint
    /// lists through `client`.
    pub fn new(node: &str, runtime: Arc<dyn Runtime>, client: kube::Client, clock: Clock) -> Self {
        InProcessKubelet {
            node: node.to_string(),
            server: KubeletServer::new(node, client, runtime.clone(), clock.clone()),
            runtime,
            clock,
        }
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
        let sample = self.server.resources().sample().await.map_err(|e| {
            ApiError::unavailable(format!(
                "node {:?} could not read its resource metrics: {e}",
                self.node
            ))
        })?;
        Ok(node_resource_metrics(sample))
    }

    async fn proxy(&self, request: http::Request<Body>) -> Result<http::Response<Body>, ApiError> {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, MAX_PROXY_BODY)
            .await
            .map_err(|e| {
                ApiError::bad_request(format!("the request body could not be read: {e}"))
            })?;
        let response = self
            .server
            .serve(http::Request::from_parts(parts, body))
            .await;
        Ok(response.map(Body::from))
    }
}

/// A node agent's sample in the API server's terms: per pod, and summed for the node.
fn node_resource_metrics(sample: ResourceSample) -> NodeResourceMetrics {
    let mut node = ResourceUsage::default();
    let mut pods: Vec<PodMetrics> = Vec::new();
    for c in sample.containers {
        node.cpu_nanocores = node.cpu_nanocores.saturating_add(c.cpu_nano_cores);
        node.memory_bytes = node.memory_bytes.saturating_add(c.memory_bytes);
        let usage = ResourceUsage {
            cpu_nanocores: c.cpu_nano_cores,
            memory_bytes: c.memory_bytes,
        };
        let container = ContainerMetrics {
            name: c.container,
            usage,
        };
        // Containers come sorted by pod, so a pod's are adjacent.
        match pods.last_mut() {
            Some(p) if p.namespace == c.namespace && p.name == c.pod => {
                p.containers.push(container);
            }
            _ => pods.push(PodMetrics {
                namespace: c.namespace,
                name: c.pod,
                containers: vec![container],
            }),
        }
    }
    NodeResourceMetrics {
        timestamp: sample.timestamp,
        window: sample.window,
        node,
        pods,
    }
}
