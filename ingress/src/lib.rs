//! kybernetes-ingress: the built-in Ingress controller. It serves `networking.k8s.io/v1`
//! Ingresses as an HTTP/1.1 reverse proxy on hyper, with TLS from the Ingresses' Secrets on
//! rustls.
//!
//! - **Which Ingresses.** Those whose `spec.ingressClassName` (or the deprecated
//!   `kubernetes.io/ingress.class` annotation) names an IngressClass with
//!   `spec.controller: kybernetes.io/ingress` ([`CONTROLLER_NAME`]), and those naming no class
//!   when one of its classes is marked default (`ingressclass.kubernetes.io/is-default-class:
//!   "true"`). [`ensure_default_class`] creates such a class.
//! - **Routing** by host and path as upstream defines it (see [`routes`]), to the ready
//!   addresses of the backend Service's Endpoints, round-robin, the Service port named by
//!   number or name. `spec.defaultBackend` takes what no rule matches; with none, 404. A
//!   backend whose Service is missing, lacks the port or has no ready endpoint gets 503, and a
//!   missing Service a Warning event (`ServiceNotFound`) on the Ingress.
//! - **TLS** from the `kubernetes.io/tls` Secrets of `spec.tls`, chosen by SNI; a Secret's
//!   update is served from the next handshake on.
//! - **Status.** Every served Ingress gets the controller's address in
//!   `status.loadBalancer.ingress`, so `kubectl get ingress` shows it under ADDRESS.
//!
//! How the proxy reaches an endpoint is an [`UpstreamConnector`]; [`DirectConnector`], the
//! default, dials the endpoint's `ip:port`.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), kybernetes_ingress::Error> {
//! use kybernetes_ingress::{IngressConfig, IngressController, ensure_default_class};
//!
//! ensure_default_class(&client, "kybernetes").await?;
//! let config = IngressConfig::new(
//!     "127.0.0.1:0".parse().expect("an address"),
//!     Some("127.0.0.1:0".parse().expect("an address")),
//! );
//! let ingress = IngressController::start(client, Default::default(), config).await?;
//! let _curl = format!("curl -H 'Host: hello.example.com' http://{}/", ingress.http_addr());
//! ingress.shutdown().await;
//! # Ok(()) }
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{IngressClass, IngressLoadBalancerIngress};
use kube::api::{Api, PostParams};
use kybernetes_core::Clock;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

mod backends;
mod controller;
mod proxy;
pub mod routes;
mod tls;

pub use proxy::{DirectConnector, NetworkConnector, UpstreamConnector, UpstreamStream};

/// The `spec.controller` of the IngressClasses this controller serves.
pub const CONTROLLER_NAME: &str = "kybernetes.io/ingress";

/// The annotation that makes an IngressClass the default for Ingresses naming none.
pub const IS_DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// The deprecated annotation naming an Ingress's class, read when `spec.ingressClassName` is
/// unset (as ingress-nginx still does).
pub const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Errors starting the controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not be bound.
    #[error("binding the ingress listener on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS configuration could not be built.
    #[error("building the ingress TLS configuration")]
    Tls(#[source] rustls::Error),
    /// An API request failed.
    #[error("ingress controller API request")]
    Api(#[source] kube::Error),
}

/// `Result` with the controller's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the controller runs.
#[derive(Clone)]
#[non_exhaustive]
pub struct IngressConfig {
    /// Where plain HTTP is served (port 0: any free port).
    pub http: SocketAddr,
    /// Where HTTPS is served, if at all.
    pub https: Option<SocketAddr>,
    /// The IngressClass `spec.controller` served (default [`CONTROLLER_NAME`]).
    pub controller_name: String,
    /// The address written to the Ingresses' status: an IP, or a host name. By default the
    /// HTTP listener's IP, loopback when it listens on every address.
    pub status_address: Option<String>,
    /// How endpoints are reached (default [`DirectConnector`]).
    pub connector: Arc<dyn UpstreamConnector>,
}

impl std::fmt::Debug for IngressConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngressConfig")
            .field("http", &self.http)
            .field("https", &self.https)
            .field("controller_name", &self.controller_name)
            .field("status_address", &self.status_address)
            .finish_non_exhaustive()
    }
}

impl IngressConfig {
    /// Serves HTTP on `http` and HTTPS on `https`, with the defaults for the rest.
    pub fn new(http: SocketAddr, https: Option<SocketAddr>) -> Self {
        IngressConfig {
            http,
            https,
            controller_name: CONTROLLER_NAME.to_string(),
            status_address: None,
            connector: Arc::new(DirectConnector),
        }
    }

    /// The same configuration, reaching endpoints through `connector`.
    pub fn with_connector(mut self, connector: impl UpstreamConnector) -> Self {
        self.connector = Arc::new(connector);
        self
    }

    /// The same configuration, writing `address` to the Ingresses' status.
    pub fn with_status_address(mut self, address: impl Into<String>) -> Self {
        self.status_address = Some(address.into());
        self
    }
}

/// A running Ingress controller.
pub struct IngressController {
    http_addr: SocketAddr,
    https_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for IngressController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngressController")
            .field("http_addr", &self.http_addr)
            .field("https_addr", &self.https_addr)
            .finish_non_exhaustive()
    }
}

impl IngressController {
    /// Binds the listeners and starts serving the Ingresses `client` sees; event times come
    /// from `clock`. Must be called inside a tokio runtime.
    pub async fn start(client: kube::Client, clock: Clock, config: IngressConfig) -> Result<Self> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })
        };
        let http = bind(config.http).await?;
        let http_addr = http.local_addr().map_err(|source| Error::Bind {
            addr: config.http,
            source,
        })?;
        let https = match config.https {
            Some(addr) => {
                let listener = bind(addr).await?;
                let local = listener
                    .local_addr()
                    .map_err(|source| Error::Bind { addr, source })?;
                Some((listener, local))
            }
            None => None,
        };
        let https_addr = https.as_ref().map(|(_, a)| *a);
        let resolver = Arc::new(tls::SniResolver::default());
        let proxy = Arc::new(proxy::Proxy::new(config.connector.clone()));
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        let span = tracing::info_span!("ingress", http = %http_addr, https = ?https_addr);
        tasks.push(tokio::spawn(
            proxy::serve(http, None, proxy.clone(), shutdown.child_token())
                .instrument(span.clone()),
        ));
        if let Some((listener, _)) = https {
            let tls_config = tls::server_config(resolver.clone()).map_err(Error::Tls)?;
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config));
            tasks.push(tokio::spawn(
                proxy::serve(
                    listener,
                    Some(acceptor),
                    proxy.clone(),
                    shutdown.child_token(),
                )
                .instrument(span.clone()),
            ));
        }
        let sync = controller::IngressSync {
            client,
            clock,
            controller_name: config.controller_name.clone(),
            address: status_address(config.status_address.as_deref(), http_addr),
            proxy,
            resolver,
        };
        tasks.push(tokio::spawn(
            sync.run(shutdown.child_token()).instrument(span),
        ));
        tracing::info!(http = %http_addr, https = ?https_addr, "ingress controller started");
        Ok(IngressController {
            http_addr,
            https_addr,
            shutdown,
            tasks,
        })
    }

    /// Where plain HTTP is served.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where HTTPS is served, if it is.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// Stops the listeners, the open connections and the sync loop.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "an ingress controller task panicked");
            }
        }
    }
}

/// The status entry for `configured` (an IP or a host name), else the HTTP listener's IP.
fn status_address(configured: Option<&str>, http: SocketAddr) -> IngressLoadBalancerIngress {
    let text = match configured {
        Some(a) => a.to_string(),
        None if http.ip().is_unspecified() => match http.ip() {
            IpAddr::V4(_) => "127.0.0.1".to_string(),
            IpAddr::V6(_) => "::1".to_string(),
        },
        None => http.ip().to_string(),
    };
    match text.parse::<IpAddr>() {
        Ok(_) => IngressLoadBalancerIngress {
            ip: Some(text),
            ..Default::default()
        },
        Err(_) => IngressLoadBalancerIngress {
            hostname: Some(text),
            ..Default::default()
        },
    }
}

/// Creates IngressClass `name` for this controller, marked default, unless a class of that
/// name exists (it is then left as it is).
pub async fn ensure_default_class(client: &kube::Client, name: &str) -> Result<()> {
    let api: Api<IngressClass> = Api::all(client.clone());
    let class: IngressClass = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": name, "annotations": {IS_DEFAULT_CLASS_ANNOTATION: "true"}},
        "spec": {"controller": CONTROLLER_NAME},
    }))
    .map_err(|e| Error::Api(kube::Error::SerdeError(e)))?;
    match api.create(&PostParams::default(), &class).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(Error::Api(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_address_is_the_listener_or_the_configured_one() {
        let any: SocketAddr = "0.0.0.0:80".parse().expect("addr");
        let lo: SocketAddr = "127.0.0.5:80".parse().expect("addr");
        assert_eq!(status_address(None, any).ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(status_address(None, lo).ip.as_deref(), Some("127.0.0.5"));
        let named = status_address(Some("lb.example.com"), lo);
        assert_eq!(
            (named.ip, named.hostname.as_deref()),
            (None, Some("lb.example.com"))
        );
    }
}
