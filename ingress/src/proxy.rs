//! The reverse proxy: HTTP/1.1 listeners (plain and TLS) whose requests go to the endpoint
//! the [`RouteTable`] picks, through an [`UpstreamConnector`].
//!
//! Each request opens its own connection to the endpoint (no pool: simple, and every request
//! sees the current endpoints). A connection that fails to open moves on to the Service's next
//! endpoint; when none can be reached the client gets 502, as ingress-nginx answers. The
//! client's `Host` header is passed on unchanged; `X-Forwarded-For`, `-Host` and `-Proto` say
//! who asked. Hop-by-hop headers are dropped both ways and upgrades are not proxied.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use kybernetes_core::hop_by_hop::strip_hop_by_hop;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::routes::{RouteTable, Target};

/// A byte stream to an endpoint.
pub trait UpstreamStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> UpstreamStream for T {}

/// How the proxy reaches an endpoint's `ip:port`.
///
/// # How to implement your own
///
/// Return a stream connected to `endpoint` (or to whatever stands for it: a port-forward, a
/// network namespace, a test server). [`DirectConnector`], the default, is the worked
/// example: a TCP connection to the address itself, given up after ten seconds. A connector
/// that maps pod IPs to host loopback ports would look up the port and dial `127.0.0.1`.
#[async_trait]
pub trait UpstreamConnector: Send + Sync + 'static {
    /// Opens a connection to `endpoint`.
    async fn connect(&self, endpoint: SocketAddr) -> std::io::Result<Box<dyn UpstreamStream>>;
}

/// Dials the endpoint's address directly over TCP.
#[derive(Clone, Copy, Debug, Default)]
pub struct DirectConnector;

/// How long opening a connection to an endpoint may take (ingress-nginx's
/// `proxy-connect-timeout` is 5 s; pods here can be slower to accept while starting).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[async_trait]
impl UpstreamConnector for DirectConnector {
    async fn connect(&self, endpoint: SocketAddr) -> std::io::Result<Box<dyn UpstreamStream>> {
        dial(TcpStream::connect(endpoint)).await
    }
}

/// Dials the endpoint through the cluster's [`Network`](kybernetes_net::Network), from where
/// it routes to pods: with `LinuxNetwork`, pod addresses exist only inside the node
/// namespaces, and the connection is made from one of them
/// ([`Network::connect`](kybernetes_net::Network::connect)). The cluster wires it when it
/// runs the controller with `ClusterBuilder::ingress`.
#[derive(Clone)]
pub struct NetworkConnector(pub Arc<dyn kybernetes_net::Network>);

impl std::fmt::Debug for NetworkConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NetworkConnector").finish_non_exhaustive()
    }
}

#[async_trait]
impl UpstreamConnector for NetworkConnector {
    async fn connect(&self, endpoint: SocketAddr) -> std::io::Result<Box<dyn UpstreamStream>> {
        dial(kybernetes_net::Network::connect(self.0.as_ref(), endpoint)).await
    }
}

/// Finishes a connection attempt: given up after [`CONNECT_TIMEOUT`], Nagle off.
async fn dial(
    connecting: impl Future<Output = std::io::Result<TcpStream>>,
) -> std::io::Result<Box<dyn UpstreamStream>> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    // Requests are small and interactive: do not hold them back for Nagle's algorithm.
    stream.set_nodelay(true)?;
    Ok(Box::new(stream))
}

/// How long open requests may run on once the controller stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The body of every proxied or generated response.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// What every connection shares: the current routes and the way to the endpoints.
pub struct Proxy {
    routes: RwLock<Arc<RouteTable>>,
    connector: Arc<dyn UpstreamConnector>,
}

impl Proxy {
    /// A proxy with no routes yet (every request gets 404) dialling through `connector`.
    pub fn new(connector: Arc<dyn UpstreamConnector>) -> Self {
        Proxy {
            routes: RwLock::new(Arc::new(RouteTable::default())),
            connector,
        }
    }

    /// Routes requests by `table` from now on.
    pub fn replace_routes(&self, table: RouteTable) {
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
    }

    fn routes(&self) -> Arc<RouteTable> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Answers one request.
    async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        scheme: &'static str,
    ) -> Response<ProxyBody> {
        let host = request_host(&request);
        let path = request.uri().path().to_string();
        let table = self.routes();
        let Some(target) = table.route(&host, &path).cloned() else {
            tracing::debug!(%host, %path, "no route");
            return plain(StatusCode::NOT_FOUND, "404 page not found\n");
        };
        let endpoints = match target.as_ref() {
            Target::Ready(endpoints) => endpoints,
            Target::Unavailable(why) => {
                tracing::debug!(%host, %path, reason = %why, "backend unavailable");
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("503 service unavailable: {why}\n"),
                );
            }
        };
        let request = outgoing(request, &host, peer, scheme);
        let mut last_error = String::new();
        for endpoint in endpoints.attempt_order() {
            match self.connector.connect(endpoint).await {
                Ok(io) => return send(io, request, endpoint).await,
                Err(e) => {
                    tracing::debug!(%endpoint, error = %e, "endpoint unreachable; trying the next");
                    last_error = format!("{endpoint}: {e}");
                }
            }
        }
        tracing::warn!(service = %endpoints.service, error = %last_error, "no endpoint reachable");
        plain(
            StatusCode::BAD_GATEWAY,
            &format!("502 bad gateway: {}: {last_error}\n", endpoints.service),
        )
    }
}

/// The host a request is for: its `Host` header, or the authority of an absolute URI.
fn request_host<B>(request: &Request<B>) -> String {
    request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_string()))
        .unwrap_or_default()
}

/// The request as the endpoint gets it: origin-form URI, hop-by-hop headers dropped,
/// forwarding headers added.
fn outgoing(
    request: Request<Incoming>,
    host: &str,
    peer: SocketAddr,
    scheme: &'static str,
) -> Request<Incoming> {
    let (mut parts, body) = request.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::UPGRADE);
    if let Some(pq) = parts.uri.path_and_query() {
        // Absolute-form requests carry the host in the URI; the endpoint wants origin form.
        if let Ok(uri) = pq.as_str().parse() {
            parts.uri = uri;
        }
    }
    let forwarded_for = match parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(earlier) => format!("{earlier}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    let set = |headers: &mut http::HeaderMap, name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set(&mut parts.headers, "x-forwarded-for", &forwarded_for);
    set(&mut parts.headers, "x-forwarded-host", host);
    set(&mut parts.headers, "x-forwarded-proto", scheme);
    if !host.is_empty() && !parts.headers.contains_key(header::HOST) {
        set(&mut parts.headers, "host", host);
    }
    parts.version = Version::HTTP_11;
    Request::from_parts(parts, body)
}

/// Sends `request` over `io` and streams the endpoint's response back.
async fn send(
    io: Box<dyn UpstreamStream>,
    request: Request<Incoming>,
    endpoint: SocketAddr,
) -> Response<ProxyBody> {
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(io)).await {
            Ok(pair) => pair,
            Err(e) => return bad_gateway(endpoint, &e),
        };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(%endpoint, error = %e, "upstream connection ended with an error");
        }
    });
    match sender.send_request(request).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, body.boxed())
        }
        Err(e) => bad_gateway(endpoint, &e),
    }
}

fn bad_gateway(endpoint: SocketAddr, e: &hyper::Error) -> Response<ProxyBody> {
    tracing::warn!(%endpoint, error = %e, "proxying to the endpoint failed");
    plain(
        StatusCode::BAD_GATEWAY,
        &format!("502 bad gateway: {endpoint}: {e}\n"),
    )
}

/// A text response the proxy makes itself.
fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(text.to_string()))
        .map_err(|never: Infallible| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Accepts connections on `listener` until `shutdown`, TLS first when `tls` is given; open
/// connections end with `shutdown` too.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    proxy: Arc<Proxy>,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    let scheme = if tls.is_some() { "https" } else { "http" };
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait, as hyper's examples do.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let proxy = proxy.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        let span = tracing::debug_span!("ingress_connection", %peer, scheme);
        connections.spawn(
            async move {
                let served = match tls {
                    None => serve_connection(stream, peer, scheme, proxy, shutdown).await,
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(stream) => serve_connection(stream, peer, scheme, proxy, shutdown).await,
                        Err(e) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                    },
                };
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            }
            .instrument(span),
        );
    }
    connections.close();
    connections.wait().await;
}

/// Serves HTTP/1.1 on one accepted connection.
async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    scheme: &'static str,
    proxy: Arc<Proxy>,
    shutdown: CancellationToken,
) -> Result<(), hyper::Error>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(proxy.handle(request, peer, scheme).await) }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.cancelled() => {
            // Requests in flight get a moment to finish; an endpoint that never answers
            // must not hold up the cluster's shutdown.
            connection.as_mut().graceful_shutdown();
            tokio::time::timeout(SHUTDOWN_GRACE, connection).await.unwrap_or(Ok(()))
        }
    }
}
