//! Serving the API over HTTPS: the same handler chain as the in-process router, behind TLS
//! and authentication, for kubectl, client libraries and remote node agents.
//!
//! - [`certificates`]: the cluster CA, the serving certificate and the admin client
//!   certificate, generated once and kept in a directory.
//! - [`tls`]: rustls, ALPN `h2` and `http/1.1`, client certificates checked against the CA.
//! - [`authn`]: client certificates, bearer tokens from a token file, anonymous.
//! - [`kubeconfig`]: a kubeconfig that reaches the server as the admin.
//! - `server`: the accept loop (hyper's auto connection, upgrades included, graceful stop).
//!
//! ```no_run
//! # async fn demo(api: kybernetes_apiserver::ApiServer) -> Result<(), Box<dyn std::error::Error>> {
//! use kybernetes_apiserver::serving::{HttpsServer, ServingConfig};
//! let server = HttpsServer::start(&api, ServingConfig::new("127.0.0.1:0".parse()?)).await?;
//! server.kubeconfig().write("/tmp/kubeconfig")?;
//! # server.shutdown().await; Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ApiServer;

pub mod authn;
pub mod certificates;
pub mod kubeconfig;
mod server;
pub mod tls;

pub use authn::{Authentication, ClientCertificates, TokenFile};
pub use certificates::{ClusterPki, PkiError};
pub use kubeconfig::Kubeconfig;

/// The name of the cluster and context in the generated kubeconfig.
pub const KUBECONFIG_NAME: &str = "kybernetes";

/// How to serve: where, with which certificates, and who is let in.
#[derive(Clone, Debug)]
pub struct ServingConfig {
    /// The address to listen on; port 0 picks a free port ([`HttpsServer::local_addr`]).
    pub listen: SocketAddr,
    /// Where the certificates are kept (`<data-dir>/pki`); `None` keeps them in memory, new
    /// at every start.
    pub pki_dir: Option<PathBuf>,
    /// More names (DNS names or IP addresses) for the serving certificate, besides the listen
    /// address and [`certificates::DEFAULT_SERVING_NAMES`].
    pub extra_names: Vec<String>,
    /// Bearer tokens accepted, besides client certificates.
    pub token_file: Option<TokenFile>,
    /// Whether requests without credentials pass as `system:anonymous` (default: no, 401).
    pub anonymous: bool,
}

impl ServingConfig {
    /// Serving on `listen`, certificates in memory, client certificates only.
    pub fn new(listen: SocketAddr) -> Self {
        ServingConfig {
            listen,
            pki_dir: None,
            extra_names: Vec::new(),
            token_file: None,
            anonymous: false,
        }
    }
}

/// Why serving could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    /// The certificates could not be made or loaded.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// TLS could not be configured.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The address could not be bound.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// A running HTTPS server.
#[derive(Debug)]
pub struct HttpsServer {
    addr: SocketAddr,
    pki: ClusterPki,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl HttpsServer {
    /// Binds `config.listen` and serves `api` until [`HttpsServer::shutdown`].
    pub async fn start(api: &ApiServer, config: ServingConfig) -> Result<Self, ServingError> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServingError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServingError::Bind {
            addr: config.listen,
            source,
        })?;
        let mut names = vec![kubeconfig::connect_address(addr).ip().to_string()];
        if !config.listen.ip().is_unspecified() {
            names.push(config.listen.ip().to_string());
        }
        names.extend(config.extra_names.iter().cloned());
        let now = api.clock().now();
        let pki = match &config.pki_dir {
            Some(dir) => ClusterPki::load_or_generate(dir, &names, now)?,
            None => ClusterPki::generate(&names, now)?,
        };
        let tls = tls::server_config(&pki)?;
        // Service account tokens before the token file: they are JWTs, which the token
        // file's authenticator would refuse as unknown.
        let mut authentication = Authentication::new()
            .with(ClientCertificates)
            .with(api.service_account_authenticator())
            .anonymous(config.anonymous);
        if let Some(tokens) = config.token_file {
            authentication = authentication.with(tokens);
        }
        let service = api
            .authenticated_service()
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(authentication),
                authn::with_authentication,
            ));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(server::accept_loop(listener, tls, service, stopped));
        tracing::info!(%addr, "serving the API over HTTPS");
        Ok(HttpsServer {
            addr,
            pki,
            stop,
            task,
        })
    }

    /// The bound address (the real port when the configured one was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The cluster's certificates.
    pub fn pki(&self) -> &ClusterPki {
        &self.pki
    }

    /// A kubeconfig that reaches this server as `kubernetes-admin` (`system:masters`).
    pub fn kubeconfig(&self) -> Kubeconfig {
        Kubeconfig::new(
            KUBECONFIG_NAME,
            self.addr,
            self.pki.ca_pem(),
            certificates::ADMIN_USER,
            self.pki.admin(),
        )
    }

    /// Stops accepting connections; open ones get to finish. Call [`HttpsServer::shutdown`]
    /// to wait for them.
    pub fn begin_shutdown(&self) {
        self.stop.send_replace(true);
    }

    /// Stops the server and waits until its connections have finished (at most ten seconds
    /// after the stop; long-running watches end when the API server shuts down).
    pub async fn shutdown(self) {
        self.begin_shutdown();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the HTTPS server task failed");
        }
    }
}
