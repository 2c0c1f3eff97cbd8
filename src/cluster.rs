//! The `Cluster` builder: wires a store and the API server together and hands out in-process
//! `kube::Client`s.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Resource};
use kybernetes_apiserver::{ApiServer, ApiServerConfig};
use kybernetes_core::Clock;
use kybernetes_store::{MemoryStore, Store};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{DynStore, Error, Result};

/// Builds a [`Cluster`]. Every setting has a default: `Cluster::builder().start()` gives a
/// memory store and the default API server settings.
///
/// ```no_run
/// # async fn demo() -> kybernetes::Result<()> {
/// use kybernetes::{Cluster, store::MemoryStore};
/// let cluster = Cluster::builder().store(MemoryStore::default()).start().await?;
/// # cluster.shutdown().await }
/// ```
#[must_use]
pub struct ClusterBuilder {
    store: Option<DynStore>,
    clock: Option<Clock>,
    api: ApiServerConfig,
    compaction_interval: Option<Duration>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            store: None,
            clock: None,
            api: ApiServerConfig::default(),
            compaction_interval: Some(Duration::from_secs(300)),
        }
    }
}

impl ClusterBuilder {
    /// The store backend (default: [`MemoryStore`]).
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// A store that is already shared.
    pub fn shared_store(mut self, store: DynStore) -> Self {
        self.store = Some(store);
        self
    }

    /// Keeps the cluster's state in `<dir>/kybernetes.db`, a durable [`SqliteStore`]: the
    /// default store when a data directory is given. The directory is created if missing.
    ///
    /// ```no_run
    /// # async fn demo() -> kybernetes::Result<()> {
    /// let cluster = kybernetes::Cluster::builder().data_dir("/var/lib/myapp/cluster")?.start().await?;
    /// # cluster.shutdown().await }
    /// ```
    ///
    /// [`SqliteStore`]: kybernetes_store::SqliteStore
    #[cfg(feature = "sqlite")]
    pub fn data_dir(mut self, dir: impl AsRef<std::path::Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| {
            kybernetes_store::Error::backend(format!("creating the data directory {}", dir.display()), e)
        })?;
        let store = kybernetes_store::SqliteStore::open(dir.join("kybernetes.db"))?;
        self.store = Some(Arc::new(store));
        Ok(self)
    }

    /// The cluster clock (default: the system time, advancing with tokio time).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// API server tunables.
    pub fn api_server_config(mut self, config: ApiServerConfig) -> Self {
        self.api = config;
        self
    }

    /// How often history older than one interval is compacted (upstream: 5 minutes);
    /// `None` disables compaction.
    pub fn compaction_interval(mut self, every: Option<Duration>) -> Self {
        self.compaction_interval = every;
        self
    }

    /// Starts the cluster. Must be called inside a tokio runtime.
    pub async fn start(self) -> Result<Cluster> {
        let store: DynStore = self.store.unwrap_or_else(|| Arc::new(MemoryStore::default()));
        let clock = self.clock.unwrap_or_default();
        let api = ApiServer::with_config(store.clone(), clock.clone(), self.api).await?;
        let client = kube::Client::new(api.router(), "default");
        let mut tasks = Vec::new();
        if let Some(every) = self.compaction_interval {
            tasks.push(tokio::spawn(compactor(api.clone(), every)));
        }
        info!("cluster started");
        Ok(Cluster { api, client, clock, tasks })
    }
}

/// Compacts, every `every`, the history older than the revision seen one interval earlier,
/// as upstream's API server does.
async fn compactor(api: ApiServer, every: Duration) {
    let mut last: Option<i64> = None;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        ticker.tick().await;
        if let Some(rev) = last
            && let Err(e) = api.compact(rev).await
        {
            warn!(error = %e, "compaction failed");
        }
        last = api.store().current_revision().await.ok();
    }
}

/// A running in-process cluster.
pub struct Cluster {
    api: ApiServer,
    client: kube::Client,
    clock: Clock,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").finish_non_exhaustive()
    }
}

impl Cluster {
    /// A builder with every default.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// A `kube::Client` talking to the in-process API server (no socket).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The API server (for serving it elsewhere, compaction, or registering resources).
    pub fn api_server(&self) -> &ApiServer {
        &self.api
    }

    /// The cluster clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Waits until `cond` holds for the object `name`, or fails after `timeout`.
    ///
    /// ```no_run
    /// # async fn demo(cluster: kybernetes::Cluster) -> kybernetes::Result<()> {
    /// use k8s_openapi::api::core::v1::Namespace;
    /// let nss: kube::Api<Namespace> = kube::Api::all(cluster.client());
    /// let exists = |ns: Option<&Namespace>| ns.is_some();
    /// cluster.wait_until(&nss, "default", exists, std::time::Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn wait_until<K>(&self, api: &Api<K>, name: &str, cond: impl Condition<K>, timeout: Duration) -> Result<Option<K>>
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    {
        match tokio::time::timeout(timeout, await_condition(api.clone(), name, cond)).await {
            Ok(Ok(obj)) => Ok(obj),
            Ok(Err(e)) => Err(Error::Timeout(timeout, format!("{name}: {e}"))),
            Err(_) => Err(Error::Timeout(timeout, name.to_string())),
        }
    }

    /// Stops every component, ends every watch and closes the store.
    pub async fn shutdown(self) -> Result<()> {
        self.api.shutdown();
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        // Releases files and locks (a SQLite data dir can be reopened right away).
        self.api.store().close().await?;
        info!("cluster stopped");
        Ok(())
    }
}
