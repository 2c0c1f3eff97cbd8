//! Events about the objects a controller manages, stamped from the cluster clock and folded
//! by upstream's event correlator: repeats become a count, ten similar events about one
//! object become one combined event, and a flood about one object is cut by the spam filter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use crate::api_values::to_time;
use k8s_openapi::api::core::v1::{Event as CoreEvent, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::Api;
use kybernetes_core::Clock;
use kybernetes_core::event_correlator::EventCorrelator;
use kybernetes_core::event_writer::write_event;

/// One controller's event writer (upstream gives each controller its own recorder, so each
/// has its own correlator). Cheap to clone.
#[derive(Clone)]
pub struct EventRecorder {
    client: kube::Client,
    clock: Clock,
    correlator: Arc<EventCorrelator>,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder").finish_non_exhaustive()
    }
}

impl EventRecorder {
    /// A recorder writing through `client` with times from `clock`.
    pub fn new(client: kube::Client, clock: Clock) -> Self {
        EventRecorder {
            client,
            clock,
            correlator: Arc::new(EventCorrelator::new()),
        }
    }

    /// Records a core/v1 Event about `obj` (kube-runtime's `Recorder` reads the system
    /// clock, so it is not used). Failures are only logged: events are best effort.
    pub async fn record<K>(&self, obj: &K, type_: &str, reason: &str, message: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let meta = obj.meta();
        let ns = meta
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let now = self.clock.now();
        // The clock may stand still (a paused test clock), so a counter keeps names unique.
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let seq = SEQUENCE.fetch_add(1, AtomicOrdering::Relaxed);
        let name = format!(
            "{}.{:x}{seq:04x}",
            meta.name.as_deref().unwrap_or("object"),
            now.timestamp_nanos_opt().unwrap_or_default()
        );
        let event = CoreEvent {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(K::api_version(&()).into_owned()),
                kind: Some(K::kind(&()).into_owned()),
                name: meta.name.clone(),
                namespace: meta.namespace.clone(),
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
                ..Default::default()
            },
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(type_.to_string()),
            first_timestamp: Some(to_time(now)),
            last_timestamp: Some(to_time(now)),
            count: Some(1),
            source: Some(k8s_openapi::api::core::v1::EventSource {
                component: Some(component_of::<K>()),
                host: None,
            }),
            reporting_component: Some(component_of::<K>()),
            ..Default::default()
        };
        let api: Api<CoreEvent> = Api::namespaced(self.client.clone(), &ns);
        write_event(&api, &self.correlator, event, now).await;
    }
}

fn component_of<K: Resource<DynamicType = ()>>() -> String {
    match K::kind(&()).as_ref() {
        "Deployment" => "deployment-controller".into(),
        "ReplicaSet" => "replicaset-controller".into(),
        other => format!("{}-controller", other.to_lowercase()),
    }
}
