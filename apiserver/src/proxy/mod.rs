//! The `proxy` subresources (upstream's `ProxyREST` of pods, services and nodes): an HTTP
//! request to `/api/v1/namespaces/NS/pods/NAME[:PORT]/proxy/PATH` is sent on to `PATH` on a
//! port of the pod, and its response streamed back.
//!
//! The API server holds no runtime and cannot route to pod addresses, so every road goes
//! through the node agent of the pod's node ([`crate::kubelet::KubeletConnection`]): a pod
//! or service proxy opens a port-forward connection there (the agent dials the port inside
//! the pod's network) and speaks HTTP/1.1 over it ([`transport`]); a node proxy hands the
//! request to the agent's own endpoints. Where to go is each kind's `ResourceLocation`
//! ([`location`]).

pub mod location;
pub mod transport;

use std::sync::Arc;

use axum::body::Body;
use http::request::Parts;
use kybernetes_core::ApiError;

use crate::Inner;
use crate::registry::ProxyKind;
use crate::request::RequestInfo;
use crate::response::ApiResponse;
use location::Location;

/// Serves one proxy request: finds where it goes, then sends it there.
pub(crate) async fn serve(
    inner: &Arc<Inner>,
    info: &RequestInfo,
    kind: ProxyKind,
    parts: Parts,
    body: Body,
) -> Result<ApiResponse, ApiError> {
    let id = info.name.as_deref().unwrap_or_default();
    let namespace = info.namespace.as_deref();
    let location = match kind {
        ProxyKind::Pod => location::pod(inner, namespace, id).await?,
        ProxyKind::Service => location::service(inner, namespace, id).await?,
        ProxyKind::Node => location::node(inner, id).await?,
    };
    let path = info.proxy_path.as_deref().unwrap_or("/");
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    match location {
        Location::Pod(target) => {
            let kubelet = inner.kubelets.connection(&target.node)?;
            let io = kubelet
                .port_forward(&target.namespace, &target.pod, &target.pod_uid, target.port)
                .await
                .map_err(|e| transport::unreachable(&target.address(), &e.message))?;
            let upstream = transport::Upstream {
                tls: target.tls,
                address: target.address(),
                ip: target.ip,
                path_and_query,
            };
            transport::forward(io, &upstream, parts, body).await
        }
        Location::Kubelet { node } => {
            let kubelet = inner.kubelets.connection(&node)?;
            let request = transport::outgoing(&parts, &path_and_query, &node, body)?;
            let response = kubelet.proxy(request).await?;
            Ok(transport::incoming(response))
        }
    }
}
