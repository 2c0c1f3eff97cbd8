//! Records the scheduler's events on pods (core/v1 `Event`s, as `kubectl describe pod` lists
//! them), folding repeats of the same event into a count as upstream's event recorder does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kybernetes_core::Clock;
use serde_json::json;

/// Past this many remembered events the cache starts over (upstream keeps an LRU of 4096).
const MAX_CACHED_EVENTS: usize = 4096;

/// Identifies repeats of one event.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct EventKey {
    namespace: String,
    object: String,
    reason: String,
    message: String,
}

/// A recorded event: its name and how often it happened.
#[derive(Clone, Debug)]
struct Recorded {
    name: String,
    count: i32,
}

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
    cache: Mutex<HashMap<EventKey, Recorded>>,
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
            cache: Mutex::new(HashMap::new()),
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
        let key = EventKey {
            namespace: namespace.clone(),
            object: object.clone(),
            reason: reason.to_string(),
            message: message.clone(),
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let repeat = self.cache.lock().ok().and_then(|c| c.get(&key).cloned());
        if let Some(recorded) = repeat {
            let count = recorded.count + 1;
            let patch = json!({"count": count, "lastTimestamp": self.clock.now_rfc3339()});
            match api
                .patch(
                    &recorded.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {
                    self.remember(
                        key,
                        Recorded {
                            name: recorded.name,
                            count,
                        },
                    );
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, event = %recorded.name, "could not update event, creating a new one")
                }
            }
        }
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
        match api.create(&PostParams::default(), &event).await {
            Ok(created) => {
                let name = created.metadata.name.unwrap_or_default();
                self.remember(key, Recorded { name, count: 1 });
            }
            Err(e) => tracing::warn!(error = %e, pod = %object, reason, "could not record event"),
        }
    }

    fn remember(&self, key: EventKey, recorded: Recorded) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_CACHED_EVENTS && !cache.contains_key(&key) {
                cache.clear();
            }
            cache.insert(key, recorded);
        }
    }
}
