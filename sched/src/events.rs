//! Records the scheduler's events on pods (core/v1 `Event`s, as `kubectl describe pod` lists
//! them), folded by upstream's event correlator (repeats become a count).

use std::sync::atomic::{AtomicI64, Ordering};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kybernetes_core::Clock;
use kybernetes_core::event_correlator::EventCorrelator;
use kybernetes_core::event_writer::write_event;

/// Event type `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Writes events about pods for one reporting component.
pub(crate) struct EventRecorder {
    client: kube::Client,
    clock: Clock,
    component: String,
    correlator: EventCorrelator,
    /// The last name suffix used, so names stay unique while the clock stands still.
    last_suffix: AtomicI64,
}

fn time(clock: &Clock) -> Time {
    Time(Timestamp::from_second(clock.now().timestamp()).unwrap_or(Timestamp::UNIX_EPOCH))
}

impl EventRecorder {
    pub(crate) fn new(
        client: kube::Client,
        clock: Clock,
        component: impl Into<String>,
    ) -> EventRecorder {
        EventRecorder {
            client,
            clock,
            component: component.into(),
            correlator: EventCorrelator::new(),
            last_suffix: AtomicI64::new(0),
        }
    }

    /// A unique event name for `object`: `<object>.<hex time>`, as upstream names them.
    fn event_name(&self, object: &str) -> String {
        let now = self.clock.now().timestamp_nanos_opt().unwrap_or(0);
        let suffix = self
            .last_suffix
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(now.max(last + 1))
            })
            .map_or(now, |last| now.max(last + 1));
        format!("{object}.{suffix:x}")
    }

    /// Records an event about `pod`. Failures are logged, never returned: events are best
    /// effort.
    pub(crate) async fn record(
        &self,
        pod: &Pod,
        type_: EventType,
        reason: &str,
        action: &str,
        message: String,
    ) {
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let object = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let now = time(&self.clock);
        let event = Event {
            metadata: ObjectMeta {
                name: Some(self.event_name(&object)),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".to_string()),
                kind: Some("Pod".to_string()),
                name: Some(object.clone()),
                namespace: Some(namespace),
                uid: pod.metadata.uid.clone(),
                resource_version: pod.metadata.resource_version.clone(),
                ..Default::default()
            },
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(type_.as_str().to_string()),
            action: Some(action.to_string()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            ..Default::default()
        };
        write_event(&api, &self.correlator, event, self.clock.now()).await;
    }
}
