//! Sending a proxied request on and its response back (upstream's `UpgradeAwareHandler`
//! with its reverse proxy): one HTTP/1.1 client connection over the stream the node agent
//! opened to the pod's port, TLS on top for `https:` names. Hop-by-hop headers are dropped
//! both ways, and so are the client's credentials, which were meant for the API server.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Request, Response, Uri, Version};
use hyper_util::rt::TokioIo;
use kybernetes_core::ApiError;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::kubelet::DuplexStream;
use crate::response::ApiResponse;

/// Where the request goes once connected.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Speak TLS over the connection.
    pub tls: bool,
    /// `ip:port`, for the `Host` header when the client sent none.
    pub address: String,
    /// The pod's IP, the TLS server name.
    pub ip: IpAddr,
    /// The path and query on the pod.
    pub path_and_query: String,
}

/// The 503 of a port that cannot be reached, as upstream words it.
pub fn unreachable(address: &str, why: &str) -> ApiError {
    ApiError::unavailable(format!(
        "error trying to reach service: dial tcp {address}: {why}"
    ))
}

/// Drops hop-by-hop headers, and `Upgrade` too: upgrades are not proxied.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    kybernetes_core::hop_by_hop::strip_hop_by_hop(headers);
    headers.remove(header::UPGRADE);
}

/// The request to send on: the client's method, headers (less hop-by-hop ones and its
/// credentials: upstream's authentication filter removes `Authorization` once it has
/// authenticated the request) and body, to `path_and_query`. `Host` stays the client's, as
/// upstream's proxy leaves it, or is `default_host` when the client sent none (HTTP/2).
pub fn outgoing(
    parts: &Parts,
    path_and_query: &str,
    default_host: &str,
    body: Body,
) -> Result<Request<Body>, ApiError> {
    let uri: Uri = path_and_query.parse().map_err(|e| {
        ApiError::bad_request(format!("invalid proxy path {path_and_query:?}: {e}"))
    })?;
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(header::AUTHORIZATION);
    if !headers.contains_key(header::HOST) {
        let host = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| default_host.to_string());
        let value = HeaderValue::from_str(&host)
            .map_err(|e| ApiError::bad_request(format!("invalid host {host:?}: {e}")))?;
        headers.insert(header::HOST, value);
    }
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Ok(request)
}

/// The upstream response as the client's: hop-by-hop headers dropped, the body streamed.
pub fn incoming<B>(response: Response<B>) -> ApiResponse
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.version = Version::HTTP_11;
    Response::from_parts(parts, Body::new(body))
}

/// Sends the client's request over `io` (the connection to the pod's port) and streams the
/// response back.
pub async fn forward(
    io: Box<dyn DuplexStream>,
    upstream: &Upstream,
    parts: Parts,
    body: Body,
) -> Result<ApiResponse, ApiError> {
    let request = outgoing(&parts, &upstream.path_and_query, &upstream.address, body)?;
    if !upstream.tls {
        return send(io, request, &upstream.address).await;
    }
    let tls = tokio_rustls::TlsConnector::from(insecure_client_config()?)
        .connect(ServerName::IpAddress(upstream.ip.into()), io)
        .await
        .map_err(|e| unreachable(&upstream.address, &format!("TLS handshake: {e}")))?;
    send(tls, request, &upstream.address).await
}

async fn send<IO>(io: IO, request: Request<Body>, address: &str) -> Result<ApiResponse, ApiError>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| unreachable(address, &e.to_string()))?;
    let address_owned = address.to_string();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(address = %address_owned, error = %e, "proxied connection ended with an error");
        }
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(address, &e.to_string()))?;
    Ok(incoming(response))
}

/// Upstream's proxy transport does not verify the certificates of pods (`InsecureSkipVerify`),
/// see [`kybernetes_core::pod_tls`].
fn insecure_client_config() -> Result<Arc<rustls::ClientConfig>, ApiError> {
    kybernetes_core::pod_tls::insecure_skip_verify_config()
        .map_err(|e| ApiError::internal(format!("TLS client configuration: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_credentials_are_not_passed_on() {
        let (mut parts, ()) = Request::get("/api/v1/namespaces/default/pods/web/proxy/")
            .header("connection", "keep-alive, x-private")
            .header("x-private", "1")
            .header("keep-alive", "timeout=5")
            .header("transfer-encoding", "chunked")
            .header("upgrade", "websocket")
            .header("authorization", "Bearer secret")
            .header("accept", "text/plain")
            .header("host", "127.0.0.1:6443")
            .body(())
            .expect("request")
            .into_parts();
        parts
            .headers
            .append("x-other", HeaderValue::from_static("kept"));
        let out = outgoing(&parts, "/index.html?a=1", "10.244.0.5:80", Body::empty())
            .expect("outgoing request");
        let h = out.headers();
        for gone in [
            "connection",
            "x-private",
            "keep-alive",
            "transfer-encoding",
            "upgrade",
            "authorization",
        ] {
            assert!(!h.contains_key(gone), "{gone} was passed on");
        }
        assert_eq!(
            h.get("accept").map(|v| v.as_bytes()),
            Some(&b"text/plain"[..])
        );
        assert_eq!(
            h.get("host").map(|v| v.as_bytes()),
            Some(&b"127.0.0.1:6443"[..])
        );
        assert_eq!(out.uri(), "/index.html?a=1");
    }

    #[test]
    fn a_request_without_host_gets_the_target_address() {
        let (parts, ()) = Request::get("/x").body(()).expect("request").into_parts();
        let out = outgoing(&parts, "/", "10.244.0.5:80", Body::empty()).expect("outgoing");
        assert_eq!(
            out.headers().get("host").map(|v| v.as_bytes()),
            Some(&b"10.244.0.5:80"[..])
        );
    }
}
