//! The EndpointSlice controller (`discovery.k8s.io/v1`): for every Service with a selector,
//! keeps EndpointSlices listing the selected pods, as upstream's
//! `pkg/controller/endpointslice`.
//!
//! - Slices carry the labels `kubernetes.io/service-name` and
//!   `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io` (plus the
//!   service's own labels), and a controller ownerReference to the Service, so the garbage
//!   collector deletes them with it.
//! - Every pod with an IP of the slice's address type that has not finished is an endpoint,
//!   terminating pods included, with the conditions `ready` (ready and not terminating, or
//!   `publishNotReadyAddresses`), `serving` (ready) and `terminating`.
//! - Endpoints are grouped by their resolved ports, at most
//!   [`EndpointSliceConfig::max_endpoints_per_slice`] per slice. Existing slices are updated
//!   in place, keeping each endpoint in the slice it is in; new endpoints fill slices with room
//!   before new slices are created. A service with no endpoints keeps one empty placeholder
//!   slice, as upstream.
//!
//! ```no_run
//! # async fn run(client: kube::Client) {
//! use kybernetes_controllers::endpointslice::{EndpointSliceConfig, spawn_endpointslice_controller};
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let informers = kybernetes_controllers::InformerFactory::new(client.clone(), shutdown.clone());
//! let handle = spawn_endpointslice_controller(client, kybernetes_core::Clock::new(), EndpointSliceConfig::default(), &informers, shutdown.clone());
//! shutdown.cancel();
//! handle.await.ok();
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use kybernetes_core::Clock;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span};

use crate::endpoints::{
    Error, HEADLESS_SERVICE_LABEL, ServiceCaches, ServiceKey, endpoint_hostname, find_port,
    has_cluster_ip, is_pod_ready, pod_ip, pod_reference, run_service_controller, selected_pods,
    service_selector, should_pod_be_in_endpoints,
};
use crate::informers::InformerFactory;

/// Label naming the service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's name, the value of [`MANAGED_BY_LABEL`].
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";

/// Settings of the EndpointSlice controller.
#[derive(Clone, Debug)]
pub struct EndpointSliceConfig {
    /// Services synced at once (upstream `--concurrent-service-endpoint-syncs`, 5).
    pub workers: usize,
    /// Most endpoints in one slice (upstream `--max-endpoints-per-slice`, 100).
    pub max_endpoints_per_slice: usize,
}

impl Default for EndpointSliceConfig {
    fn default() -> Self {
        EndpointSliceConfig {
            workers: 5,
            max_endpoints_per_slice: 100,
        }
    }
}

/// Starts the EndpointSlice controller; it runs until `shutdown` is cancelled and retries
/// failed syncs with backoff. The clock is unused and taken for a uniform signature.
pub fn spawn_endpointslice_controller(
    client: Client,
    clock: Clock,
    config: EndpointSliceConfig,
    informers: &InformerFactory,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let _ = clock;
    let pods = informers.pods();
    let sync_client = client.clone();
    let run = run_service_controller(
        client.clone(),
        config.workers,
        Api::<EndpointSlice>::all(client),
        |slice: &EndpointSlice| {
            let managed = slice
                .labels()
                .get(MANAGED_BY_LABEL)
                .is_some_and(|m| m == CONTROLLER_NAME);
            let service = slice.labels().get(SERVICE_NAME_LABEL).filter(|_| managed)?;
            Some(ObjectRef::new(service).within(&slice.namespace().unwrap_or_default()))
        },
        move |key, caches| {
            let client = sync_client.clone();
            let config = config.clone();
            async move { sync_slices(&client, &config, &key, &caches).await }
        },
        pods.clone(),
        shutdown,
    );
    tokio::spawn(run.instrument(info_span!("endpointslice_controller")))
}

type PortsKey = Vec<(String, i32, String, String)>;

fn ports_key(ports: &[EndpointPort]) -> PortsKey {
    let mut key: PortsKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or(0),
                p.protocol.clone().unwrap_or_default(),
                p.app_protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    key.sort();
    key
}

/// Identifies an endpoint across syncs: its first address and its pod.
fn endpoint_key(ep: &Endpoint) -> (String, String) {
    (
        ep.addresses.first().cloned().unwrap_or_default(),
        ep.target_ref
            .as_ref()
            .and_then(|r| r.uid.clone())
            .unwrap_or_default(),
    )
}

fn address_type(svc: &Service) -> &'static str {
    let families = svc.spec.as_ref().and_then(|s| s.ip_families.as_ref());
    match families.and_then(|f| f.first()).map(String::as_str) {
        Some("IPv6") => "IPv6",
        _ => "IPv4",
    }
}

/// The endpoint of one pod (upstream `podToEndpoint`), with its resolved ports.
fn pod_to_endpoint(
    svc: &Service,
    pod: &Pod,
    address_type: &str,
) -> Option<(Vec<EndpointPort>, Endpoint)> {
    if !should_pod_be_in_endpoints(pod, true) {
        return None;
    }
    let ip = pod_ip(pod)?;
    if ip.contains(':') != (address_type == "IPv6") {
        return None;
    }
    let publish_not_ready = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    let serving = is_pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = publish_not_ready || (serving && !terminating);
    let endpoint = Endpoint {
        addresses: vec![ip.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: endpoint_hostname(pod, svc),
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(pod_reference(pod)),
        ..Default::default()
    };
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            find_port(pod, sp).map(|port| EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect();
    Some((ports, endpoint))
}

/// The labels every slice of `svc` carries (upstream `setEndpointSliceLabels`).
fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = svc
        .labels()
        .iter()
        .filter(|(k, _)| {
            ![SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_SERVICE_LABEL].contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(SERVICE_NAME_LABEL.into(), svc.name_any());
    labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    if !has_cluster_ip(svc) {
        labels.insert(HEADLESS_SERVICE_LABEL.into(), String::new());
    }
    labels
}

fn service_owner_reference(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.name_any(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    slice
        .owner_references()
        .iter()
        .any(|o| o.kind == "Service" && Some(&o.uid) == svc.metadata.uid.as_ref())
}

fn new_slice(
    svc: &Service,
    address_type: &str,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", svc.name_any())),
            namespace: svc.namespace(),
            labels: Some(slice_labels(svc)),
            owner_references: Some(vec![service_owner_reference(svc)]),
            ..Default::default()
        },
        address_type: address_type.to_string(),
        endpoints,
        ports: Some(ports),
    }
}

/// The writes that bring a service's slices to the desired state.
#[derive(Debug, Default)]
struct Plan {
    create: Vec<EndpointSlice>,
    update: Vec<EndpointSlice>,
    delete: Vec<String>,
}

/// Upstream `reconcileByAddressType`, simplified: keeps endpoints in the slices they are in,
/// refreshes changed ones, drops gone ones, then places new endpoints into slices with room
/// before creating new slices.
fn plan(
    svc: &Service,
    address_type: &str,
    existing: Vec<EndpointSlice>,
    desired: BTreeMap<PortsKey, (Vec<EndpointPort>, Vec<Endpoint>)>,
    max: usize,
) -> Plan {
    let max = max.max(1);
    let labels = slice_labels(svc);
    let mut plan = Plan::default();
    let mut by_ports: HashMap<PortsKey, Vec<EndpointSlice>> = HashMap::new();
    for slice in existing {
        let name = slice.name_any();
        let key = ports_key(slice.ports.as_deref().unwrap_or_default());
        if !owned_by(&slice, svc)
            || slice.address_type != address_type
            || (!desired.is_empty() && !desired.contains_key(&key))
        {
            plan.delete.push(name);
        } else {
            by_ports.entry(key).or_default().push(slice);
        }
    }
    if desired.is_empty() {
        // Keep (or create) one empty placeholder slice.
        let mut slices: Vec<EndpointSlice> = by_ports.into_values().flatten().collect();
        slices.sort_by_key(|s| s.name_any());
        let keep = slices
            .iter()
            .position(|s| s.endpoints.is_empty() && s.ports.as_ref().is_none_or(|p| p.is_empty()));
        for (i, mut slice) in slices.into_iter().enumerate() {
            if Some(i) != keep {
                plan.delete.push(slice.name_any());
            } else if slice.metadata.labels.as_ref() != Some(&labels) {
                slice.metadata.labels = Some(labels.clone());
                plan.update.push(slice);
            }
        }
        if keep.is_none() {
            plan.create
                .push(new_slice(svc, address_type, Vec::new(), Vec::new()));
        }
        return plan;
    }
    for (key, (ports, endpoints)) in desired {
        let mut want: BTreeMap<(String, String), Endpoint> = endpoints
            .into_iter()
            .map(|e| (endpoint_key(&e), e))
            .collect();
        let mut slices = by_ports.remove(&key).unwrap_or_default();
        slices.sort_by_key(|s| s.name_any());
        let mut changed: Vec<EndpointSlice> = Vec::new();
        let mut unchanged: Vec<EndpointSlice> = Vec::new();
        for mut slice in slices {
            let mut dirty = slice.metadata.labels.as_ref() != Some(&labels)
                || slice.ports.as_ref() != Some(&ports);
            let mut kept = Vec::new();
            for ep in std::mem::take(&mut slice.endpoints) {
                match want.remove(&endpoint_key(&ep)) {
                    Some(d) => {
                        dirty |= d != ep;
                        kept.push(d);
                    }
                    None => dirty = true,
                }
            }
            slice.endpoints = kept;
            slice.metadata.labels = Some(labels.clone());
            slice.ports = Some(ports.clone());
            if slice.endpoints.is_empty() {
                plan.delete.push(slice.name_any());
            } else if dirty {
                changed.push(slice);
            } else {
                unchanged.push(slice);
            }
        }
        let mut remaining: Vec<Endpoint> = want.into_values().collect();
        for slice in changed.iter_mut() {
            let room = max
                .saturating_sub(slice.endpoints.len())
                .min(remaining.len());
            slice.endpoints.extend(remaining.drain(..room));
        }
        for mut slice in unchanged {
            let room = max
                .saturating_sub(slice.endpoints.len())
                .min(remaining.len());
            if room > 0 {
                slice.endpoints.extend(remaining.drain(..room));
                changed.push(slice);
            }
        }
        plan.update.extend(changed);
        while !remaining.is_empty() {
            let chunk: Vec<Endpoint> = remaining.drain(..max.min(remaining.len())).collect();
            plan.create
                .push(new_slice(svc, address_type, ports.clone(), chunk));
        }
    }
    plan.delete
        .extend(by_ports.into_values().flatten().map(|s| s.name_any()));
    plan
}

/// Syncs one service's EndpointSlices.
async fn sync_slices(
    client: &Client,
    config: &EndpointSliceConfig,
    key: &ServiceKey,
    caches: &ServiceCaches,
) -> Result<(), Error> {
    // A deleted service's slices go with it through their ownerReference.
    let Some(svc) = caches.services.get(key) else {
        return Ok(());
    };
    let external_name = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName");
    if svc.metadata.deletion_timestamp.is_some()
        || service_selector(&svc).is_none()
        || external_name
    {
        return Ok(());
    }
    let namespace = key.namespace.clone().unwrap_or_default();
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &namespace);
    let selector = format!(
        "{SERVICE_NAME_LABEL}={},{MANAGED_BY_LABEL}={CONTROLLER_NAME}",
        key.name
    );
    let existing: Vec<EndpointSlice> = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::Api)?
        .items
        .into_iter()
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .collect();

    let address_type = address_type(&svc);
    let mut pods: Vec<Arc<Pod>> = selected_pods(&svc, &caches.pods);
    pods.sort_by_key(|p| p.name_any());
    let mut desired: BTreeMap<PortsKey, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
    for pod in &pods {
        if let Some((ports, endpoint)) = pod_to_endpoint(&svc, pod, address_type) {
            desired
                .entry(ports_key(&ports))
                .or_insert_with(|| (ports, Vec::new()))
                .1
                .push(endpoint);
        }
    }
    let plan = plan(
        &svc,
        address_type,
        existing,
        desired,
        config.max_endpoints_per_slice,
    );
    for name in &plan.delete {
        debug!(service = %key, slice = %name, "deleting EndpointSlice");
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::Api(e)),
        }
    }
    for slice in &plan.update {
        debug!(service = %key, slice = %slice.name_any(), "updating EndpointSlice");
        api.replace(&slice.name_any(), &PostParams::default(), slice)
            .await
            .map_err(Error::Api)?;
    }
    for slice in &plan.create {
        debug!(service = %key, endpoints = slice.endpoints.len(), "creating EndpointSlice");
        api.create(&PostParams::default(), slice)
            .await
            .map_err(Error::Api)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("svc-uid".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn endpoint(ip: &str) -> Endpoint {
        Endpoint {
            addresses: vec![ip.into()],
            ..Default::default()
        }
    }

    fn port() -> Vec<EndpointPort> {
        vec![EndpointPort {
            name: Some("http".into()),
            port: Some(80),
            protocol: Some("TCP".into()),
            app_protocol: None,
        }]
    }

    #[test]
    fn endpoints_are_split_into_slices_of_at_most_max() {
        let eps: Vec<Endpoint> = (0..5).map(|i| endpoint(&format!("10.0.0.{i}"))).collect();
        let desired = BTreeMap::from([(ports_key(&port()), (port(), eps))]);
        let p = plan(&svc(), "IPv4", Vec::new(), desired, 2);
        assert_eq!(
            p.create
                .iter()
                .map(|s| s.endpoints.len())
                .collect::<Vec<_>>(),
            [2, 2, 1]
        );
    }

    #[test]
    fn a_service_without_endpoints_gets_one_placeholder() {
        let p = plan(&svc(), "IPv4", Vec::new(), BTreeMap::new(), 100);
        assert_eq!(p.create.len(), 1);
        assert!(p.create[0].endpoints.is_empty());
        // A second sync keeps it.
        let mut existing = p.create[0].clone();
        existing.metadata.name = Some("web-abcde".into());
        let p = plan(&svc(), "IPv4", vec![existing], BTreeMap::new(), 100);
        assert!(p.create.is_empty() && p.delete.is_empty() && p.update.is_empty());
    }

    #[test]
    fn new_endpoints_fill_existing_slices_before_new_ones_are_created() {
        let mut existing = new_slice(&svc(), "IPv4", port(), vec![endpoint("10.0.0.1")]);
        existing.metadata.name = Some("web-abcde".into());
        let desired = BTreeMap::from([(
            ports_key(&port()),
            (port(), vec![endpoint("10.0.0.1"), endpoint("10.0.0.2")]),
        )]);
        let p = plan(&svc(), "IPv4", vec![existing], desired, 100);
        assert!(p.create.is_empty());
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].endpoints.len(), 2);
    }
}
