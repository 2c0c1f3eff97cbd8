//! Upstream's event correlator (client-go `tools/record`), for every component that writes
//! core/v1 Events: repeats of one event become a count on a single object, a burst of
//! similar events about one object (same reason, different messages) folds into one
//! "(combined from similar events)" event, and a token bucket per source and object drops
//! the rest of a flood. A crash loop or a 1,000-pod scale-up then writes a handful of Events,
//! not one per occurrence.
//!
//! The correlator decides; the caller writes. It is fed the event the caller would create
//! (name already chosen) and the time from the cluster clock, and answers [`Correlated`].

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Similar events about one object within this window are aggregated (upstream's
/// `defaultAggregateIntervalInSeconds`).
const AGGREGATE_WINDOW_SECONDS: i64 = 600;
/// From this many distinct messages on, similar events are combined
/// (`defaultAggregateMaxEvents`).
const AGGREGATE_MAX_EVENTS: usize = 10;
/// The spam filter's burst per source and object (`defaultSpamBurst`).
const SPAM_BURST: f64 = 25.0;
/// Its refill: one event every five minutes (`defaultSpamQPS`).
const SPAM_REFILL_SECONDS: f64 = 300.0;
/// Entries each cache keeps before it starts over (upstream keeps LRUs of 4096).
const CACHE_LIMIT: usize = 4096;

/// The prefix of an aggregated event's message, as upstream writes it.
pub const COMBINED_PREFIX: &str = "(combined from similar events): ";

/// What to write for one event.
#[derive(Clone, Debug, PartialEq)]
pub enum Correlated {
    /// Create this event (its message may now be the combined one).
    Create(Box<Event>),
    /// Patch the existing event `name` with `patch` (a JSON merge patch of `count`,
    /// `lastTimestamp` and `message`). If the patch fails (the event expired), create
    /// `fallback` instead and [`EventCorrelator::remember`] it.
    Update {
        /// The event to patch.
        name: String,
        /// The merge patch.
        patch: serde_json::Value,
        /// What to create if the event is gone.
        fallback: Box<Event>,
    },
    /// Dropped by the spam filter.
    Skip,
}

/// One source's view of an object: who reports, about what.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ObjectKey {
    component: String,
    host: String,
    kind: String,
    namespace: String,
    name: String,
    uid: String,
    api_version: String,
}

/// Events that aggregate together: the object and source, type, reason and reporter.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct AggregateKey {
    object: ObjectKey,
    type_: String,
    reason: String,
    reporting_component: String,
    reporting_instance: String,
}

/// Repeats of one event: the aggregate key, the field path and the message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct EventKey {
    aggregate: AggregateKey,
    field_path: String,
    message: String,
}

struct Aggregate {
    messages: HashSet<String>,
    last: DateTime<Utc>,
}

struct Logged {
    name: String,
    count: i32,
    first: Option<Time>,
}

struct Bucket {
    tokens: f64,
    at: DateTime<Utc>,
}

#[derive(Default)]
struct State {
    aggregates: HashMap<AggregateKey, Aggregate>,
    logged: HashMap<EventKey, Logged>,
    buckets: HashMap<ObjectKey, Bucket>,
}

/// The correlator of one event-writing component. Thread-safe; cheap to share by reference.
#[derive(Default)]
pub struct EventCorrelator {
    state: Mutex<State>,
}

impl std::fmt::Debug for EventCorrelator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventCorrelator").finish_non_exhaustive()
    }
}

fn text(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

fn object_key(e: &Event) -> ObjectKey {
    let source = e.source.clone().unwrap_or_default();
    let o = &e.involved_object;
    ObjectKey {
        component: text(&source.component),
        host: text(&source.host),
        kind: text(&o.kind),
        namespace: text(&o.namespace),
        name: text(&o.name),
        uid: text(&o.uid),
        api_version: text(&o.api_version),
    }
}

fn aggregate_key(e: &Event) -> AggregateKey {
    AggregateKey {
        object: object_key(e),
        type_: text(&e.type_),
        reason: text(&e.reason),
        reporting_component: text(&e.reporting_component),
        reporting_instance: text(&e.reporting_instance),
    }
}

fn time(t: DateTime<Utc>) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_second(t.timestamp())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

impl EventCorrelator {
    /// A correlator with upstream's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is only counters: a panic while holding the lock leaves it usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides what to write for `event`, which happened at `now`.
    pub fn correlate(&self, mut event: Event, now: DateTime<Utc>) -> Correlated {
        let mut st = self.lock();
        if !take_token(&mut st.buckets, object_key(&event), now) {
            return Correlated::Skip;
        }
        let aggregate = aggregate_key(&event);
        let message = text(&event.message);
        let combined = {
            if st.aggregates.len() >= CACHE_LIMIT && !st.aggregates.contains_key(&aggregate) {
                st.aggregates.clear();
            }
            let record = st
                .aggregates
                .entry(aggregate.clone())
                .or_insert_with(|| Aggregate {
                    messages: HashSet::new(),
                    last: now,
                });
            if (now - record.last).num_seconds() > AGGREGATE_WINDOW_SECONDS {
                record.messages.clear();
            }
            record.last = now;
            record.messages.insert(message.clone());
            record.messages.len() >= AGGREGATE_MAX_EVENTS
        };
        if combined {
            // Every later similar event is the one combined event: its key drops the message
            // and the field path, as upstream's aggregate key does.
            event.message = Some(format!("{COMBINED_PREFIX}{message}"));
            event.involved_object.field_path = None;
        }
        let key = event_key(aggregate, &event);
        match st.logged.get_mut(&key) {
            Some(logged) => {
                logged.count += 1;
                let patch = serde_json::json!({
                    "count": logged.count,
                    "lastTimestamp": time(now),
                    "message": event.message,
                });
                event.count = Some(logged.count);
                event.first_timestamp = logged.first.clone();
                event.last_timestamp = Some(time(now));
                Correlated::Update {
                    name: logged.name.clone(),
                    patch,
                    fallback: Box::new(event),
                }
            }
            None => {
                event.count = Some(1);
                event.first_timestamp.get_or_insert_with(|| time(now));
                event.last_timestamp = Some(time(now));
                remember_logged(&mut st.logged, key, &event);
                Correlated::Create(Box::new(event))
            }
        }
    }

    /// Records `event` as the one that repeats of it update: after creating an
    /// [`Correlated::Update`]'s fallback.
    pub fn remember(&self, event: &Event) {
        let mut st = self.lock();
        let key = event_key(aggregate_key(event), event);
        remember_logged(&mut st.logged, key, event);
    }

    /// Forgets `event` after its creation failed, so that the next repeat creates it again.
    pub fn forget(&self, event: &Event) {
        let name = event.metadata.name.clone().unwrap_or_default();
        self.lock().logged.retain(|_, l| l.name != name);
    }
}

/// The key under which repeats of `event` are counted: a combined event (its message carries
/// the combined prefix) is counted under its aggregate alone.
fn event_key(aggregate: AggregateKey, event: &Event) -> EventKey {
    let message = text(&event.message);
    if message.starts_with(COMBINED_PREFIX) {
        EventKey {
            aggregate,
            field_path: String::new(),
            message: String::new(),
        }
    } else {
        EventKey {
            aggregate,
            field_path: text(&event.involved_object.field_path),
            message,
        }
    }
}

fn remember_logged(logged: &mut HashMap<EventKey, Logged>, key: EventKey, event: &Event) {
    if logged.len() >= CACHE_LIMIT && !logged.contains_key(&key) {
        logged.clear();
    }
    logged.insert(
        key,
        Logged {
            name: event.metadata.name.clone().unwrap_or_default(),
            count: event.count.unwrap_or(1),
            first: event.first_timestamp.clone(),
        },
    );
}

/// Upstream's spam filter: a token bucket per source and object.
fn take_token(
    buckets: &mut HashMap<ObjectKey, Bucket>,
    key: ObjectKey,
    now: DateTime<Utc>,
) -> bool {
    if buckets.len() >= CACHE_LIMIT && !buckets.contains_key(&key) {
        buckets.clear();
    }
    let bucket = buckets.entry(key).or_insert(Bucket {
        tokens: SPAM_BURST,
        at: now,
    });
    let elapsed = (now - bucket.at).num_milliseconds().max(0) as f64 / 1000.0;
    bucket.tokens = (bucket.tokens + elapsed / SPAM_REFILL_SECONDS).min(SPAM_BURST);
    bucket.at = now;
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EventSource, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn event(n: usize, object: &str, reason: &str, message: &str) -> Event {
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{object}.{n:x}")),
                namespace: Some("default".into()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                kind: Some("ReplicaSet".into()),
                name: Some(object.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{object}")),
                ..Default::default()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some("Normal".into()),
            source: Some(EventSource {
                component: Some("replicaset-controller".into()),
                host: None,
            }),
            ..Default::default()
        }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn a_repeat_updates_the_first_event_with_its_count() {
        let c = EventCorrelator::new();
        let Correlated::Create(first) = c.correlate(event(1, "rs", "BackOff", "again"), t0())
        else {
            panic!("the first one is created");
        };
        assert_eq!(first.count, Some(1));
        let later = t0() + chrono::Duration::seconds(30);
        match c.correlate(event(2, "rs", "BackOff", "again"), later) {
            Correlated::Update { name, patch, .. } => {
                assert_eq!(name, "rs.1");
                assert_eq!(patch["count"], 2);
            }
            other => panic!("a repeat is an update: {other:?}"),
        }
    }

    #[test]
    fn ten_similar_messages_fold_into_one_combined_event() {
        let c = EventCorrelator::new();
        let mut creates = Vec::new();
        let mut updates = 0;
        for i in 0..20 {
            match c.correlate(
                event(
                    i,
                    "rs",
                    "SuccessfulCreate",
                    &format!("Created pod: web-{i}"),
                ),
                t0(),
            ) {
                Correlated::Create(e) => creates.push(e),
                Correlated::Update { .. } => updates += 1,
                Correlated::Skip => panic!("within the burst"),
            }
        }
        // Nine distinct events, then the combined one, which the other ten update.
        assert_eq!(creates.len(), 10);
        assert_eq!(updates, 10);
        let combined = creates
            .last()
            .and_then(|e| e.message.clone())
            .unwrap_or_default();
        assert_eq!(combined, format!("{COMBINED_PREFIX}Created pod: web-9"));
    }

    #[test]
    fn a_flood_about_one_object_is_cut_at_the_burst_and_refills_slowly() {
        let c = EventCorrelator::new();
        let written = (0..100)
            .filter(|i| c.correlate(event(*i, "rs", "BackOff", "again"), t0()) != Correlated::Skip)
            .count();
        assert_eq!(written, 25);
        // Another object has its own bucket.
        assert_ne!(
            c.correlate(event(200, "other", "BackOff", "again"), t0()),
            Correlated::Skip
        );
        // One token comes back every five minutes.
        let later = t0() + chrono::Duration::seconds(300);
        assert_ne!(
            c.correlate(event(300, "rs", "BackOff", "again"), later),
            Correlated::Skip
        );
        assert_eq!(
            c.correlate(event(301, "rs", "BackOff", "again"), later),
            Correlated::Skip
        );
    }

    #[test]
    fn aggregation_starts_over_after_its_window() {
        let c = EventCorrelator::new();
        for i in 0..9 {
            c.correlate(event(i, "rs", "R", &format!("m{i}")), t0());
        }
        let later = t0() + chrono::Duration::seconds(AGGREGATE_WINDOW_SECONDS + 1);
        match c.correlate(event(9, "rs", "R", "m9"), later) {
            Correlated::Create(e) => assert_eq!(e.message.as_deref(), Some("m9")),
            other => panic!("a fresh window creates the plain event: {other:?}"),
        }
    }
}
