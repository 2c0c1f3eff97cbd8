//! The in-process path for upgrades (exec, attach, port-forward): a hyper client and a hyper
//! server joined by an in-memory `tokio::io::duplex` pipe, per request.
//!
//! `kube::Client::connect` needs `hyper::upgrade::on(response)`, which only works on a response
//! that came through a real hyper connection; a router called directly cannot give that. This
//! service gives exactly that without a socket.
//!
//! ```no_run
//! # async fn demo(server: kybernetes_apiserver::ApiServer) {
//! let service = server.duplex_service(); // then: kube::Client::new(service, "default")
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
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
