//! kybernetes-apiserver: the Kubernetes REST API server as one `tower::Service`
//! (an axum [`Router`]).
//!
//! The pipeline, top to bottom, as upstream's: routing (path → [`request::RequestInfo`]) →
//! decoding → defaulting and validation ([`strategy`]) → admission (namespace lifecycle) →
//! the generic registry (`rest`) → the [`kybernetes_store::Store`]. Lists and watches are served
//! from a per-resource watch cache ([`cacher::Cacher`]).
//!
//! The same router is wrapped in-process by `kube::Client::new(router, "default")`, and will be
//! served over TCP for kubectl.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kybernetes_core::ApiError> {
//! use std::sync::Arc;
//! let store = Arc::new(kybernetes_store::MemoryStore::default());
//! let server = kybernetes_apiserver::ApiServer::new(store, kybernetes_core::Clock::new()).await?;
//! let router = server.router(); // a tower::Service<http::Request<_>>
//! # Ok(()) }
//! ```

// `ApiError` is the Kubernetes `Status` of a failed request: returned only on the error path,
// and boxing it would add an allocation and noise to every handler for no gain.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use http::Request;
use kybernetes_core::{ApiError, Clock, ClusterConfig, Registry, ResourceInfo};
use kybernetes_store::Store;
use serde_json::json;
use tokio::sync::watch;
use tracing::Instrument;

pub mod apply;
pub mod authentication;
pub mod cacher;
pub mod crd;
pub mod defaults;
pub mod discovery;
pub mod duplex;
pub mod object;
pub mod patch;
pub mod request;
pub mod response;
mod rest;
pub mod service_alloc;
pub mod strategy;
mod validate_kind;

use cacher::Cacher;

/// Tunables of the API server.
#[derive(Clone, Debug)]
pub struct ApiServerConfig {
    /// How often watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// How long a watch lasts when the client sets no `timeoutSeconds`.
    pub default_watch_timeout: Duration,
    /// Largest request body accepted.
    pub max_request_bytes: usize,
    /// Cluster-wide settings (service CIDR, NodePort range).
    pub cluster: ClusterConfig,
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig {
            bookmark_interval: Duration::from_secs(5),
            default_watch_timeout: Duration::from_secs(1800),
            max_request_bytes: 3 * 1024 * 1024,
            cluster: ClusterConfig::default(),
        }
    }
}

pub(crate) struct Inner {
    pub store: Arc<dyn Store>,
    pub registry: Registry,
    pub clock: Clock,
    pub config: ApiServerConfig,
    pub services: service_alloc::ServiceAllocator,
    cachers: tokio::sync::Mutex<HashMap<String, Arc<Cacher>>>,
    shutdown: watch::Sender<bool>,
}

impl Inner {
    /// The watch cache of a resource, started on first use.
    pub async fn cacher(&self, r: &ResourceInfo) -> Result<Arc<Cacher>, ApiError> {
        let prefix = r.key_prefix();
        let mut map = self.cachers.lock().await;
        if let Some(c) = map.get(&prefix) {
            return Ok(c.clone());
        }
        let c = Cacher::start(
            Arc::new(r.clone()),
            self.store.clone(),
            self.shutdown.subscribe(),
        )
        .await?;
        map.insert(prefix, c.clone());
        Ok(c)
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

/// The API server. Cheap to clone.
#[derive(Clone)]
pub struct ApiServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer").finish_non_exhaustive()
    }
}

/// The namespaces that exist from the start, as on every upstream cluster.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

impl ApiServer {
    /// Starts an API server over `store` with the default configuration, creating the system
    /// namespaces if they are missing.
    pub async fn new(store: Arc<dyn Store>, clock: Clock) -> Result<Self, ApiError> {
        Self::with_config(store, clock, ApiServerConfig::default()).await
    }

    /// Starts an API server with explicit tunables.
    pub async fn with_config(
        store: Arc<dyn Store>,
        clock: Clock,
        config: ApiServerConfig,
    ) -> Result<Self, ApiError> {
        let (shutdown, _) = watch::channel(false);
        let services = service_alloc::ServiceAllocator::new(&config.cluster)?;
        let inner = Arc::new(Inner {
            store,
            registry: Registry::with_builtins(),
            clock,
            services,
            config,
            cachers: tokio::sync::Mutex::new(HashMap::new()),
            shutdown,
        });
        let server = ApiServer { inner };
        server.bootstrap().await?;
        Ok(server)
    }

    async fn bootstrap(&self) -> Result<(), ApiError> {
        let Some(ns) = self.inner.registry.lookup("", "v1", "namespaces") else {
            return Err(ApiError::internal("namespaces are not registered"));
        };
        for name in SYSTEM_NAMESPACES {
            let body =
                json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } });
            match rest::write::create(
                &self.inner,
                &ns,
                None,
                body,
                false,
                &apply::FieldManager::named("kube-apiserver"),
            )
            .await
            {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        crd::load_all(&self.inner).await?;
        self.bootstrap_services().await?;
        // Start the watch caches of the built-in resources now, so that a watch resuming from
        // a list's resourceVersion finds it inside the cache window.
        for r in self.inner.registry.all() {
            self.inner.cacher(&r).await?;
        }
        Ok(())
    }

    /// Rebuilds the service allocators from the stored services and creates the `kubernetes`
    /// service, as upstream's bootstrap controller does.
    async fn bootstrap_services(&self) -> Result<(), ApiError> {
        let list = self
            .inner
            .store
            .list(
                "/registry/core/services/",
                kybernetes_store::ListOptions::default(),
            )
            .await
            .map_err(|e| ApiError::internal(format!("listing services at start-up: {e}")))?;
        for kv in &list.items {
            self.inner.services.mark_existing(&object::decode(kv)?);
        }
        let Some(svc) = self.inner.registry.lookup("", "v1", "services") else {
            return Ok(());
        };
        let ip = service_alloc::kubernetes_service_ip(&self.inner.config.cluster)
            .map(|ip| ip.to_string());
        let body = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "kubernetes", "labels": { "component": "apiserver", "provider": "kubernetes" } },
            "spec": { "clusterIP": ip, "ports": [{ "name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443 }] },
        });
        match rest::write::create(
            &self.inner,
            &svc,
            Some("default"),
            body,
            false,
            &apply::FieldManager::named("kube-apiserver"),
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code == 409 || e.code == 422 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The router: a `tower::Service<http::Request<B>>` serving the whole API.
    pub fn router(&self) -> Router {
        Router::new()
            .fallback(handle)
            .with_state(self.inner.clone())
    }

    /// The router carried over an in-memory HTTP/1.1 connection per request: use this for a
    /// `kube::Client` that needs upgrades (exec, attach, port-forward).
    pub fn duplex_service(&self) -> duplex::DuplexService {
        duplex::DuplexService::new(self.router())
    }

    /// The resource registry (register custom resources here).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The cluster clock.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Compacts the store at `revision` and tells the watch caches: watches from older
    /// revisions then get 410 Gone.
    pub async fn compact(&self, revision: i64) -> Result<(), ApiError> {
        self.inner
            .store
            .compact(revision)
            .await
            .map_err(|e| ApiError::internal(format!("compacting the store at {revision}: {e}")))?;
        for c in self.inner.cachers.lock().await.values() {
            c.compacted(revision);
        }
        Ok(())
    }

    /// Ends every watch and stops the watch caches.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request<Body>) -> response::ApiResponse {
    let span =
        tracing::debug_span!("api_request", method = %req.method(), path = %req.uri().path());
    async move {
        match rest::dispatch(&inner, req).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::debug!(code = e.code, reason = %e.reason, message = %e.message, "request failed");
                response::error(&e)
            }
        }
    }
    .instrument(span)
    .await
}
