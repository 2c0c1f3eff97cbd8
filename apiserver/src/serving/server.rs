//! The connection side of the HTTPS server: accepts TCP connections, completes TLS, and serves
//! each with hyper's auto (HTTP/1.1 or HTTP/2, by ALPN) connection, upgrades included, so that
//! WebSocket and SPDY exec, attach and port-forward pass through.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{debug, info};

use crate::authentication::PeerCertificates;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish once the server stops, before they are cut.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves once the stop flag is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`, so it must not live across an await. An
    // error means the sender is gone, which also means stop.
    if stop.wait_for(|s| *s).await.is_err() {
        debug!("the HTTPS server's handle was dropped; stopping");
    }
}

/// Accepts connections until `stop` turns true, then lets the open ones finish (up to
/// [`DRAIN_TIMEOUT`]).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    service: Router,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Watches and exec streams are long; keep idle HTTP/2 peers honest with pings.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder.http1().timer(TokioTimer::new());
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(error = %e, "setting TCP_NODELAY");
        }
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let service = service.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let certs = PeerCertificates(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| c.iter().map(|c| c.to_vec()).collect())
                    .unwrap_or_default(),
            );
            let service =
                service.map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(certs.clone());
                    req
                });
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(tls),
                TowerToHyperService::new(service),
            );
            if let Err(e) = watcher.watch(conn).await {
                debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    match tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await {
        Ok(()) => info!("HTTPS server stopped"),
        Err(_) => info!("HTTPS server stopped; connections still open were cut"),
    }
}
