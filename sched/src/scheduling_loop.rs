//! The scheduling loop: watches nodes and pods, keeps the [`Snapshot`] and the scheduling queue
//! up to date, schedules pending pods one cycle at a time, assumes each onto its node and binds
//! it in the background (upstream's `scheduleOne` with its asynchronous binding cycle).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::SchedulerConfig;
use crate::error::Error;
use crate::events::{EventRecorder, EventType};
use crate::framework::Scheduler;
use crate::kube_scheduler_config::DEFAULT_SCHEDULER_NAME;
use crate::nominated::pod_priority;
use crate::preemption::{PostFilter, prepare};
use crate::profile::Profile;
use crate::queue::SchedulingQueue;
use crate::snapshot::{Snapshot, is_terminal, pod_key};
use crate::status;
use crate::volume_binder;

mod cluster_objects;
mod spreading_owners;

use cluster_objects::ListState;

/// How many pods one turn of the loop schedules before it looks at watch events again.
const BATCH: usize = 128;

/// Runs [`Scheduler`]s against a cluster: the pods whose `spec.schedulerName` names one of its
/// [`Profile`]s and that have no node get scheduled by that profile's scheduler and bound.
///
/// - As upstream's kube-scheduler, the profiles share one queue and one snapshot: a pod
///   assumed by one profile is counted by all. A pod without `spec.schedulerName` (or with
///   an empty one) belongs to `default-scheduler`; a pod naming no profile is left alone,
///   without a condition or event, for another scheduler to take. Events are reported as
///   the pod's profile (`source.component` and `reportingController` are its name).
/// - Pods are scheduled one at a time, highest `spec.priority` first, then in arrival order;
///   each is assumed onto its node in the [`Snapshot`] at once, and its `pods/binding` is
///   posted in the background (at most
///   [`max_concurrent_bindings`](SchedulerConfig::max_concurrent_bindings) at a time). A failed
///   binding is forgotten and retried after a backoff.
/// - A pod that fits nowhere gets `PodScheduled=False` (reason `Unschedulable`, upstream's
///   message) and a `FailedScheduling` event. It is retried when a node is added or changes
///   (allocatable, labels, taints, cordon), when a bound pod goes away, when its own spec or
///   labels change, and after
///   [`pod_max_in_unschedulable_duration`](SchedulerConfig::pod_max_in_unschedulable_duration).
/// - Pods with `spec.schedulingGates` wait outside the queue with `PodScheduled=False`
///   (reason `SchedulingGated`) until the gates are removed.
/// - As upstream, node readiness is not checked here: the node lifecycle controller taints
///   NotReady and unreachable nodes, and TaintToleration keeps pods off them.
/// - Nothing is scheduled before the first node and pod lists are complete.
///
/// ```no_run
/// # async fn run(client: kube::Client) {
/// use std::sync::Arc;
/// use kybernetes_sched::{Framework, SchedulerConfig, SchedulerLoop};
/// let shutdown = tokio_util::sync::CancellationToken::new();
/// let handle = SchedulerLoop::spawn(client, Arc::new(Framework::default_plugins()), SchedulerConfig::default(), shutdown.clone());
/// // ...
/// shutdown.cancel();
/// handle.await.ok();
/// # }
/// ```
#[derive(Debug)]
pub struct SchedulerLoop;

impl SchedulerLoop {
    /// Starts the loop with one profile, named
    /// [`scheduler_name`](SchedulerConfig::scheduler_name). It runs until `shutdown` is
    /// cancelled, and never fails: API errors are logged and retried.
    pub fn spawn(
        client: kube::Client,
        scheduler: Arc<dyn Scheduler>,
        config: SchedulerConfig,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let profile = Profile::shared(config.scheduler_name.clone(), scheduler);
        SchedulerLoop::spawn_profiles(client, vec![profile], config, shutdown)
    }

    /// Starts the loop serving every one of `profiles` (from
    /// [`KubeSchedulerConfiguration::build`](crate::KubeSchedulerConfiguration::build), or
    /// made by hand); [`scheduler_name`](SchedulerConfig::scheduler_name) is not used. Of two
    /// profiles with one name, the first serves it.
    pub fn spawn_profiles(
        client: kube::Client,
        profiles: Vec<Profile>,
        config: SchedulerConfig,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let names: Vec<&str> = profiles.iter().map(Profile::scheduler_name).collect();
        let span = tracing::info_span!("scheduler", name = %names.join(","));
        tokio::spawn(
            async move { LoopState::new(client, profiles, config).run(shutdown).await }
                .instrument(span),
        )
    }
}

/// What a binding task reports back.
struct BindOutcome {
    key: String,
    pod: Arc<Pod>,
    node: String,
    result: Result<(), Error>,
}

/// A profile as the loop runs it: its scheduler and the recorder of its events.
struct ProfileState {
    scheduler: Arc<dyn Scheduler>,
    recorder: Arc<EventRecorder>,
}

struct LoopState {
    client: kube::Client,
    /// The profiles by scheduler name.
    profiles: HashMap<String, ProfileState>,
    config: SchedulerConfig,
    snapshot: Snapshot,
    queue: SchedulingQueue,
    binds: JoinSet<BindOutcome>,
    /// Keys of the pods whose binding task runs.
    binding: HashMap<tokio::task::Id, String>,
    effects: JoinSet<()>,
    nodes: ListState,
    pods: ListState,
    claims: ListState,
    volumes: ListState,
    classes: ListState,
    pdbs: ListState,
    namespaces: ListState,
    owners: spreading_owners::OwnerLists,
}

impl LoopState {
    fn new(client: kube::Client, profiles: Vec<Profile>, config: SchedulerConfig) -> LoopState {
        let mut by_name = HashMap::new();
        for profile in profiles {
            let name = profile.scheduler_name().to_string();
            if by_name.contains_key(&name) {
                tracing::warn!(profile = %name, "a second profile has this scheduler name; the first serves it");
                continue;
            }
            let recorder = Arc::new(EventRecorder::new(
                client.clone(),
                config.clock.clone(),
                name.clone(),
            ));
            let scheduler = profile.scheduler().clone();
            by_name.insert(
                name,
                ProfileState {
                    scheduler,
                    recorder,
                },
            );
        }
        LoopState {
            queue: SchedulingQueue::new(&config),
            client,
            profiles: by_name,
            config,
            snapshot: Snapshot::default(),
            binds: JoinSet::new(),
            binding: HashMap::new(),
            effects: JoinSet::new(),
            nodes: ListState::default(),
            pods: ListState::default(),
            claims: ListState::default(),
            volumes: ListState::default(),
            classes: ListState::default(),
            pdbs: ListState::default(),
            namespaces: ListState::default(),
            owners: Default::default(),
        }
    }

    async fn run(mut self, shutdown: CancellationToken) {
        let nodes = watcher(Api::<Node>::all(self.client.clone()));
        let pods = watcher(Api::<Pod>::all(self.client.clone()));
        let claims = watcher(Api::<PersistentVolumeClaim>::all(self.client.clone()));
        let volumes = watcher(Api::<PersistentVolume>::all(self.client.clone()));
        let classes = watcher(Api::<StorageClass>::all(self.client.clone()));
        let pdbs = watcher(Api::<PodDisruptionBudget>::all(self.client.clone()));
        let namespaces = watcher(Api::<Namespace>::all(self.client.clone()));
        let owners = spreading_owners::watch(&self.client);
        tokio::pin!(
            nodes, pods, claims, volumes, classes, pdbs, namespaces, owners
        );
        let mut flush = tokio::time::interval(self.config.unschedulable_flush_interval);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!("scheduler started");
        loop {
            self.queue.flush_backoff_completed(Instant::now());
            let can_schedule = self.nodes.synced
                && self.pods.synced
                && self.claims.synced
                && self.volumes.synced
                && self.classes.synced
                && self.pdbs.synced
                && self.namespaces.synced
                && self.owners.synced()
                && self.queue.has_active()
                && self.binds.len() < self.config.max_concurrent_bindings;
            let backoff_at = self.queue.next_backoff_at();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(done) = self.binds.join_next_with_id(), if !self.binds.is_empty() => self.on_bind_done(done),
                Some(_) = self.effects.join_next(), if !self.effects.is_empty() => {}
                event = nodes.next() => match event {
                    Some(Ok(event)) => self.on_node_event(event),
                    Some(Err(e)) => tracing::warn!(error = %e, "node watch failed, retrying"),
                    None => { tracing::error!("node watch ended"); break; }
                },
                event = pods.next() => match event {
                    Some(Ok(event)) => self.on_pod_event(event),
                    Some(Err(e)) => tracing::warn!(error = %e, "pod watch failed, retrying"),
                    None => { tracing::error!("pod watch ended"); break; }
                },
                event = claims.next() => match event {
                    Some(Ok(event)) => self.on_claim_event(event),
                    Some(Err(e)) => tracing::warn!(error = %e, "claim watch failed, retrying"),
                    None => { tracing::error!("claim watch ended"); break; }
                },
                event = volumes.next() => match event {
                    Some(Ok(event)) => self.on_volume_event(event),
                    Some(Err(e)) => tracing::warn!(error = %e, "volume watch failed, retrying"),
                    None => { tracing::error!("volume watch ended"); break; }
                },
                event = classes.next() => match event {
                    Some(Ok(event)) => self.on_class_event(event),
                    Some(Err(e)) => tracing::warn!(error = %e, "storage class watch failed, retrying"),
                    None => { tracing::error!("storage class watch ended"); break; }
                },
                event = pdbs.next() => match event {
                    Some(Ok(event)) => self.on_pdb_event(event),
                    Some(Err(e)) => tracing::warn!(error = %e, "disruption budget watch failed, retrying"),
                    None => { tracing::error!("disruption budget watch ended"); break; }
                },
                event = namespaces.next() => match event {
                    Some(Ok(event)) => self.on_namespace_event(event),
                    Some(Err(e)) => tracing::warn!(error = %e, "namespace watch failed, retrying"),
                    None => { tracing::error!("namespace watch ended"); break; }
                },
                event = owners.next() => match event {
                    Some(Ok(event)) => self.on_owner_event(event),
                    Some(Err(e)) => tracing::warn!(error = %e, "service or controller watch failed, retrying"),
                    None => { tracing::error!("service and controller watches ended"); break; }
                },
                _ = flush.tick() => {
                    self.queue.flush_unschedulable_leftover(Instant::now(), self.config.pod_max_in_unschedulable_duration);
                }
                _ = sleep_until(backoff_at), if backoff_at.is_some() => {}
                _ = std::future::ready(()), if can_schedule => self.schedule_batch(),
            }
        }
        tracing::info!("scheduler stopped");
    }

    fn on_pod_event(&mut self, event: Event<Pod>) {
        match event {
            Event::Init => self.pods.seen = Some(HashSet::new()),
            Event::InitApply(pod) => {
                if let Some(seen) = &mut self.pods.seen {
                    seen.insert(pod_key(&pod));
                }
                self.on_pod(pod);
            }
            Event::InitDone => self.on_pods_listed(),
            Event::Apply(pod) => self.on_pod(pod),
            Event::Delete(pod) => self.on_pod_deleted(&pod),
        }
    }

    /// After a (re)list: forgets pods that disappeared while the watch was down.
    fn on_pods_listed(&mut self) {
        let seen = self.pods.seen.take().unwrap_or_default();
        let binding: HashSet<&String> = self.binding.values().collect();
        let mut removed = false;
        for key in self.snapshot.confirmed_keys() {
            if !seen.contains(&key) && !binding.contains(&key) {
                removed |= self.snapshot.remove_key(&key);
            }
        }
        self.queue.retain(&seen);
        if removed {
            self.queue.move_all_to_active_or_backoff(Instant::now());
        }
        self.pods.synced = true;
        tracing::debug!(pending = self.queue.len(), "pods synced");
    }

    /// The profile that schedules `pod` (upstream's `frameworkForPod`), if any.
    fn profile_of(&self, pod: &Pod) -> Option<&ProfileState> {
        self.profiles.get(scheduler_name(pod))
    }

    fn is_ours(&self, pod: &Pod) -> bool {
        self.profile_of(pod).is_some()
    }

    fn on_pod(&mut self, pod: Pod) {
        let key = pod_key(&pod);
        self.track_nomination(&key, &pod);
        if is_terminal(&pod) {
            self.queue.remove(&key);
            if self.snapshot.remove_key(&key) {
                self.queue.move_all_to_active_or_backoff(Instant::now());
            }
            return;
        }
        let bound = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        if bound {
            self.queue.remove(&key);
            if self.snapshot.add_shared_pod(Arc::new(pod)) {
                // Pods waiting for an affinity partner or a better spread may fit now.
                self.queue.move_awaiting_assigned_pods(Instant::now());
            }
            return;
        }
        if !self.is_ours(&pod) || pod.metadata.deletion_timestamp.is_some() {
            self.queue.remove(&key);
            return;
        }
        if self.snapshot.contains_key(&key) {
            // Assumed: its binding is in flight, or this event is older than the binding.
            return;
        }
        if has_scheduling_gates(&pod) {
            // Upstream's SchedulingGates PreEnqueue plugin: wait outside the queue until the
            // gates are removed (that update brings the pod back here).
            self.queue.remove(&key);
            if status::needs_condition(&pod, SCHEDULING_GATED, SCHEDULING_GATED_MESSAGE) {
                self.set_unschedulable(
                    Arc::new(pod),
                    SCHEDULING_GATED,
                    SCHEDULING_GATED_MESSAGE.to_string(),
                    false,
                );
            }
            return;
        }
        self.queue.upsert(key, pod, Instant::now());
    }

    /// Keeps the snapshot's nominated pods in step with `status.nominatedNodeName` of our
    /// pending pods.
    fn track_nomination(&mut self, key: &str, pod: &Pod) {
        let nominated = pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty());
        let pending = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_none_or(str::is_empty)
            && !is_terminal(pod)
            && pod.metadata.deletion_timestamp.is_none()
            && self.is_ours(pod);
        match nominated {
            Some(node) if pending => self.snapshot.nominated_mut().nominate(
                key.to_string(),
                Arc::new(pod.clone()),
                node.to_string(),
            ),
            _ => self.snapshot.nominated_mut().remove(key),
        }
    }

    fn on_pod_deleted(&mut self, pod: &Pod) {
        let key = pod_key(pod);
        self.snapshot.nominated_mut().remove(&key);
        self.queue.remove(&key);
        if self.snapshot.remove_key(&key) {
            self.queue.move_all_to_active_or_backoff(Instant::now());
        }
    }

    fn schedule_batch(&mut self) {
        let now = Instant::now();
        for _ in 0..BATCH {
            if self.binds.len() >= self.config.max_concurrent_bindings {
                break;
            }
            let Some((key, pod)) = self.queue.pop() else {
                break;
            };
            self.schedule_one(key, pod, now);
        }
    }

    /// One scheduling cycle: pick a node, assume the pod onto it, start the binding; or record
    /// why the pod fits nowhere.
    fn schedule_one(&mut self, key: String, pod: Arc<Pod>, now: Instant) {
        let name = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        let Some(profile) = self.profile_of(&pod) else {
            // Not reached: only our pods are queued, and the scheduler name is immutable.
            self.queue.remove(&key);
            return;
        };
        let scheduler = profile.scheduler.clone();
        match scheduler.schedule(&pod, &self.snapshot) {
            Ok(node) => {
                self.snapshot.nominated_mut().remove(&key);
                if let Err(e) = self.snapshot.assume_shared(pod.clone(), &node) {
                    tracing::warn!(pod = %name, error = %e, "scheduler chose an unknown node");
                    self.queue.requeue_with_backoff(&key, now);
                    return;
                }
                tracing::debug!(pod = %name, node = %node, "assumed pod on node");
                let client = self.client.clone();
                let span = tracing::debug_span!("bind", pod = %name, node = %node);
                let tracked = key.clone();
                let volumes = self.volume_decisions(&pod, &node);
                let task = self.binds.spawn(
                    async move {
                        let result = match &volumes {
                            Some(v) => volume_binder::bind_pod_volumes(&client, v, &node).await,
                            None => Ok(()),
                        };
                        let result = match result {
                            Ok(()) => status::bind(client, &pod, &node).await,
                            Err(e) => Err(e),
                        };
                        BindOutcome {
                            key,
                            pod,
                            node,
                            result,
                        }
                    }
                    .instrument(span),
                );
                self.binding.insert(task.id(), tracked);
            }
            Err(mut unschedulable) => {
                match scheduler.post_filter(&pod, &self.snapshot, &unschedulable) {
                    PostFilter::Skipped => {}
                    PostFilter::Unresolved {
                        message,
                        clear_nomination,
                    } => {
                        unschedulable.set_post_filter_message(message);
                        if clear_nomination && self.snapshot.nominated().node_of(&key).is_some() {
                            self.snapshot.nominated_mut().remove(&key);
                            self.clear_nomination(pod.clone());
                        }
                    }
                    PostFilter::Nominated(preemption) => {
                        self.start_preemption(&key, pod.clone(), preemption)
                    }
                }
                let message = unschedulable.to_string();
                tracing::debug!(pod = %name, %message, "pod is unschedulable");
                self.queue
                    .mark_unschedulable(&key, unschedulable.plugins(), now);
                let event = self.config.record_events;
                self.set_unschedulable(pod, "Unschedulable", message, event);
            }
        }
    }

    fn on_bind_done(
        &mut self,
        done: Result<(tokio::task::Id, BindOutcome), tokio::task::JoinError>,
    ) {
        let outcome = match done {
            Ok((id, outcome)) => {
                self.binding.remove(&id);
                outcome
            }
            Err(e) => {
                if let Some(key) = self.binding.remove(&e.id()) {
                    self.snapshot.forget_key(&key);
                    self.queue.requeue_with_backoff(&key, Instant::now());
                }
                tracing::error!(error = %e, "binding task failed");
                return;
            }
        };
        let BindOutcome {
            key,
            pod,
            node,
            result,
        } = outcome;
        match result {
            Ok(()) => {
                self.queue.remove(&key);
                if self.config.record_events
                    && let Some(recorder) = self.recorder_of(&pod)
                {
                    let message = format!(
                        "Successfully assigned {}/{} to {node}",
                        pod.metadata.namespace.as_deref().unwrap_or_default(),
                        pod.metadata.name.as_deref().unwrap_or_default()
                    );
                    self.effects.spawn(async move {
                        recorder
                            .record(&pod, EventType::Normal, "Scheduled", "Binding", message)
                            .await;
                    });
                }
            }
            Err(e) => {
                self.snapshot.forget_key(&key);
                if status::is_status(&e, 404) || status::is_status(&e, 409) {
                    // Deleted, bound by someone else or replaced: the watch says what happened.
                    tracing::debug!(error = %e, "binding refused, dropping pod");
                    self.queue.remove(&key);
                    return;
                }
                tracing::warn!(error = %e, "binding failed, retrying");
                self.queue.requeue_with_backoff(&key, Instant::now());
                if self.config.record_events
                    && let Some(recorder) = self.recorder_of(&pod)
                {
                    let message = format!("Binding rejected: {}", error_chain(&e));
                    self.effects.spawn(async move {
                        recorder
                            .record(
                                &pod,
                                EventType::Warning,
                                "FailedScheduling",
                                "Scheduling",
                                message,
                            )
                            .await;
                    });
                }
            }
        }
    }

    /// Nominates the preemptor to the chosen node at once (so the next cycles leave it the
    /// room) and deletes the victims in the background.
    fn start_preemption(&mut self, key: &str, pod: Arc<Pod>, preemption: crate::Preemption) {
        let priority = pod_priority(&pod);
        let lower: Vec<Arc<Pod>> = self
            .snapshot
            .nominated()
            .on_node(&preemption.node)
            .iter()
            .filter(|(k, p)| k != key && pod_priority(p) < priority)
            .map(|(_, p)| p.clone())
            .collect();
        for p in &lower {
            self.snapshot.nominated_mut().remove(&pod_key(p));
        }
        self.snapshot.nominated_mut().nominate(
            key.to_string(),
            pod.clone(),
            preemption.node.clone(),
        );
        tracing::info!(
            pod = %pod_key(&pod),
            node = %preemption.node,
            victims = preemption.victims.len(),
            pdb_violations = preemption.pdb_violations,
            "preempting"
        );
        let Some(recorder) = self.recorder_of(&pod) else {
            return;
        };
        let client = self.client.clone();
        let clock = self.config.clock.clone();
        self.effects.spawn(async move {
            if let Err(e) =
                prepare::prepare_candidate(client, clock, recorder, pod, preemption, lower).await
            {
                tracing::warn!(error = %error_chain(&e), "preemption failed");
            }
        });
    }

    /// The event recorder of the pod's profile.
    fn recorder_of(&self, pod: &Pod) -> Option<Arc<EventRecorder>> {
        self.profile_of(pod).map(|p| p.recorder.clone())
    }

    /// Clears the pod's `status.nominatedNodeName` in the background.
    fn clear_nomination(&mut self, pod: Arc<Pod>) {
        let client = self.client.clone();
        self.effects.spawn(async move {
            if let Err(e) = prepare::set_nominated_node(&client, &pod, None).await {
                tracing::warn!(error = %error_chain(&e), "could not clear the nominated node");
            }
        });
    }

    /// Sets `PodScheduled=False` and, with `event`, records a `FailedScheduling` event, in the
    /// background.
    fn set_unschedulable(
        &mut self,
        pod: Arc<Pod>,
        reason: &'static str,
        message: String,
        event: bool,
    ) {
        let client = self.client.clone();
        let clock = self.config.clock.clone();
        let recorder = self.recorder_of(&pod).filter(|_| event);
        self.effects.spawn(async move {
            if let Err(e) =
                status::set_unschedulable_condition(client, &pod, reason, &message, &clock).await
            {
                tracing::warn!(error = %error_chain(&e), "could not update pod condition");
            }
            if let Some(recorder) = recorder {
                recorder
                    .record(
                        &pod,
                        EventType::Warning,
                        "FailedScheduling",
                        "Scheduling",
                        message,
                    )
                    .await;
            }
        });
    }
}

/// The `PodScheduled` reason of a pod held back by scheduling gates.
const SCHEDULING_GATED: &str = "SchedulingGated";
/// Upstream's message for it.
const SCHEDULING_GATED_MESSAGE: &str = "Scheduling is blocked due to non-empty scheduling gates";

/// The profile a pod asks for: `spec.schedulerName`, with unset or empty meaning
/// `default-scheduler` (the API server defaults it so).
pub(crate) fn scheduler_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_SCHEDULER_NAME)
}

fn has_scheduling_gates(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduling_gates.as_ref())
        .is_some_and(|g| !g.is_empty())
}

/// An error with its sources, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// A watch that retries with backoff. It drops the field managers, which the scheduler never
/// reads (upstream's scheduler strips them from its informers too): they are a large part of
/// every cached pod.
fn watcher<K>(api: Api<K>) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|o: &mut K| o.meta_mut().managed_fields = None)
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
