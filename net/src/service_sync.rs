//! The service sync loop, kube-proxy's place in the cluster: it watches Services and Endpoints
//! and keeps a [`Network`]'s proxy table and DNS catalog in step with them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::service_entry::service_entry;
use crate::{Network, ServiceEntry};

/// `(namespace, name)` of a Service and of its Endpoints.
type Key = (String, String);

/// Starts the service sync loop: it watches Services and Endpoints in every namespace and calls
/// [`Network::sync_service`] / [`Network::remove_service`] so that the proxy table and DNS
/// follow them. Only ready addresses are served, so DNS follows readiness.
///
/// The task stops when `shutdown` is cancelled. API errors are logged and the watches retry
/// with backoff; a failed sync is retried on the service's next change.
///
/// ```no_run
/// # async fn example(client: kube::Client) {
/// use std::sync::Arc;
/// use kybernetes_net::{LocalNetwork, Network, spawn_service_sync};
/// use tokio_util::sync::CancellationToken;
///
/// let network = Arc::new(LocalNetwork::default());
/// let shutdown = CancellationToken::new();
/// let task = spawn_service_sync(client, network.clone(), shutdown.clone());
/// // … later, once the `kubernetes` service is synced:
/// let _ips = network.resolve("kubernetes.default", "kube-system");
/// shutdown.cancel();
/// task.await.ok();
/// # }
/// ```
pub fn spawn_service_sync(
    client: kube::Client,
    network: Arc<dyn Network>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let span = tracing::info_span!("service_sync");
    tokio::spawn(run(client, network, shutdown).instrument(span))
}

/// One change seen on either watch. Each is moved once, straight into the table, so the size
/// difference between the variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Change {
    Service(watcher::Event<Service>),
    Endpoints(watcher::Event<Endpoints>),
}

async fn run(client: kube::Client, network: Arc<dyn Network>, shutdown: CancellationToken) {
    let services = watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(|r| r.map(Change::Service));
    let endpoints = watcher(Api::<Endpoints>::all(client), watcher::Config::default())
        .default_backoff()
        .map(|r| r.map(Change::Endpoints));
    let mut changes = std::pin::pin!(stream::select(services, endpoints));
    let mut table = ServiceTable::default();
    tracing::debug!("service sync started");
    loop {
        let change = tokio::select! {
            _ = shutdown.cancelled() => break,
            change = changes.next() => change,
        };
        match change {
            Some(Ok(change)) => {
                for key in table.apply(change) {
                    table.reconcile(&key, network.as_ref()).await;
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "watch failed; retrying with backoff"),
            None => {
                tracing::warn!("watch streams ended");
                break;
            }
        }
    }
    tracing::debug!("service sync stopped");
}

/// The watched objects, and what was last handed to the network.
#[derive(Default)]
struct ServiceTable {
    services: HashMap<Key, Service>,
    endpoints: HashMap<Key, Endpoints>,
    /// Buffers filled during a relist, swapped in at `InitDone` (as a reflector store does).
    services_relist: Option<HashMap<Key, Service>>,
    endpoints_relist: Option<HashMap<Key, Endpoints>>,
    synced: HashMap<Key, ServiceEntry>,
}

impl ServiceTable {
    /// Records one change and returns the services it may have touched.
    fn apply(&mut self, change: Change) -> HashSet<Key> {
        match change {
            Change::Service(event) => {
                apply_event(&mut self.services, &mut self.services_relist, event)
            }
            Change::Endpoints(event) => {
                apply_event(&mut self.endpoints, &mut self.endpoints_relist, event)
            }
        }
    }

    /// Brings the network in line with what is known about one service.
    async fn reconcile(&mut self, key: &Key, network: &dyn Network) {
        let (namespace, name) = key;
        let desired = self
            .services
            .get(key)
            .and_then(|svc| service_entry(svc, self.endpoints.get(key)));
        match desired {
            Some(entry) if self.synced.get(key) == Some(&entry) => {}
            Some(entry) => {
                self.synced.remove(key);
                match network.sync_service(entry.clone()).await {
                    Ok(()) => {
                        let endpoints = entry.endpoints.len();
                        tracing::debug!(%namespace, service = %name, endpoints, "service synced");
                        self.synced.insert(key.clone(), entry);
                    }
                    Err(e) => {
                        tracing::warn!(%namespace, service = %name, error = %e, "syncing service failed")
                    }
                }
            }
            None => {
                if self.synced.remove(key).is_some() {
                    match network.remove_service(namespace, name).await {
                        Ok(()) => tracing::debug!(%namespace, service = %name, "service removed"),
                        Err(e) => {
                            tracing::warn!(%namespace, service = %name, error = %e, "removing service failed")
                        }
                    }
                }
            }
        }
    }
}

/// Applies one watch event to `store`, returning the keys it touched.
fn apply_event<K: kube::Resource>(
    store: &mut HashMap<Key, K>,
    relist: &mut Option<HashMap<Key, K>>,
    event: watcher::Event<K>,
) -> HashSet<Key> {
    match event {
        watcher::Event::Apply(obj) => {
            let key = key_of(&obj);
            store.insert(key.clone(), obj);
            HashSet::from([key])
        }
        watcher::Event::Delete(obj) => {
            let key = key_of(&obj);
            store.remove(&key);
            HashSet::from([key])
        }
        watcher::Event::Init => {
            *relist = Some(HashMap::new());
            HashSet::new()
        }
        watcher::Event::InitApply(obj) => {
            relist
                .get_or_insert_with(HashMap::new)
                .insert(key_of(&obj), obj);
            HashSet::new()
        }
        watcher::Event::InitDone => {
            let fresh = relist.take().unwrap_or_default();
            let old = std::mem::replace(store, fresh);
            old.into_keys().chain(store.keys().cloned()).collect()
        }
    }
}

fn key_of<K: kube::Resource>(obj: &K) -> Key {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}
