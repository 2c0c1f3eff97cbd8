//! The Endpoints controller: for every Service with a selector, keeps the Endpoints object of
//! the same name listing the selected pods that have an IP, as upstream's
//! `pkg/controller/endpoint`.
//!
//! - Ready pods are in `addresses`, pods that are not ready in `notReadyAddresses`
//!   (`publishNotReadyAddresses` puts every pod in `addresses`). Pods being deleted are left
//!   out unless `publishNotReadyAddresses` is set; finished pods (Succeeded, Failed) always.
//! - Each address has a `targetRef` to its pod and the pod's `nodeName`, and a `hostname` when
//!   the pod's `subdomain` names the service.
//! - Ports come from the service ports: a numeric `targetPort` as is, a named one resolved
//!   against the pod's container ports. Subsets are packed as upstream's `RepackSubsets`.
//! - A headless service without ports gets port-less subsets. A service without a selector is
//!   left alone; the Endpoints of a deleted service are deleted.
//!
//! This module also holds what the [EndpointSlice controller](crate::endpointslice) shares with
//! it: the service and pod caches, the pod → service triggers and the per-pod rules.
//!
//! ```no_run
//! # async fn run(client: kube::Client) {
//! use kybernetes_controllers::endpoints::{EndpointsConfig, spawn_endpoints_controller};
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let informers = kybernetes_controllers::InformerFactory::new(client.clone(), shutdown.clone());
//! let handle = spawn_endpoints_controller(client, kybernetes_core::Clock::new(), EndpointsConfig::default(), &informers, shutdown.clone());
//! shutdown.cancel();
//! handle.await.ok();
//! # }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{Debug, Display};
use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use kybernetes_core::Clock;
use serde::de::DeserializeOwned;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::garbage_collector::queue::WorkQueue;
use crate::informers::{InformerFactory, ObjectChange, SharedInformer};

/// Label that marks the Endpoints or EndpointSlices of a headless service.
pub const HEADLESS_SERVICE_LABEL: &str = "service.kubernetes.io/headless";
/// Annotation set when an Endpoints object holds only part of the addresses.
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";
/// Annotation of leader-election Endpoints, which are never deleted.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// An error while syncing one service; the service is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("api request failed: {0}")]
    Api(#[source] kube::Error),
}

/// Settings of the Endpoints controller.
#[derive(Clone, Debug)]
pub struct EndpointsConfig {
    /// Services synced at once (upstream `--concurrent-endpoint-syncs`, 5).
    pub workers: usize,
    /// Most addresses one Endpoints object holds (upstream 1000); beyond it the object is
    /// truncated, ready addresses first, and annotated `over-capacity: truncated`.
    pub max_addresses: usize,
}

impl Default for EndpointsConfig {
    fn default() -> Self {
        EndpointsConfig {
            workers: 5,
            max_addresses: 1000,
        }
    }
}

/// Starts the Endpoints controller; it runs until `shutdown` is cancelled and retries failed
/// syncs with backoff. The clock is unused and taken for a uniform signature.
pub fn spawn_endpoints_controller(
    client: Client,
    clock: Clock,
    config: EndpointsConfig,
    informers: &InformerFactory,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let _ = clock;
    let pods = informers.pods();
    let workers = config.workers;
    let sync_client = client.clone();
    let run = run_service_controller(
        client.clone(),
        workers,
        Api::<Endpoints>::all(client),
        |ep: &Endpoints| {
            Some(ObjectRef::new(&ep.name_any()).within(&ep.namespace().unwrap_or_default()))
        },
        move |key, caches| {
            let client = sync_client.clone();
            let config = config.clone();
            async move { sync_endpoints(&client, &config, &key, &caches).await }
        },
        pods.clone(),
        shutdown,
    );
    tokio::spawn(run.instrument(info_span!("endpoints_controller")))
}

/// A service, as the key of the controllers' work queues.
pub(crate) type ServiceKey = ObjectRef<Service>;

/// The caches a service sync reads.
#[derive(Clone)]
pub(crate) struct ServiceCaches {
    pub(crate) services: Store<Service>,
    pub(crate) pods: Store<Pod>,
}

/// One object's change: its version before and after (`None`: absent).
type Change<K> = (Option<Arc<K>>, Option<Arc<K>>);

/// Applies a watch event to a cache and returns the (before, after) pair of every object it
/// changed. A relist reports its changes once complete, so a sync never reads a half-built
/// cache.
fn apply_event<K>(
    writer: &mut Writer<K>,
    reader: &Store<K>,
    event: &watcher::Event<K>,
) -> Vec<Change<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    match event {
        watcher::Event::Apply(o) => {
            let key = ObjectRef::from_obj(o);
            let before = reader.get(&key);
            writer.apply_watcher_event(event);
            vec![(before, reader.get(&key))]
        }
        watcher::Event::Delete(o) => {
            let before = reader
                .get(&ObjectRef::from_obj(o))
                .or_else(|| Some(Arc::new(o.clone())));
            writer.apply_watcher_event(event);
            vec![(before, None)]
        }
        watcher::Event::Init | watcher::Event::InitApply(_) => {
            writer.apply_watcher_event(event);
            Vec::new()
        }
        watcher::Event::InitDone => {
            let mut before: HashMap<ObjectRef<K>, Arc<K>> = reader
                .state()
                .into_iter()
                .map(|o| (ObjectRef::from_obj(&*o), o))
                .collect();
            writer.apply_watcher_event(event);
            let mut out: Vec<_> = reader
                .state()
                .into_iter()
                .map(|o| (before.remove(&ObjectRef::from_obj(&*o)), Some(o)))
                .collect();
            out.extend(before.into_values().map(|o| (Some(o), None)));
            out
        }
    }
}

/// Whether `svc` selects `pod`: same namespace and every selector label matches. A service
/// with no (or an empty) selector selects nothing, as upstream stores an empty selector as none.
pub(crate) fn selects(svc: &Service, pod: &Pod) -> bool {
    let Some(selector) = service_selector(svc) else {
        return false;
    };
    svc.namespace() == pod.namespace()
        && selector.iter().all(|(k, v)| pod.labels().get(k) == Some(v))
}

/// The service's selector, if it has a non-empty one.
pub(crate) fn service_selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

/// The services that select the pod in either its old or its new version.
fn services_for(
    services: &Store<Service>,
    before: Option<&Pod>,
    after: Option<&Pod>,
) -> HashSet<ServiceKey> {
    services
        .state()
        .iter()
        .filter(|svc| {
            before.is_some_and(|p| selects(svc, p)) || after.is_some_and(|p| selects(svc, p))
        })
        .map(|svc| ObjectRef::from_obj(&**svc))
        .collect()
}

/// Runs a service-keyed controller: caches services (pods come from the shared informer),
/// queues a service whenever it, one of the pods it selects (before or after the change) or one
/// of its `owned` objects changes, and runs `workers` workers calling `sync` once the caches
/// are filled.
pub(crate) async fn run_service_controller<O, M, S, Fut, E>(
    client: Client,
    workers: usize,
    owned: Api<O>,
    owned_to_service: M,
    sync: S,
    pod_informer: SharedInformer<Pod>,
    shutdown: CancellationToken,
) where
    O: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    M: Fn(&O) -> Option<ServiceKey> + Send + Sync + 'static,
    S: Fn(ServiceKey, ServiceCaches) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Display,
{
    info!("controller starting");
    let queue: Arc<WorkQueue<ServiceKey>> = WorkQueue::new(shutdown.clone());
    let (services, mut service_writer) = reflector::store::<Service>();
    let pods = pod_informer.store();
    // Subscribing here rather than at spawn loses nothing: a new subscriber first sees the
    // whole cache as added.
    let pod_events = pod_informer.subscribe();
    let mut tasks = JoinSet::new();

    let (q, reader) = (queue.clone(), services.clone());
    let service_events = watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff();
    tasks.spawn(for_each_event(
        service_events,
        shutdown.clone(),
        move |event| {
            for (before, after) in apply_event(&mut service_writer, &reader, &event) {
                if let Some(svc) = after.or(before) {
                    q.add(ObjectRef::from_obj(&*svc));
                }
            }
        },
    ));

    let (q, svc_reader) = (queue.clone(), services.clone());
    tasks.spawn(pod_events.for_each(shutdown.clone(), move |change| {
        let (before, after) = match change {
            ObjectChange::Added(new) => (None, Some(new)),
            ObjectChange::Updated { old, new } => (Some(old), Some(new)),
            ObjectChange::Deleted(old) => (Some(old), None),
        };
        for key in services_for(&svc_reader, before.as_deref(), after.as_deref()) {
            q.add(key);
        }
    }));

    let q = queue.clone();
    let owned_events = watcher(owned, watcher::Config::default()).default_backoff();
    tasks.spawn(for_each_event(
        owned_events,
        shutdown.clone(),
        move |event| match &event {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) => {
                if let Some(key) = owned_to_service(o) {
                    q.add(key);
                }
            }
            _ => {}
        },
    ));

    let caches = ServiceCaches { services, pods };
    let ready = async {
        // An error means the informer behind the store was dropped, which happens only when the
        // informers stop at shutdown; the shutdown branch below then ends this controller.
        let _ = caches.services.wait_until_ready().await;
        let _ = caches.pods.wait_until_ready().await;
    };
    tokio::select! {
        _ = ready => {}
        _ = shutdown.cancelled() => {}
    }
    let sync = Arc::new(sync);
    for _ in 0..workers.max(1) {
        let (queue, sync, caches) = (queue.clone(), sync.clone(), caches.clone());
        tasks.spawn(async move {
            while let Some(key) = queue.get().await {
                match sync(key.clone(), caches.clone()).await {
                    Ok(()) => queue.forget(&key),
                    Err(e) => {
                        warn!(service = %key, error = %e, "sync failed; will retry");
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    info!("controller stopped");
}

/// Calls `handle` for every event of a watch stream until shutdown.
pub(crate) async fn for_each_event<K, S>(
    stream: S,
    shutdown: CancellationToken,
    mut handle: impl FnMut(watcher::Event<K>),
) where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    use futures::StreamExt;
    let mut stream = std::pin::pin!(stream);
    loop {
        let item = tokio::select! {
            i = stream.next() => i,
            _ = shutdown.cancelled() => return,
        };
        match item {
            Some(Ok(event)) => handle(event),
            Some(Err(e)) => debug!(error = %e, "watch failed; retrying"),
            None => return,
        }
    }
}

/// Whether the pod's Ready condition is True.
pub(crate) fn is_pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod's IP, if it has one.
pub(crate) fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|ip| !ip.is_empty())
}

/// Upstream `ShouldPodBeInEndpoints`: not finished, has an IP, and not being deleted unless
/// terminating pods are included.
pub(crate) fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) || pod_ip(pod).is_none() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// Upstream `FindPort`: the pod port a service port sends traffic to. A numeric targetPort
/// (or none: the service port) is used as is; a named one must match a container port of
/// the same name and protocol.
pub(crate) fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// The DNS hostname of the pod under this service: its `hostname` if its `subdomain` names
/// the service.
pub(crate) fn endpoint_hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_ref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.namespace() == svc.namespace())
    .then(|| hostname.clone())
}

/// The reference from an endpoint to its pod.
pub(crate) fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.namespace(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// Whether the service has a cluster IP (upstream `IsServiceIPSet`); otherwise it is headless.
pub(crate) fn has_cluster_ip(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty() && ip != "None")
}

type PortKey = (String, i32, String, String);
type AddressKey = (String, String);
/// A port (or `None`: no port) and the addresses offering it, with their readiness.
type PortAddresses = (Option<EndpointPort>, BTreeMap<AddressKey, bool>);

fn port_key(p: &EndpointPort) -> PortKey {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        p.protocol.clone().unwrap_or_default(),
        p.app_protocol.clone().unwrap_or_default(),
    )
}

fn address_key(a: &EndpointAddress) -> AddressKey {
    (
        a.ip.clone(),
        a.target_ref
            .as_ref()
            .and_then(|r| r.uid.clone())
            .unwrap_or_default(),
    )
}

/// Upstream `RepackSubsets`: groups addresses offering the same set of ports into one subset,
/// sorted so equal content always compares equal. A `None` port means a port-less address.
fn repack_subsets(
    entries: Vec<(EndpointAddress, bool, Option<EndpointPort>)>,
) -> Vec<EndpointSubset> {
    let mut addresses: BTreeMap<AddressKey, EndpointAddress> = BTreeMap::new();
    let mut by_port: BTreeMap<Option<PortKey>, PortAddresses> = BTreeMap::new();
    for (address, ready, port) in entries {
        let key = address_key(&address);
        by_port
            .entry(port.as_ref().map(port_key))
            .or_insert_with(|| (port.clone(), BTreeMap::new()))
            .1
            .insert(key.clone(), ready);
        addresses.insert(key, address);
    }
    let mut by_addresses: BTreeMap<Vec<(AddressKey, bool)>, Vec<EndpointPort>> = BTreeMap::new();
    for (port, set) in by_port.into_values() {
        let ports = by_addresses.entry(set.into_iter().collect()).or_default();
        ports.extend(port);
    }
    by_addresses
        .into_iter()
        .map(|(set, ports)| {
            let pick = |ready: bool| -> Option<Vec<EndpointAddress>> {
                let v: Vec<EndpointAddress> = set
                    .iter()
                    .filter(|(_, r)| *r == ready)
                    .filter_map(|(k, _)| addresses.get(k).cloned())
                    .collect();
                (!v.is_empty()).then_some(v)
            };
            EndpointSubset {
                addresses: pick(true),
                not_ready_addresses: pick(false),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

/// Keeps at most `max` addresses, ready ones first. Returns whether any were dropped.
fn truncate_subsets(subsets: &mut [EndpointSubset], max: usize) -> bool {
    let total: usize = subsets
        .iter()
        .map(|s| {
            s.addresses.as_ref().map_or(0, Vec::len)
                + s.not_ready_addresses.as_ref().map_or(0, Vec::len)
        })
        .sum();
    if total <= max {
        return false;
    }
    let mut budget = max;
    for ready in [true, false] {
        for s in subsets.iter_mut() {
            let list = if ready {
                &mut s.addresses
            } else {
                &mut s.not_ready_addresses
            };
            if let Some(v) = list {
                v.truncate(budget);
                budget -= v.len();
                if v.is_empty() {
                    *list = None;
                }
            }
        }
    }
    true
}

/// The subsets the service's Endpoints must hold (upstream `syncService`).
pub(crate) fn desired_subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let spec = svc.spec.clone().unwrap_or_default();
    let tolerate_unready = spec.publish_not_ready_addresses == Some(true);
    let ports = spec.ports.unwrap_or_default();
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let mut entries = Vec::new();
    for pod in pods {
        if !should_pod_be_in_endpoints(pod, tolerate_unready) {
            continue;
        }
        let Some(ip) = pod_ip(pod) else { continue };
        let address = EndpointAddress {
            ip: ip.to_string(),
            hostname: endpoint_hostname(pod, svc),
            node_name: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            target_ref: Some(pod_reference(pod)),
        };
        let ready = tolerate_unready || is_pod_ready(pod);
        if ports.is_empty() {
            if headless {
                entries.push((address, ready, None));
            }
            continue;
        }
        for sp in &ports {
            let Some(port) = find_port(pod, sp) else {
                debug!(pod = %pod.name_any(), port = ?sp.name, "no suitable port on pod");
                continue;
            };
            let ep = EndpointPort {
                name: sp.name.clone(),
                port,
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            };
            entries.push((address.clone(), ready, Some(ep)));
        }
    }
    repack_subsets(entries)
}

/// The pods `svc` selects, from the cache.
pub(crate) fn selected_pods(svc: &Service, pods: &Store<Pod>) -> Vec<Arc<Pod>> {
    pods.state()
        .into_iter()
        .filter(|p| selects(svc, p))
        .collect()
}

/// Syncs one service's Endpoints.
async fn sync_endpoints(
    client: &Client,
    config: &EndpointsConfig,
    key: &ServiceKey,
    caches: &ServiceCaches,
) -> Result<(), Error> {
    let namespace = key.namespace.clone().unwrap_or_default();
    let api: Api<Endpoints> = Api::namespaced(client.clone(), &namespace);
    let Some(svc) = caches.services.get(key) else {
        // The service is gone: so are its Endpoints (but never a leader-election record).
        // Endpoints events trigger syncs too, and a new Service's Endpoints can be seen before
        // the Service reaches the cache: only the API server can say the Service is gone, or a
        // selectorless Service's hand-written Endpoints would be deleted as soon as written.
        let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
        if services
            .get_opt(&key.name)
            .await
            .map_err(Error::Api)?
            .is_some()
        {
            return Ok(());
        }
        if let Some(ep) = api.get_opt(&key.name).await.map_err(Error::Api)?
            && !ep.annotations().contains_key(LEADER_ANNOTATION)
        {
            info!(service = %key, "deleting the Endpoints of a deleted service");
            match api.delete(&key.name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(Error::Api(e)),
            }
        }
        return Ok(());
    };
    if service_selector(&svc).is_none() {
        return Ok(());
    }
    let pods = selected_pods(&svc, &caches.pods);
    let mut subsets = desired_subsets(&svc, &pods);
    let truncated = truncate_subsets(&mut subsets, config.max_addresses);

    let mut labels = svc.labels().clone();
    if has_cluster_ip(&svc) {
        labels.remove(HEADLESS_SERVICE_LABEL);
    } else {
        labels.insert(HEADLESS_SERVICE_LABEL.into(), String::new());
    }
    let current = api.get_opt(&key.name).await.map_err(Error::Api)?;
    let mut ep = current.clone().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: Some(key.name.clone()),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        ..Default::default()
    });
    ep.subsets = (!subsets.is_empty()).then_some(subsets);
    ep.metadata.labels = (!labels.is_empty()).then_some(labels);
    let annotations = ep.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if truncated {
        annotations.insert(OVER_CAPACITY_ANNOTATION.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY_ANNOTATION);
    }
    if annotations.is_empty() {
        ep.metadata.annotations = None;
    }
    match current {
        Some(cur) if same_endpoints(&cur, &ep) => Ok(()),
        Some(_) => {
            debug!(service = %key, "updating Endpoints");
            api.replace(&key.name, &PostParams::default(), &ep)
                .await
                .map(|_| ())
                .map_err(Error::Api)
        }
        None => {
            debug!(service = %key, "creating Endpoints");
            api.create(&PostParams::default(), &ep)
                .await
                .map(|_| ())
                .map_err(Error::Api)
        }
    }
}

fn same_endpoints(a: &Endpoints, b: &Endpoints) -> bool {
    let empty = |s: &Option<Vec<EndpointSubset>>| s.as_ref().is_none_or(|v| v.is_empty());
    let empty_map = |m: &Option<BTreeMap<String, String>>| m.as_ref().is_none_or(|m| m.is_empty());
    (a.subsets == b.subsets || (empty(&a.subsets) && empty(&b.subsets)))
        && (a.metadata.labels == b.metadata.labels
            || (empty_map(&a.metadata.labels) && empty_map(&b.metadata.labels)))
        && (a.metadata.annotations == b.metadata.annotations
            || (empty_map(&a.metadata.annotations) && empty_map(&b.metadata.annotations)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(ip: &str) -> EndpointAddress {
        EndpointAddress {
            ip: ip.into(),
            ..Default::default()
        }
    }

    fn port(name: &str, n: i32) -> Option<EndpointPort> {
        Some(EndpointPort {
            name: Some(name.into()),
            port: n,
            protocol: Some("TCP".into()),
            app_protocol: None,
        })
    }

    #[test]
    fn repacking_groups_addresses_by_their_ports() {
        let subsets = repack_subsets(vec![
            (address("10.0.0.2"), true, port("http", 80)),
            (address("10.0.0.1"), false, port("http", 80)),
            (address("10.0.0.2"), true, port("metrics", 9090)),
            (address("10.0.0.1"), false, port("metrics", 9090)),
            (address("10.0.0.3"), true, port("http", 8080)),
        ]);
        assert_eq!(subsets.len(), 2);
        let both = subsets
            .iter()
            .find(|s| s.ports.as_ref().is_some_and(|p| p.len() == 2))
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            both.addresses
                .unwrap_or_default()
                .iter()
                .map(|a| a.ip.as_str())
                .collect::<Vec<_>>(),
            ["10.0.0.2"]
        );
        assert_eq!(
            both.not_ready_addresses
                .unwrap_or_default()
                .iter()
                .map(|a| a.ip.as_str())
                .collect::<Vec<_>>(),
            ["10.0.0.1"]
        );
    }

    #[test]
    fn truncation_keeps_ready_addresses_first() {
        let mut subsets = repack_subsets(vec![
            (address("10.0.0.1"), false, port("http", 80)),
            (address("10.0.0.2"), true, port("http", 80)),
            (address("10.0.0.3"), true, port("http", 80)),
        ]);
        assert!(truncate_subsets(&mut subsets, 2));
        assert_eq!(subsets[0].addresses.as_ref().map(Vec::len), Some(2));
        assert_eq!(subsets[0].not_ready_addresses, None);
    }
}
