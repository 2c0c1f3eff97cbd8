//! kybernetes-apiserver: the Kubernetes REST API server as one `tower::Service`
//! (an axum [`Router`]).
//!
//! # The handler chain
//!
//! As upstream's `DefaultBuildHandlerChain`, each concern is one step, and the whole chain is
//! built in one place, `ApiServer::handler_chain`:
//!
//! 1. **Request info** (`filters::with_request_info`): method, path and query become a
//!    [`request::RequestInfo`] (verb, group/version, resource, subresource, namespace, name)
//!    in the request's extensions.
//! 2. **Authentication**: a [`authentication::UserInfo`] in the extensions. The in-process
//!    [`ApiServer::router`] gives every request the loopback identity; the HTTPS server wraps
//!    [`ApiServer::authenticated_service`] with its own authenticators (client certificates,
//!    tokens) instead.
//! 3. **Authorization** (`filters::with_authorization`): 401 without an identity; otherwise
//!    `system:masters`, then the [`authorization::Authorizer`] from
//!    [`ApiServerConfig::authorizer`] (RBAC plugs in here); 403 unless allowed.
//! 4. **The registry** (`rest`): the resource and its [`registry::Strategy`] are found in the
//!    tables, and the request travels on as one [`registry::RequestScope`]. A write runs:
//!    - **decode**: body size limit (413), JSON (400), `kind`/`apiVersion` check (400), the
//!      patch document by content type (415). Field validation (`fieldValidation`) and
//!      schema pruning belong here, reading `RequestScope::field_validation`;
//!    - **strategy**: prepare for create/update (server-owned metadata, status reset,
//!      generation), the kind's defaults and initial status;
//!    - **admission**, mutating phase ([`admission::Admission::admit`]);
//!    - **validation**: object meta and the kind's rules;
//!    - **admission**, validating phase ([`admission::NamespaceLifecycle`] first);
//!    - unless `dryRun=All`: the kind's storage hooks (ClusterIP/NodePort allocation, CRD
//!      registration) and the [`kybernetes_store::Store`].
//!
//!    Reads and watches are served from a per-resource watch cache ([`cacher::Cacher`]), each
//!    event encoded once. New patch types plug into `rest::write::PatchDocument`; response
//!    forms (Table, PartialObjectMetadata), chosen by [`negotiation`], into `rest::output`;
//!    a kind's `kubectl get` columns into [`registry::table`]; new
//!    connect subresources (log, token, ...) into [`registry::Subresource`] and
//!    `rest::subresource`; the upgraded ones (exec, attach, port-forward) are routed before
//!    the body is read, to [`streaming`], and so are `pods/proxy`, `services/proxy` and
//!    `nodes/proxy`, to [`proxy`]; both reach node agents only through the
//!    [`kubelet::KubeletDirectory`].
//!
//! Adding a kind: a file in `registry/` implementing [`registry::Strategy`], and one line in
//! [`registry::StrategyTable::builtin`].
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

pub mod admission;
pub mod apply;
pub mod authentication;
pub mod authorization;
pub mod cacher;
pub mod crd;
pub mod discovery;
pub mod duplex;
pub mod filters;
pub mod kubelet;
pub mod metrics;
pub mod negotiation;
pub mod object;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod proxy;
pub mod registry;
pub mod request;
mod resource_metrics;
pub mod response;
mod rest;
pub mod service_alloc;
pub mod serviceaccount;
pub mod serving;
pub mod streaming;
pub mod warning;

use admission::{
    Admission, AdmissionChain, DefaultStorageClass, NamespaceLifecycle, Priority,
    StorageObjectInUseProtection,
};
use authentication::UserInfo;
use authorization::{AllowAuthenticated, Authorizer, AuthorizerUnion};
use cacher::Cacher;
use registry::{RequestScope, StrategyDeps, StrategyTable};

/// Tunables of the API server.
#[derive(Clone)]
pub struct ApiServerConfig {
    /// How often watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// How long a watch lasts when the client sets no `timeoutSeconds`.
    pub default_watch_timeout: Duration,
    /// Largest request body accepted.
    pub max_request_bytes: usize,
    /// Cluster-wide settings (service CIDR, NodePort range).
    pub cluster: ClusterConfig,
    /// Decides who may do what, after `system:masters` (always allowed). The default,
    /// [`AllowAuthenticated`], allows every authenticated user.
    pub authorizer: Arc<dyn Authorizer>,
    /// Admission plugins run after the built-in ones (`NamespaceLifecycle`,
    /// `DefaultStorageClass`, `StorageObjectInUseProtection`, `Priority`), in order.
    pub admission: Vec<Arc<dyn Admission>>,
    /// The key that signs service account tokens (`serviceaccounts/token`); `None` makes a
    /// new one at start, so tokens do not outlive the process. Keep one with
    /// [`serviceaccount::SigningKey::load_or_generate`] for tokens that survive a restart.
    pub service_account_key: Option<Arc<serviceaccount::SigningKey>>,
}

impl std::fmt::Debug for ApiServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServerConfig")
            .field("bookmark_interval", &self.bookmark_interval)
            .field("default_watch_timeout", &self.default_watch_timeout)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("cluster", &self.cluster)
            .field(
                "admission",
                &self
                    .admission
                    .iter()
                    .map(|a| a.name().to_string())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ApiServerConfig {
    /// Sets the authorizer (RBAC, a webhook, a policy engine).
    pub fn with_authorizer(mut self, authorizer: impl Authorizer) -> Self {
        self.authorizer = Arc::new(authorizer);
        self
    }

    /// Appends an admission plugin.
    pub fn with_admission(mut self, plugin: impl Admission) -> Self {
        self.admission.push(Arc::new(plugin));
        self
    }
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig {
            bookmark_interval: Duration::from_secs(5),
            default_watch_timeout: Duration::from_secs(1800),
            max_request_bytes: 3 * 1024 * 1024,
            cluster: ClusterConfig::default(),
            authorizer: Arc::new(AllowAuthenticated),
            admission: Vec::new(),
            service_account_key: None,
        }
    }
}

pub(crate) struct Inner {
    pub store: Arc<dyn Store>,
    pub registry: Registry,
    pub clock: Clock,
    pub config: ApiServerConfig,
    pub services: Arc<service_alloc::ServiceAllocator>,
    pub strategies: StrategyTable,
    pub admission: AdmissionChain,
    pub kubelets: kubelet::KubeletDirectory,
    pub computed: rest::computed::ComputedResources,
    pub openapi: openapi::OpenApiCache,
    pub metrics: metrics::ApiMetrics,
    pub tokens: serviceaccount::TokenIssuer,
    authorizer: Arc<AuthorizerUnion>,
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
        let metrics = metrics::ApiMetrics::default();
        let store: Arc<dyn Store> = Arc::new(metrics::MeteredStore::new(store, metrics.clone()));
        let services = Arc::new(service_alloc::ServiceAllocator::new(&config.cluster)?);
        let registry = Registry::with_builtins();
        let strategies = StrategyTable::builtin(&StrategyDeps {
            store: store.clone(),
            registry: registry.clone(),
            services: services.clone(),
        });
        let mut plugins: Vec<Arc<dyn Admission>> = vec![
            Arc::new(NamespaceLifecycle::new(store.clone())),
            Arc::new(DefaultStorageClass::new(store.clone())),
            Arc::new(StorageObjectInUseProtection),
            Arc::new(Priority::new(store.clone())),
        ];
        plugins.extend(config.admission.iter().cloned());
        let authorizer = Arc::new(authorization::with_privileged_groups(
            config.authorizer.clone(),
        ));
        let key =
            match &config.service_account_key {
                Some(key) => key.clone(),
                None => Arc::new(serviceaccount::SigningKey::generate().map_err(|e| {
                    ApiError::internal(format!("making the service account key: {e}"))
                })?),
            };
        let tokens = serviceaccount::TokenIssuer::new(
            key,
            serviceaccount::issuer(&config.cluster.cluster_domain),
        );
        let inner = Arc::new(Inner {
            store,
            registry,
            clock,
            services,
            strategies,
            admission: AdmissionChain::new(plugins),
            kubelets: kubelet::KubeletDirectory::default(),
            computed: rest::computed::ComputedResources::builtin(),
            openapi: openapi::OpenApiCache::default(),
            metrics,
            tokens,
            authorizer,
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
        let scope = self.internal_scope(ns, None);
        for name in SYSTEM_NAMESPACES {
            let body =
                json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } });
            match rest::write::create(&self.inner, &scope, body).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(pc) = self
            .inner
            .registry
            .lookup("scheduling.k8s.io", "v1", "priorityclasses")
        {
            // Upstream's `scheduling/bootstrap-system-priority-classes` post-start hook.
            let scope = self.internal_scope(pc, None);
            for body in registry::priorityclass::system_priority_classes() {
                match rest::write::create(&self.inner, &scope, body).await {
                    Ok(_) => {}
                    Err(e) if e.code == 409 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        crd::load_all(&self.inner).await?;
        self.bootstrap_services().await?;
        // Start the watch caches of the built-in resources now, so that a watch resuming from
        // a list's resourceVersion finds it inside the cache window.
        for r in self.inner.registry.all().iter().filter(|r| !r.computed) {
            self.inner.cacher(r).await?;
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
        let scope = self.internal_scope(svc, Some("default"));
        match rest::write::create(&self.inner, &scope, body).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == 409 || e.code == 422 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A create made by the server itself, as the loopback user.
    fn internal_scope(&self, r: Arc<ResourceInfo>, namespace: Option<&str>) -> RequestScope {
        let strategy = self.inner.strategies.lookup(&r);
        RequestScope::internal(r, strategy, "create", namespace)
    }

    /// The router: a `tower::Service<http::Request<B>>` serving the whole API to in-process
    /// clients, every request authenticated as the privileged loopback user
    /// ([`UserInfo::loopback`]), as upstream's loopback client.
    pub fn router(&self) -> Router {
        self.handler_chain(Some(Arc::new(UserInfo::loopback())))
    }

    /// The handler chain from authorization on, for a server that authenticates requests
    /// itself (the HTTPS server): it must put a [`UserInfo`] in each request's extensions
    /// (with a layer around this service); a request without one gets 401 Unauthorized.
    pub fn authenticated_service(&self) -> Router {
        self.handler_chain(None)
    }

    /// The handler chain, in upstream's order (`DefaultBuildHandlerChain`); the first layer
    /// is the outermost.
    fn handler_chain(&self, default_user: Option<Arc<UserInfo>>) -> Router {
        let chain = tower::ServiceBuilder::new()
            // 1. What the request asks for.
            .layer(axum::middleware::from_fn(filters::with_request_info))
            // 1a. Counted and timed, whatever the outcome (upstream's metrics filter).
            .layer(axum::middleware::from_fn_with_state(
                self.inner.metrics.clone(),
                metrics::with_metrics,
            ))
            // 2. Who asks (the default identity, if no outer layer authenticated the request).
            .layer(axum::middleware::from_fn_with_state(
                default_user,
                filters::with_authentication,
            ))
            // 3. Whether they may.
            .layer(axum::middleware::from_fn_with_state(
                self.inner.authorizer.clone(),
                filters::with_authorization,
            ));
        // 4. The registry: decode → strategy → admission → store.
        Router::new()
            .fallback(handle)
            .with_state(self.inner.clone())
            .layer(chain)
    }

    /// The router carried over an in-memory HTTP/1.1 connection per request: use this for a
    /// `kube::Client` that needs upgrades (exec, attach, port-forward).
    pub fn duplex_service(&self) -> duplex::DuplexService {
        duplex::DuplexService::new(self.router())
    }

    /// The router for in-process clients that also need upgrades: `kube::Client::new(server
    /// .loopback_service(), "default")` serves ordinary requests with no socket and exec,
    /// attach and port-forward over an in-memory connection.
    pub fn loopback_service(&self) -> duplex::LoopbackService {
        duplex::LoopbackService::new(self.router())
    }

    /// The resource registry (register custom resources here).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The node agents this server reaches for logs, exec, attach, port-forward and resource
    /// metrics. Node agents register here when they start.
    pub fn kubelets(&self) -> &kubelet::KubeletDirectory {
        &self.inner.kubelets
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

/// The registry step: the end of the handler chain.
async fn handle(State(inner): State<Arc<Inner>>, req: Request<Body>) -> response::ApiResponse {
    match rest::dispatch(&inner, req).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(code = e.code, reason = %e.reason, message = %e.message, "request failed");
            response::error(&e)
        }
    }
}
