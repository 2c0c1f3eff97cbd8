//! Events (`core/v1`), written in the background with the cluster clock's timestamps.
//! Upstream's event correlator folds them: repeats bump `count` and `lastTimestamp` instead of
//! creating a new object, similar events combine, and a flood about one object is cut.
//! Recording never blocks a pod: when the queue is full, events are dropped.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use kube::api::{Api, ObjectMeta};
use kybernetes_core::Clock;
use kybernetes_core::event_correlator::EventCorrelator;
use kybernetes_core::event_writer::write_event;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::convert::time;

const QUEUE: usize = 4096;

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

struct PendingEvent {
    object: ObjectReference,
    type_: EventType,
    reason: String,
    message: String,
    time: DateTime<Utc>,
}

/// Hands events to the background writer.
#[derive(Clone, Debug)]
pub(crate) struct EventRecorder {
    tx: mpsc::Sender<PendingEvent>,
    clock: Clock,
}

impl std::fmt::Debug for PendingEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingEvent")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

/// `spec.containers{name}` (or `spec.initContainers{name}`) for a container of `pod`.
pub(crate) fn container_field_path(pod: &Pod, container: &str) -> String {
    let is_init = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|ics| ics.iter().any(|c| c.name == container));
    if is_init {
        format!("spec.initContainers{{{container}}}")
    } else {
        format!("spec.containers{{{container}}}")
    }
}

impl EventRecorder {
    /// Starts the writer for node `node`.
    pub(crate) fn spawn(
        client: kube::Client,
        clock: Clock,
        node: String,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tracker.spawn(write_events(client, node, rx, shutdown));
        EventRecorder { tx, clock }
    }

    /// Records an event about `pod`, or one of its containers.
    pub(crate) fn pod(
        &self,
        pod: &Pod,
        container: Option<&str>,
        type_: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        let object = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            field_path: container.map(|c| container_field_path(pod, c)),
        };
        self.record(object, type_, reason, message.into());
    }

    /// Records an event about node `name`.
    pub(crate) fn node(
        &self,
        name: &str,
        uid: Option<String>,
        type_: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        let object = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(name.into()),
            uid,
            ..Default::default()
        };
        self.record(object, type_, reason, message.into());
    }

    fn record(&self, object: ObjectReference, type_: EventType, reason: &str, message: String) {
        let ev = PendingEvent {
            object,
            type_,
            reason: reason.into(),
            message,
            time: self.clock.now(),
        };
        if self.tx.try_send(ev).is_err() {
            debug!(reason, "event queue full; event dropped");
        }
    }
}

async fn write_events(
    client: kube::Client,
    node: String,
    mut rx: mpsc::Receiver<PendingEvent>,
    shutdown: CancellationToken,
) {
    let correlator = EventCorrelator::new();
    // Names are `<object>.<hex nanoseconds>`; under a paused clock many events share one
    // instant, so the suffix is kept strictly increasing.
    let mut last_nanos: i64 = 0;
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = rx.recv() => match ev { Some(ev) => ev, None => return },
        };
        let namespace = ev
            .object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        last_nanos = ev
            .time
            .timestamp_nanos_opt()
            .unwrap_or_default()
            .max(last_nanos + 1);
        let name = format!(
            "{}.{:x}",
            ev.object.name.as_deref().unwrap_or("unknown"),
            last_nanos
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace),
                ..Default::default()
            },
            involved_object: ev.object,
            reason: Some(ev.reason),
            message: Some(ev.message),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(node.clone()),
            }),
            first_timestamp: Some(time(ev.time)),
            last_timestamp: Some(time(ev.time)),
            count: Some(1),
            type_: Some(ev.type_.as_str().into()),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(node.clone()),
            ..Default::default()
        };
        write_event(&api, &correlator, event, ev.time).await;
    }
}
