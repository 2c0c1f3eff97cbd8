//! The scheduling queue (upstream's `PriorityQueue`): pending pods in an active queue ordered by
//! priority then arrival, a backoff queue for pods waiting out a retry delay, and the
//! unschedulable pods that wait for the cluster to change.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;

use crate::config::{SchedulerConfig, backoff_duration};

/// Where a pending pod is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// In the active queue under this sequence number.
    Active(u64),
    /// In the backoff queue under this sequence number.
    Backoff(u64),
    /// Failed to fit; waits for a cluster change or the periodic flush. Since when.
    Unschedulable(Instant),
    /// Popped: being scheduled or bound.
    InFlight,
}

#[derive(Debug)]
struct QueuedPod {
    pod: Arc<Pod>,
    attempts: u32,
    last_attempt: Option<Instant>,
    place: Place,
}

/// The filter plugins whose rejections another pod landing on a node can lift (upstream's
/// plugins registered for the `AssignedPodAdd`/`AssignedPodUpdate` cluster events).
const LIFTED_BY_ASSIGNED_PODS: [&str; 2] = ["InterPodAffinity", "PodTopologySpread"];

/// An active-queue entry: higher priority first, then earlier arrival.
#[derive(Debug, PartialEq, Eq)]
struct ActiveEntry {
    priority: i32,
    seq: u64,
    key: String,
}

impl Ord for ActiveEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for ActiveEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The pending pods of one scheduler. Heap entries are invalidated lazily: an entry counts only
/// while its pod's [`Place`] still carries the entry's sequence number.
#[derive(Debug)]
pub(crate) struct SchedulingQueue {
    pods: HashMap<String, QueuedPod>,
    active: BinaryHeap<ActiveEntry>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    seq: u64,
    initial_backoff: Duration,
    max_backoff: Duration,
    /// The unschedulable pods that an assigned pod's arrival or relabelling may let fit: those
    /// rejected by a plugin in [`LIFTED_BY_ASSIGNED_PODS`], or by no plugin we know of.
    /// Entries whose pod has moved on since are skipped when the set is drained.
    awaiting_pods: HashSet<String>,
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Whether an update may change where the pod fits (spec or labels changed).
fn scheduling_relevant_change(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec || old.metadata.labels != new.metadata.labels
}

impl SchedulingQueue {
    pub(crate) fn new(config: &SchedulerConfig) -> SchedulingQueue {
        SchedulingQueue {
            pods: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            seq: 0,
            initial_backoff: config.pod_initial_backoff,
            max_backoff: config.pod_max_backoff,
            awaiting_pods: HashSet::new(),
        }
    }

    fn backoff_of(&self, attempts: u32) -> Duration {
        backoff_duration(self.initial_backoff, self.max_backoff, attempts)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Adds a pending pod or updates it. An unschedulable pod whose spec or labels changed is
    /// retried.
    pub(crate) fn upsert(&mut self, key: String, pod: Pod, now: Instant) {
        match self.pods.get_mut(&key) {
            Some(queued) => {
                let relevant = scheduling_relevant_change(&queued.pod, &pod);
                queued.pod = Arc::new(pod);
                if relevant && matches!(queued.place, Place::Unschedulable(_)) {
                    self.activate_or_backoff(&key, now);
                }
            }
            None => {
                let seq = self.next_seq();
                self.active.push(ActiveEntry {
                    priority: priority(&pod),
                    seq,
                    key: key.clone(),
                });
                self.pods.insert(
                    key,
                    QueuedPod {
                        pod: Arc::new(pod),
                        attempts: 0,
                        last_attempt: None,
                        place: Place::Active(seq),
                    },
                );
            }
        }
    }

    /// Drops a pod (bound, deleted, or no longer ours).
    pub(crate) fn remove(&mut self, key: &str) -> bool {
        self.awaiting_pods.remove(key);
        self.pods.remove(key).is_some()
    }

    /// Keeps only the pods whose keys are in `keys` (after a relist).
    pub(crate) fn retain(&mut self, keys: &HashSet<String>) {
        self.pods
            .retain(|k, p| p.place == Place::InFlight || keys.contains(k));
        let pods = &self.pods;
        self.awaiting_pods.retain(|k| pods.contains_key(k));
    }

    /// Whether the active queue may hold a pod.
    pub(crate) fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// The next pod to schedule, now marked in flight.
    pub(crate) fn pop(&mut self) -> Option<(String, Arc<Pod>)> {
        while let Some(entry) = self.active.pop() {
            if let Some(queued) = self.pods.get_mut(&entry.key)
                && queued.place == Place::Active(entry.seq)
            {
                queued.place = Place::InFlight;
                return Some((entry.key, queued.pod.clone()));
            }
        }
        None
    }

    /// The pod fits no node: it waits for a cluster change. `plugins` are the filter plugins
    /// that rejected it (upstream's `UnschedulablePlugins`); they decide which cluster events
    /// retry it. With none known, every event does.
    pub(crate) fn mark_unschedulable(&mut self, key: &str, plugins: &[String], now: Instant) {
        if let Some(queued) = self.pods.get_mut(key) {
            queued.attempts += 1;
            queued.last_attempt = Some(now);
            queued.place = Place::Unschedulable(now);
            let lifted_by_pods = plugins.is_empty()
                || plugins
                    .iter()
                    .any(|p| LIFTED_BY_ASSIGNED_PODS.contains(&p.as_str()));
            if lifted_by_pods {
                self.awaiting_pods.insert(key.to_string());
            } else {
                self.awaiting_pods.remove(key);
            }
        }
    }

    /// A pod was bound to a node, or a bound pod's labels changed: retries the unschedulable
    /// pods that such a change can let fit (pod affinity, topology spread). Pods rejected only
    /// for resources, taints or node selectors stay put, as upstream's queueing does.
    pub(crate) fn move_awaiting_assigned_pods(&mut self, now: Instant) {
        if self.awaiting_pods.is_empty() {
            return;
        }
        let keys: Vec<String> = self.awaiting_pods.drain().collect();
        for key in keys {
            if matches!(
                self.pods.get(&key).map(|p| p.place),
                Some(Place::Unschedulable(_))
            ) {
                self.activate_or_backoff(&key, now);
            }
        }
    }

    /// The attempt failed for another reason (the binding): retry after the backoff.
    pub(crate) fn requeue_with_backoff(&mut self, key: &str, now: Instant) {
        if let Some(queued) = self.pods.get_mut(key) {
            queued.attempts += 1;
            queued.last_attempt = Some(now);
            queued.place = Place::InFlight;
            self.activate_or_backoff(key, now);
        }
    }

    /// Moves a pod to the backoff queue if its backoff has not passed, else to the active queue.
    fn activate_or_backoff(&mut self, key: &str, now: Instant) {
        let seq = self.next_seq();
        let Some(queued) = self.pods.get(key) else {
            return;
        };
        let ready_at = queued
            .last_attempt
            .map(|t| t + self.backoff_of(queued.attempts));
        let priority = priority(&queued.pod);
        let place = match ready_at {
            Some(at) if at > now => {
                self.backoff.push(Reverse((at, seq, key.to_string())));
                Place::Backoff(seq)
            }
            _ => {
                self.active.push(ActiveEntry {
                    priority,
                    seq,
                    key: key.to_string(),
                });
                Place::Active(seq)
            }
        };
        if let Some(queued) = self.pods.get_mut(key) {
            queued.place = place;
        }
    }

    /// Retries every unschedulable pod (a node was added or changed, a pod was deleted):
    /// upstream's `MoveAllToActiveOrBackoffQueue`.
    pub(crate) fn move_all_to_active_or_backoff(&mut self, now: Instant) {
        let keys: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| matches!(p.place, Place::Unschedulable(_)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.activate_or_backoff(&key, now);
        }
    }

    /// Moves pods whose backoff has passed to the active queue.
    pub(crate) fn flush_backoff_completed(&mut self, now: Instant) {
        while let Some(Reverse((at, _, _))) = self.backoff.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, seq, key))) = self.backoff.pop() else {
                break;
            };
            if let Some(queued) = self.pods.get_mut(&key)
                && queued.place == Place::Backoff(seq)
            {
                let seq = self.seq + 1;
                self.seq = seq;
                queued.place = Place::Active(seq);
                self.active.push(ActiveEntry {
                    priority: priority(&queued.pod),
                    seq,
                    key,
                });
            }
        }
    }

    /// Retries pods that stayed unschedulable longer than `max` (upstream's
    /// `flushUnschedulablePodsLeftover`).
    pub(crate) fn flush_unschedulable_leftover(&mut self, now: Instant, max: Duration) {
        let keys: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| matches!(p.place, Place::Unschedulable(since) if now.saturating_duration_since(since) >= max))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.activate_or_backoff(&key, now);
        }
    }

    /// When the earliest backoff ends, if any pod is backing off.
    pub(crate) fn next_backoff_at(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((at, _, _))| *at)
    }

    /// How many pods are pending, in any state.
    pub(crate) fn len(&self) -> usize {
        self.pods.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, priority: i32) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"priority": priority, "containers": [{"name": "c"}]},
        }))
        .expect("pod")
    }

    fn queue() -> SchedulingQueue {
        SchedulingQueue::new(&SchedulerConfig::default())
    }

    #[test]
    fn higher_priority_then_earlier_arrival_pops_first() {
        let mut q = queue();
        let now = Instant::now();
        q.upsert("a".into(), pod("a", 0), now);
        q.upsert("b".into(), pod("b", 10), now);
        q.upsert("c".into(), pod("c", 0), now);
        let order: Vec<String> = std::iter::from_fn(|| q.pop().map(|(k, _)| k)).collect();
        assert_eq!(order, ["b", "a", "c"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_cluster_change_and_their_backoff() {
        let mut q = queue();
        let now = Instant::now();
        q.upsert("a".into(), pod("a", 0), now);
        assert!(q.pop().is_some());
        q.mark_unschedulable("a", &[], now);
        assert!(q.pop().is_none());
        q.move_all_to_active_or_backoff(now);
        assert!(q.pop().is_none(), "still backing off");
        assert_eq!(q.next_backoff_at(), Some(now + Duration::from_secs(1)));
        q.flush_backoff_completed(now + Duration::from_secs(1));
        assert_eq!(q.pop().map(|(k, _)| k), Some("a".to_string()));
    }

    #[test]
    fn leftover_unschedulable_pods_are_flushed_after_the_maximum_wait() {
        let mut q = queue();
        let now = Instant::now();
        q.upsert("a".into(), pod("a", 0), now);
        q.pop();
        q.mark_unschedulable("a", &[], now);
        q.flush_unschedulable_leftover(now + Duration::from_secs(60), Duration::from_secs(300));
        assert!(q.pop().is_none());
        q.flush_unschedulable_leftover(now + Duration::from_secs(300), Duration::from_secs(300));
        assert!(q.pop().is_some());
    }

    #[test]
    fn a_spec_change_retries_an_unschedulable_pod_but_a_status_change_does_not() {
        let mut q = queue();
        let now = Instant::now();
        q.upsert("a".into(), pod("a", 0), now);
        q.pop();
        q.mark_unschedulable("a", &[], now);
        let later = now + Duration::from_secs(5);
        let mut status_only = pod("a", 0);
        status_only.status = Some(Default::default());
        q.upsert("a".into(), status_only, later);
        assert!(q.pop().is_none());
        let mut relabelled = pod("a", 0);
        relabelled.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
        q.upsert("a".into(), relabelled, later);
        assert!(q.pop().is_some());
    }

    #[test]
    fn an_assigned_pod_retries_only_pods_that_pod_affinity_or_spread_rejected() {
        let mut q = queue();
        let now = Instant::now();
        for name in ["affinity", "cpu", "unknown"] {
            q.upsert(name.into(), pod(name, 0), now);
            q.pop();
        }
        q.mark_unschedulable("affinity", &["InterPodAffinity".into()], now);
        q.mark_unschedulable("cpu", &["NodeResourcesFit".into()], now);
        q.mark_unschedulable("unknown", &[], now);
        let later = now + Duration::from_secs(10);
        q.move_awaiting_assigned_pods(later);
        let mut moved: Vec<String> = std::iter::from_fn(|| q.pop().map(|(k, _)| k)).collect();
        moved.sort();
        assert_eq!(moved, ["affinity", "unknown"]);
        q.move_all_to_active_or_backoff(later);
        assert_eq!(q.pop().map(|(k, _)| k), Some("cpu".to_string()));
    }

    #[test]
    fn removed_pods_never_pop() {
        let mut q = queue();
        q.upsert("a".into(), pod("a", 0), Instant::now());
        assert!(q.remove("a"));
        assert!(q.pop().is_none());
        assert_eq!(q.len(), 0);
    }
}
