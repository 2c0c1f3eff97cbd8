//! The in-process path for upgrades (exec, attach, port-forward): a hyper client and a hyper
//! server joined by an in-memory `tokio::io::duplex` pipe, per request.
//!
//! `kube::Client::connect` needs `hyper::upgrade::on(response)`, which only works on a response
//! that came through a real hyper connection; a router called directly cannot give that. This
//! service gives exactly that without a socket.
//!
//! [`LoopbackService`] uses it only for upgrade requests and calls the router directly for
//! every other one, so that one `kube::Client` does both at no cost to ordinary requests.
//!
//! ```no_run
//! # async fn demo(server: kybernetes_apiserver::ApiServer) {
//! let service = server.loopback_service(); // then: kube::Client::new(service, "default")
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt;
use tracing::debug;

/// Boxed error of the duplex service.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A `tower::Service` that carries each request over a fresh in-memory HTTP/1.1 connection.
#[derive(Clone, Debug)]
pub struct DuplexService {
    router: Router,
}

impl DuplexService {
    /// Wraps a router.
    pub fn new(router: Router) -> Self {
        DuplexService { router }
    }
}

impl<B> tower::Service<Request<B>> for DuplexService
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let router = self.router.clone();
        Box::pin(async move {
            let (client_io, server_io) = tokio::io::duplex(256 * 1024);
            tokio::spawn(async move {
                let service = TowerToHyperService::new(router);
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(server_io), service)
                    .with_upgrades();
                if let Err(e) = conn.await {
                    debug!(error = %e, "in-memory server connection ended");
                }
            });
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(client_io)).await?;
            tokio::spawn(async move {
                if let Err(e) = conn.with_upgrades().await {
                    debug!(error = %e, "in-memory client connection ended");
                }
            });
            Ok(sender.send_request(req).await?)
        })
    }
}

/// The response body of [`LoopbackService`].
pub type LoopbackBody = UnsyncBoxBody<Bytes, BoxError>;

/// A `tower::Service` for in-process clients: upgrade requests (exec, attach, port-forward)
/// travel over an in-memory HTTP/1.1 connection ([`DuplexService`]), every other request
/// goes straight to the router.
#[derive(Clone, Debug)]
pub struct LoopbackService {
    router: Router,
    duplex: DuplexService,
}

impl LoopbackService {
    /// Wraps a router.
    pub fn new(router: Router) -> Self {
        LoopbackService {
            duplex: DuplexService::new(router.clone()),
            router,
        }
    }
}

impl<B> tower::Service<Request<B>> for LoopbackService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<LoopbackBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if req.headers().contains_key(http::header::UPGRADE) {
            let call = self.duplex.call(req);
            return Box::pin(async move {
                let response = call.await?;
                Ok(response.map(|b| b.map_err(BoxError::from).boxed_unsync()))
            });
        }
        let router = self.router.clone();
        Box::pin(async move {
            let response = match router.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok(response.map(|b| b.map_err(BoxError::from).boxed_unsync()))
        })
    }
}
