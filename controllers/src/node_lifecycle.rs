//! The node lifecycle controller, as upstream's `pkg/controller/nodelifecycle` with its taint
//! eviction and pod GC companions:
//!
//! 1. **monitorNodeHealth**: a node whose Lease in `kube-node-lease` (and Ready condition
//!    heartbeat) has not been renewed for [`NodeLifecycleConfig::node_monitor_grace_period`]
//!    gets its Ready, MemoryPressure, DiskPressure and PIDPressure conditions set to Unknown
//!    (reason `NodeStatusUnknown`, "Kubelet stopped posting node status."), and its pods are
//!    marked not ready (upstream `MarkPodsNotReady`).
//! 2. **Taints**: `node.kubernetes.io/unreachable` (Ready Unknown) or
//!    `node.kubernetes.io/not-ready` (Ready False), both as NoSchedule and NoExecute, plus the
//!    NoSchedule taints for pressure conditions and `spec.unschedulable`. They are removed
//!    when the node reports Ready again.
//! 3. **Taint eviction** (upstream `TaintEvictionController`): a pod on a node with NoExecute
//!    taints is deleted once it stops tolerating them: at once for an untolerated taint, after
//!    `tolerationSeconds` (counted from the taint's `timeAdded`) for a tolerated one, never for
//!    a toleration without seconds. A pod without an explicit toleration for the not-ready or
//!    unreachable taint tolerates it for [`NodeLifecycleConfig::default_toleration_seconds`]
//!    (upstream's DefaultTolerationSeconds admission, 300 s).
//! 4. **Pod GC**: pods being deleted on an unreachable node are force-deleted (grace 0),
//!    since no node agent is left to finish their deletion; pods bound to a node that no
//!    longer exists are force-deleted after a quarantine of one grace period.
//!
//! Wall time comes from the cluster [`Clock`], so under `tokio::time::pause()` a 300 s
//! toleration passes at once.
//!
//! ```no_run
//! # async fn run(client: kube::Client) {
//! use kybernetes_controllers::node_lifecycle::{NodeLifecycleConfig, spawn_node_lifecycle_controller};
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let informers = kybernetes_controllers::InformerFactory::new(client.clone(), shutdown.clone());
//! let handle = spawn_node_lifecycle_controller(client, kybernetes_core::Clock::new(), NodeLifecycleConfig::default(), &informers, shutdown.clone());
//! shutdown.cancel();
//! handle.await.ok();
//! # }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use kybernetes_core::Clock;
use serde_json::json;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::endpoints::for_each_event;
use crate::informers::{InformerFactory, ObjectChange, Subscription};

/// Taint of a node whose Ready condition is False.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
/// Taint of a node whose Ready condition is Unknown (its agent stopped reporting).
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// Taint of a node with `spec.unschedulable`.
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// NoSchedule taints that follow node conditions: (condition, status, taint key).
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", NOT_READY_TAINT),
    ("Ready", "Unknown", UNREACHABLE_TAINT),
    (
        "MemoryPressure",
        "True",
        "node.kubernetes.io/memory-pressure",
    ),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
];

/// The conditions set to Unknown when a node stops reporting.
const MONITORED_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// Settings of the node lifecycle controller.
#[derive(Clone, Debug)]
pub struct NodeLifecycleConfig {
    /// How often node health is checked when nothing changes (upstream
    /// `--node-monitor-period`, 5 s).
    pub node_monitor_period: Duration,
    /// How long a node may go without renewing its lease before it is marked Unknown
    /// (upstream `--node-monitor-grace-period`, 40 s).
    pub node_monitor_grace_period: Duration,
    /// How long a pod without an explicit toleration for the not-ready or unreachable
    /// NoExecute taint tolerates it (upstream DefaultTolerationSeconds admission, 300 s).
    pub default_toleration_seconds: i64,
    /// The namespace of node leases.
    pub lease_namespace: String,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        NodeLifecycleConfig {
            node_monitor_period: Duration::from_secs(5),
            node_monitor_grace_period: Duration::from_secs(40),
            default_toleration_seconds: 300,
            lease_namespace: "kube-node-lease".into(),
        }
    }
}

/// Starts the node lifecycle controller; it runs until `shutdown` is cancelled. API errors
/// are logged and the work retried on the next pass.
pub fn spawn_node_lifecycle_controller(
    client: Client,
    clock: Clock,
    config: NodeLifecycleConfig,
    informers: &InformerFactory,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let (pods, nodes) = (informers.pods(), informers.nodes());
    let informed = Informed {
        pods: pods.store(),
        nodes: nodes.store(),
        pod_events: pods.subscribe(),
        node_events: nodes.subscribe(),
    };
    let run = run(client, clock, config, informed, shutdown);
    tokio::spawn(run.instrument(info_span!("node_lifecycle_controller")))
}

/// The shared caches and subscriptions the controller reads.
struct Informed {
    pods: Store<Pod>,
    nodes: Store<Node>,
    pod_events: Subscription<Pod>,
    node_events: Subscription<Node>,
}

fn to_chrono(t: &k8s_openapi::jiff::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(t.as_microsecond())
}

fn to_time(t: DateTime<Utc>) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_microsecond(t.timestamp_micros()).unwrap_or_default())
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn ready_status(node: &Node) -> &str {
    condition(node, "Ready")
        .map(|c| c.status.as_str())
        .unwrap_or("Unknown")
}

fn no_execute_taints(node: &Node) -> Vec<Taint> {
    node.spec
        .iter()
        .flat_map(|s| s.taints.iter().flatten())
        .filter(|t| t.effect == "NoExecute")
        .cloned()
        .collect()
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

fn min_time(a: Option<DateTime<Utc>>, b: DateTime<Utc>) -> Option<DateTime<Utc>> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// Upstream `Toleration.ToleratesTaint`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration
        .effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    if toleration
        .key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != taint.key)
    {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// When the taint eviction controller deletes `pod` from a node with these NoExecute taints:
/// `None` if it tolerates them all forever. `first_seen` gives the time a taint without
/// `timeAdded` was first observed.
pub fn eviction_time(
    pod: &Pod,
    taints: &[Taint],
    default_toleration_seconds: i64,
    first_seen: impl Fn(&Taint) -> DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let mut at: Option<DateTime<Utc>> = None;
    for taint in taints {
        let added = taint
            .time_added
            .as_ref()
            .and_then(|t| to_chrono(&t.0))
            .unwrap_or_else(|| first_seen(taint));
        let seconds = match tolerations.iter().find(|t| tolerates(t, taint)) {
            Some(t) => match t.toleration_seconds {
                Some(s) => s.max(0),
                None => continue,
            },
            None if taint.key == NOT_READY_TAINT || taint.key == UNREACHABLE_TAINT => {
                default_toleration_seconds
            }
            None => 0,
        };
        at = min_time(at, added + chrono::Duration::seconds(seconds));
    }
    at
}

/// The taints the controller wants on `node`, given its conditions: (key, effect).
fn desired_taints(node: &Node) -> Vec<(&'static str, &'static str)> {
    let mut desired = Vec::new();
    for (type_, status, key) in CONDITION_TAINTS {
        if condition(node, type_).is_some_and(|c| c.status == status) {
            desired.push((key, "NoSchedule"));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        desired.push((UNSCHEDULABLE_TAINT, "NoSchedule"));
    }
    match condition(node, "Ready").map(|c| c.status.as_str()) {
        Some("False") => desired.push((NOT_READY_TAINT, "NoExecute")),
        Some("Unknown") => desired.push((UNREACHABLE_TAINT, "NoExecute")),
        _ => {}
    }
    desired
}

/// Whether the controller owns this taint.
fn is_managed(taint: &Taint) -> bool {
    match taint.effect.as_str() {
        "NoSchedule" => {
            taint.key == UNSCHEDULABLE_TAINT
                || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == taint.key)
        }
        "NoExecute" => taint.key == NOT_READY_TAINT || taint.key == UNREACHABLE_TAINT,
        _ => false,
    }
}

struct NodeLifecycle {
    client: Client,
    clock: Clock,
    config: NodeLifecycleConfig,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    /// When each pod bound to a missing node was first seen (pod uid → time).
    orphans: Mutex<HashMap<String, DateTime<Utc>>>,
    /// When each taint without `timeAdded` was first seen ((node, key) → time).
    taints_seen: Mutex<HashMap<(String, String), DateTime<Utc>>>,
}

async fn run(
    client: Client,
    clock: Clock,
    config: NodeLifecycleConfig,
    informed: Informed,
    shutdown: CancellationToken,
) {
    info!("node lifecycle controller starting");
    let Informed {
        pods,
        nodes,
        pod_events,
        node_events,
    } = informed;
    let (leases, mut lease_writer) = reflector::store::<Lease>();
    let wake = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();

    let w = wake.clone();
    tasks.spawn(node_events.for_each(shutdown.clone(), move |change| {
        // A pass costs every pod and node, so a heartbeat alone does not start one: the
        // deadlines of the last pass (or the monitor period) bring the next one.
        let changed = match change {
            ObjectChange::Updated { old, new } => health_changed(&old, &new),
            ObjectChange::Added(_) | ObjectChange::Deleted(_) => true,
        };
        if changed {
            w.notify_one();
        }
    }));
    let lease_api = Api::<Lease>::namespaced(client.clone(), &config.lease_namespace);
    let lease_events = watcher(lease_api, watcher::Config::default()).default_backoff();
    tasks.spawn(for_each_event(lease_events, shutdown.clone(), move |e| {
        lease_writer.apply_watcher_event(&e)
    }));
    let (w, node_reader) = (wake.clone(), nodes.clone());
    tasks.spawn(pod_events.for_each(shutdown.clone(), move |change| {
        if let ObjectChange::Added(pod) | ObjectChange::Updated { new: pod, .. } = change
            && needs_attention(&node_reader, &pod)
        {
            w.notify_one();
        }
    }));

    let controller = NodeLifecycle {
        client,
        clock,
        config,
        nodes,
        leases,
        pods,
        orphans: Mutex::new(HashMap::new()),
        taints_seen: Mutex::new(HashMap::new()),
    };
    let ready = async {
        let _ = controller.nodes.wait_until_ready().await;
        let _ = controller.leases.wait_until_ready().await;
        let _ = controller.pods.wait_until_ready().await;
    };
    tokio::select! {
        _ = ready => {}
        _ = shutdown.cancelled() => {}
    }
    while !shutdown.is_cancelled() {
        let next = controller.reconcile().await;
        let mut wait = controller.config.node_monitor_period;
        if let Some(at) = next {
            // Wake just after the deadline, so the pass sees it passed.
            let until = (at - controller.clock.now()).to_std().unwrap_or_default()
                + Duration::from_millis(1);
            wait = wait.min(until);
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
            _ = shutdown.cancelled() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
    info!("node lifecycle controller stopped");
}

/// Whether a node update may change what a pass decides: its spec (taints, unschedulable),
/// labels (zones), or its conditions other than their heartbeat times.
fn health_changed(before: &Node, after: &Node) -> bool {
    let conditions = |n: &Node| -> Vec<(String, String, Option<String>)> {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| {
                cs.iter()
                    .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    before.spec != after.spec
        || before.metadata.labels != after.metadata.labels
        || before.metadata.deletion_timestamp != after.metadata.deletion_timestamp
        || conditions(before) != conditions(after)
}

/// Whether a pod change may need an eviction or a force deletion now.
fn needs_attention(nodes: &Store<Node>, pod: &Pod) -> bool {
    let Some(name) = node_name(pod) else {
        return false;
    };
    match nodes.get(&ObjectRef::new(name)) {
        None => true,
        Some(node) => {
            !no_execute_taints(&node).is_empty()
                || (pod.metadata.deletion_timestamp.is_some() && ready_status(&node) != "True")
        }
    }
}

impl NodeLifecycle {
    /// One pass over every node and pod. Returns the next time something is due.
    async fn reconcile(&self) -> Option<DateTime<Utc>> {
        let now = self.clock.now();
        let mut next = None;
        let mut pods_by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        for pod in self.pods.state() {
            if let Some(n) = node_name(&pod) {
                pods_by_node
                    .entry(n.to_string())
                    .or_default()
                    .push(pod.clone());
            }
        }
        let mut nodes: HashMap<String, Node> = HashMap::new();
        for node in self.nodes.state() {
            let name = node.name_any();
            let node = self
                .monitor_node_health((*node).clone(), now, &mut next)
                .await;
            let node = self.sync_taints(node, now).await;
            let pods = pods_by_node
                .get(&name)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if ready_status(&node) != "True" {
                self.mark_pods_not_ready(&name, pods, now).await;
            }
            self.evict_pods(&node, pods, now, &mut next).await;
            nodes.insert(name, node);
        }
        self.gc_pods(&nodes, &pods_by_node, now, &mut next).await;
        next
    }

    /// Upstream `tryUpdateNodeHealth`: marks a node whose agent went silent Unknown.
    async fn monitor_node_health(
        &self,
        node: Node,
        now: DateTime<Utc>,
        next: &mut Option<DateTime<Utc>>,
    ) -> Node {
        let name = node.name_any();
        let lease = self
            .leases
            .get(&ObjectRef::new(&name).within(&self.config.lease_namespace));
        let renewed = lease.and_then(|l| {
            l.spec
                .as_ref()?
                .renew_time
                .as_ref()
                .and_then(|t| to_chrono(&t.0))
        });
        let posted = condition(&node, "Ready")
            .and_then(|c| c.last_heartbeat_time.as_ref())
            .and_then(|t| to_chrono(&t.0));
        let created = node
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| to_chrono(&t.0));
        let Some(heartbeat) = [renewed, posted, created].into_iter().flatten().max() else {
            return node;
        };
        let grace = chrono::Duration::from_std(self.config.node_monitor_grace_period)
            .unwrap_or(chrono::Duration::MAX);
        let deadline = heartbeat + grace;
        if now < deadline {
            *next = min_time(*next, deadline);
            return node;
        }
        let mut conditions = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let mut changed = false;
        for type_ in MONITORED_CONDITIONS {
            match conditions.iter_mut().find(|c| c.type_ == type_) {
                None => {
                    changed = true;
                    conditions.push(NodeCondition {
                        type_: type_.into(),
                        status: "Unknown".into(),
                        reason: Some("NodeStatusNeverUpdated".into()),
                        message: Some("Kubelet never posted node status.".into()),
                        last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                        last_transition_time: Some(to_time(now)),
                    });
                }
                Some(c) if c.status != "Unknown" => {
                    changed = true;
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(to_time(now));
                }
                Some(_) => {}
            }
        }
        if !changed {
            return node;
        }
        info!(node = %name, "node stopped posting status; marking it Unknown");
        let patch = json!({
            "metadata": { "resourceVersion": node.metadata.resource_version },
            "status": { "conditions": conditions },
        });
        let api: Api<Node> = Api::all(self.client.clone());
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(updated) => updated,
            Err(e) => {
                debug!(node = %name, error = %e, "failed to update node status; will retry");
                node
            }
        }
    }

    /// Upstream `doNoScheduleTaintingPass` and `doNoExecuteTaintingPass`.
    async fn sync_taints(&self, node: Node, now: DateTime<Utc>) -> Node {
        let current: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let desired = desired_taints(&node);
        let mut taints: Vec<Taint> = current
            .iter()
            .filter(|t| !is_managed(t) || desired.contains(&(t.key.as_str(), t.effect.as_str())))
            .cloned()
            .collect();
        for (key, effect) in &desired {
            if !taints.iter().any(|t| t.key == *key && t.effect == *effect) {
                taints.push(Taint {
                    key: key.to_string(),
                    effect: effect.to_string(),
                    value: None,
                    time_added: (*effect == "NoExecute").then(|| to_time(now)),
                });
            }
        }
        if taints == current {
            return node;
        }
        let name = node.name_any();
        info!(node = %name, taints = ?desired, "updating node taints");
        let patch = json!({
            "metadata": { "resourceVersion": node.metadata.resource_version },
            "spec": { "taints": if taints.is_empty() { json!(null) } else { json!(taints) } },
        });
        let api: Api<Node> = Api::all(self.client.clone());
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(updated) => updated,
            Err(e) => {
                debug!(node = %name, error = %e, "failed to update node taints; will retry");
                node
            }
        }
    }

    /// Upstream `MarkPodsNotReady`: the pods of a node that is not ready are not ready either.
    async fn mark_pods_not_ready(&self, node: &str, pods: &[Arc<Pod>], now: DateTime<Utc>) {
        for pod in pods {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded" | "Failed")) {
                continue;
            }
            let mut conditions = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            let Some(ready) = conditions
                .iter_mut()
                .find(|c| c.type_ == "Ready" && c.status != "False")
            else {
                continue;
            };
            ready.status = "False".into();
            ready.last_transition_time = Some(to_time(now));
            debug!(node, pod = %pod.name_any(), "marking pod not ready");
            let patch = json!({
                "metadata": { "resourceVersion": pod.metadata.resource_version },
                "status": { "conditions": conditions },
            });
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            if let Err(e) = api
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                debug!(pod = %pod.name_any(), error = %e, "failed to mark pod not ready; will retry");
            }
        }
    }

    /// Upstream `TaintEvictionController.processPodOnNode` for every pod of a node.
    async fn evict_pods(
        &self,
        node: &Node,
        pods: &[Arc<Pod>],
        now: DateTime<Utc>,
        next: &mut Option<DateTime<Utc>>,
    ) {
        let taints = no_execute_taints(node);
        let name = node.name_any();
        {
            let mut seen = self.taints_seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.retain(|(n, key), _| *n != name || taints.iter().any(|t| t.key == *key));
            for t in taints.iter().filter(|t| t.time_added.is_none()) {
                seen.entry((name.clone(), t.key.clone())).or_insert(now);
            }
        }
        if taints.is_empty() {
            return;
        }
        let first_seen = |t: &Taint| {
            let seen = self.taints_seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.get(&(name.clone(), t.key.clone()))
                .copied()
                .unwrap_or(now)
        };
        for pod in pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            match eviction_time(
                pod,
                &taints,
                self.config.default_toleration_seconds,
                first_seen,
            ) {
                Some(at) if at <= now => self.evict(pod).await,
                Some(at) => *next = min_time(*next, at),
                None => {}
            }
        }
    }

    async fn evict(&self, pod: &Pod) {
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let name = pod.name_any();
        info!(pod = %name, node = ?node_name(pod), "evicting pod from a node with NoExecute taints");
        let condition = PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("DeletionByTaintManager".into()),
            message: Some("Taint manager: deleting due to NoExecute taint".into()),
            last_transition_time: Some(to_time(self.clock.now())),
            ..Default::default()
        };
        let mut conditions: Vec<PodCondition> = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        conditions.retain(|c| c.type_ != "DisruptionTarget");
        conditions.push(condition);
        let patch = json!({ "status": { "conditions": conditions } });
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            debug!(pod = %name, error = %e, "failed to add the DisruptionTarget condition");
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => warn!(pod = %name, error = %e, "failed to evict pod; will retry"),
        }
    }

    /// Upstream PodGC: force-deletes terminating pods on unreachable nodes, and pods bound to
    /// nodes that no longer exist.
    async fn gc_pods(
        &self,
        nodes: &HashMap<String, Node>,
        pods_by_node: &HashMap<String, Vec<Arc<Pod>>>,
        now: DateTime<Utc>,
        next: &mut Option<DateTime<Utc>>,
    ) {
        let quarantine = chrono::Duration::from_std(self.config.node_monitor_grace_period)
            .unwrap_or(chrono::Duration::MAX);
        let mut still_orphaned = Vec::new();
        for (node_name, pods) in pods_by_node {
            match nodes.get(node_name) {
                Some(node) if ready_status(node) == "Unknown" => {
                    for pod in pods
                        .iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_some())
                    {
                        info!(pod = %pod.name_any(), node = %node_name, "force-deleting a terminating pod on an unreachable node");
                        self.force_delete(pod).await;
                    }
                }
                Some(_) => {}
                None => {
                    for pod in pods {
                        let uid = pod.metadata.uid.clone().unwrap_or_default();
                        let first = *self
                            .orphans
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(uid.clone())
                            .or_insert(now);
                        still_orphaned.push(uid);
                        if now < first + quarantine {
                            *next = min_time(*next, first + quarantine);
                            continue;
                        }
                        // Check with the API server that the node is really gone.
                        let api: Api<Node> = Api::all(self.client.clone());
                        if let Ok(None) = api.get_opt(node_name).await {
                            info!(pod = %pod.name_any(), node = %node_name, "force-deleting a pod bound to a missing node");
                            self.force_delete(pod).await;
                        }
                    }
                }
            }
        }
        self.orphans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|uid, _| still_orphaned.contains(uid));
    }

    async fn force_delete(&self, pod: &Pod) {
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&pod.name_any(), &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                warn!(pod = %pod.name_any(), error = %e, "failed to force-delete pod; will retry")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn taint(key: &str, added: DateTime<Utc>) -> Taint {
        Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: Some(to_time(added)),
        }
    }

    fn pod(tolerations: Vec<Toleration>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                tolerations: Some(tolerations),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_pod_without_tolerations_tolerates_unreachable_for_the_default_time() {
        let t0 = DateTime::from_timestamp(1_000, 0).unwrap_or_default();
        let at = eviction_time(&pod(vec![]), &[taint(UNREACHABLE_TAINT, t0)], 300, |_| t0);
        assert_eq!(at, Some(t0 + chrono::Duration::seconds(300)));
    }

    #[test]
    fn an_untolerated_taint_evicts_at_once_and_a_toleration_without_seconds_never() {
        let t0 = DateTime::from_timestamp(1_000, 0).unwrap_or_default();
        assert_eq!(
            eviction_time(
                &pod(vec![]),
                &[taint("example.com/broken", t0)],
                300,
                |_| t0
            ),
            Some(t0)
        );
        let forever = Toleration {
            key: Some(UNREACHABLE_TAINT.into()),
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert_eq!(
            eviction_time(
                &pod(vec![forever]),
                &[taint(UNREACHABLE_TAINT, t0)],
                300,
                |_| t0
            ),
            None
        );
    }

    #[test]
    fn an_explicit_toleration_overrides_the_default() {
        let t0 = DateTime::from_timestamp(1_000, 0).unwrap_or_default();
        let short = Toleration {
            key: Some(NOT_READY_TAINT.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(5),
            ..Default::default()
        };
        assert_eq!(
            eviction_time(
                &pod(vec![short]),
                &[taint(NOT_READY_TAINT, t0)],
                300,
                |_| t0
            ),
            Some(t0 + chrono::Duration::seconds(5))
        );
    }
}
