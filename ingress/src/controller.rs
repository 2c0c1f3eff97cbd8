//! The sync loop: reflectors over Ingresses, IngressClasses, Services, Endpoints and TLS
//! Secrets; on every change the served Ingresses are worked out again and the proxy's routes,
//! the TLS certificates, the Ingresses' `status.loadBalancer` and the Warning events follow.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::stream::{self, BoxStream, StreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Event, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressLoadBalancerIngress};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use kybernetes_core::Clock;
use kybernetes_core::event_correlator::EventCorrelator;
use kybernetes_core::event_writer::write_event;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::backends::Backends;
use crate::proxy::Proxy;
use crate::tls::{CertTable, SniResolver};
use crate::{INGRESS_CLASS_ANNOTATION, IS_DEFAULT_CLASS_ANNOTATION};

/// The component named in the events this controller writes.
const COMPONENT: &str = "kybernetes-ingress-controller";

/// What the sync loop needs besides the watches.
pub struct IngressSync {
    /// The API client.
    pub client: kube::Client,
    /// Event times.
    pub clock: Clock,
    /// The IngressClass `spec.controller` this controller answers to.
    pub controller_name: String,
    /// The address written to `status.loadBalancer.ingress`.
    pub address: IngressLoadBalancerIngress,
    /// The proxy whose routes follow the Ingresses.
    pub proxy: Arc<Proxy>,
    /// The TLS certificates by SNI name.
    pub resolver: Arc<SniResolver>,
}

/// The reflector stores the routes are built from.
struct Stores {
    ingresses: Store<Ingress>,
    classes: Store<IngressClass>,
    services: Store<Service>,
    endpoints: Store<Endpoints>,
    secrets: Store<Secret>,
}

/// One watch event, told apart only as far as the loop cares.
enum Seen {
    /// A relist began or delivered an object: the store swaps at its end.
    Relisting,
    /// A relist ended: the store holds the full list.
    Listed(usize),
    /// An object changed.
    Changed,
}

/// Watches `api` into a new store; events come out tagged with `source`.
fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    source: usize,
) -> (Store<K>, BoxStream<'static, Result<Seen, watcher::Error>>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + k8s_openapi::serde::de::DeserializeOwned,
    K: Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let events = reflector::reflector(writer, watcher(api, config))
        .default_backoff()
        .map(move |r| {
            r.map(|e| match e {
                watcher::Event::Init | watcher::Event::InitApply(_) => Seen::Relisting,
                watcher::Event::InitDone => Seen::Listed(source),
                watcher::Event::Apply(_) | watcher::Event::Delete(_) => Seen::Changed,
            })
        })
        .boxed();
    (reader, events)
}

impl IngressSync {
    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let c = &self.client;
        let all = watcher::Config::default;
        let (ingresses, w0) = watch(Api::<Ingress>::all(c.clone()), all(), 0);
        let (classes, w1) = watch(Api::<IngressClass>::all(c.clone()), all(), 1);
        let (services, w2) = watch(Api::<Service>::all(c.clone()), all(), 2);
        let (endpoints, w3) = watch(Api::<Endpoints>::all(c.clone()), all(), 3);
        let tls_only = all().fields("type=kubernetes.io/tls");
        let (secrets, w4) = watch(Api::<Secret>::all(c.clone()), tls_only, 4);
        let stores = Stores {
            ingresses,
            classes,
            services,
            endpoints,
            secrets,
        };
        let mut events = stream::select_all([w0, w1, w2, w3, w4]);
        let mut listed = [false; 5];
        let mut state = Reported::default();
        tracing::debug!("ingress sync started");
        loop {
            let seen = tokio::select! {
                _ = shutdown.cancelled() => break,
                seen = events.next() => seen,
            };
            match seen {
                Some(Ok(Seen::Relisting)) => continue,
                Some(Ok(Seen::Listed(source))) => listed[source] = true,
                Some(Ok(Seen::Changed)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watch failed; retrying with backoff");
                    continue;
                }
                None => {
                    tracing::warn!("watch streams ended");
                    break;
                }
            }
            // Until every list is in, a route would be missing its Service or certificate.
            if listed.iter().all(|l| *l) {
                self.sync(&stores, &mut state).await;
            }
        }
        tracing::debug!("ingress sync stopped");
    }

    /// Brings routes, certificates, statuses and events in line with the stores.
    async fn sync(&self, stores: &Stores, reported: &mut Reported) {
        let served = self.served(stores);
        let backends = Backends {
            services: &stores.services,
            endpoints: &stores.endpoints,
        };
        let (table, missing) = backends.table(&served);
        self.proxy.replace_routes(table);
        let (certs, secret_problems) = CertTable::build(&served, &stores.secrets);
        self.resolver.replace(certs);

        let mut warnings = Vec::new();
        for m in missing {
            let namespace = m.ingress.namespace().unwrap_or_default();
            let message = format!("service \"{namespace}/{}\" not found", m.service);
            warnings.push((m.ingress, "ServiceNotFound", message));
        }
        for p in secret_problems {
            warnings.push((p.ingress, "InvalidTLSSecret", p.message));
        }
        let mut now_reported = HashSet::new();
        for (ingress, reason, message) in warnings {
            let key = (ingress.uid().unwrap_or_default(), message.clone());
            if !reported.warnings.contains(&key) {
                tracing::warn!(ingress = %ingress.name_any(), %reason, %message, "ingress backend problem");
                self.warn(&ingress, reason, message, &reported.correlator)
                    .await;
            }
            now_reported.insert(key);
        }
        // A problem that goes away and comes back is reported again.
        reported.warnings = now_reported;

        for ingress in &served {
            self.write_status(ingress).await;
        }
    }

    /// The Ingresses of this controller's classes, oldest first.
    fn served(&self, stores: &Stores) -> Vec<Arc<Ingress>> {
        let ours: Vec<Arc<IngressClass>> = stores
            .classes
            .state()
            .into_iter()
            .filter(|c| {
                c.spec.as_ref().and_then(|s| s.controller.as_deref())
                    == Some(self.controller_name.as_str())
            })
            .collect();
        let has_default = ours.iter().any(|c| {
            c.annotations()
                .get(IS_DEFAULT_CLASS_ANNOTATION)
                .is_some_and(|v| v == "true")
        });
        let is_ours = |name: &str| ours.iter().any(|c| c.name_any() == name);
        let mut served: Vec<Arc<Ingress>> = stores
            .ingresses
            .state()
            .into_iter()
            .filter(|ing| {
                // The class field, else the deprecated annotation, else the default class.
                let class = ing
                    .spec
                    .as_ref()
                    .and_then(|s| s.ingress_class_name.as_deref())
                    .or_else(|| {
                        ing.annotations()
                            .get(INGRESS_CLASS_ANNOTATION)
                            .map(String::as_str)
                    });
                match class {
                    Some(name) => is_ours(name),
                    None => has_default,
                }
            })
            .filter(|ing| ing.meta().deletion_timestamp.is_none())
            .collect();
        served.sort_by_key(|ing| {
            (
                ing.meta()
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.as_second()),
                ing.namespace(),
                ing.name_any(),
            )
        });
        served
    }

    /// Sets `status.loadBalancer.ingress` to this controller's address, unless it is already.
    async fn write_status(&self, ingress: &Ingress) {
        let current = ingress
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_deref())
            .unwrap_or_default();
        if current == std::slice::from_ref(&self.address) {
            return;
        }
        let namespace = ingress.namespace().unwrap_or_default();
        let api: Api<Ingress> = Api::namespaced(self.client.clone(), &namespace);
        let patch = json!({"status": {"loadBalancer": {"ingress": [&self.address]}}});
        match api
            .patch_status(
                &ingress.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                tracing::debug!(ingress = %ingress.name_any(), %namespace, "status address written")
            }
            Err(e) => tracing::warn!(
                ingress = %ingress.name_any(),
                %namespace,
                error = %e,
                "writing the ingress status failed; retried on the next change"
            ),
        }
    }

    /// Writes a Warning event about `ingress`.
    async fn warn(
        &self,
        ingress: &Ingress,
        reason: &str,
        message: String,
        correlator: &EventCorrelator,
    ) {
        let namespace = ingress.namespace().unwrap_or_default();
        let now = self.clock.now();
        let time = self.clock.now_rfc3339();
        // The correlator patches repeats by name, so the name is made here; the clock may
        // stand still (a paused test clock), so a counter keeps names unique.
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{}.{:x}{seq:04x}",
            ingress.name_any(),
            now.timestamp_nanos_opt().unwrap_or_default()
        );
        let event = json!({
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "name": ingress.name_any(),
                "namespace": namespace,
                "uid": ingress.uid(),
                "resourceVersion": ingress.resource_version(),
            },
            "reason": reason,
            "message": message,
            "type": "Warning",
            "firstTimestamp": time,
            "lastTimestamp": time,
            "count": 1,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
        });
        let event: Event = match serde_json::from_value(event) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "building the event failed");
                return;
            }
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        write_event(&api, correlator, event, now).await;
    }
}

/// What has been reported already, so a standing problem gives one event, not one per change.
#[derive(Default)]
struct Reported {
    /// (Ingress UID, message) of the warnings standing now.
    warnings: HashSet<(String, String)>,
    correlator: EventCorrelator,
}
