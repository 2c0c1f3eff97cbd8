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
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use kybernetes_core::Clock;
use serde_json::json;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span};

use crate::endpoints::for_each_event;
use crate::informers::{InformerFactory, ObjectChange, Subscription};

mod eviction;
mod taints;

use taints::no_execute_taints;
pub use taints::{
    NOT_READY_TAINT, UNREACHABLE_TAINT, UNSCHEDULABLE_TAINT, eviction_time, tolerates,
};

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
        // An error means the informer behind the store was dropped, which happens only when the
        // informers stop at shutdown; the shutdown branch below then ends this controller.
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
}
