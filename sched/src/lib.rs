//! kybernetes-sched: the [`Scheduler`] trait, the default scheduler as a [`Framework`] of
//! Filter and Score plugins, and the [`SchedulerLoop`] that watches unscheduled pods and binds
//! them through `pods/binding`, as kube-scheduler does.
//!
//! # Shape
//!
//! - [`Scheduler::schedule`] is pure and synchronous: given a pod and a [`Snapshot`] of the
//!   nodes (with what their pods already request), it returns a node name or an
//!   [`Unschedulable`] that says why each node was rejected. Benchmarks call it directly.
//! - [`Framework`] is the default scheduler. It parses the pod once per cycle into a
//!   [`PodInfo`], runs [`FilterPlugin`]s over the nodes (starting where the previous cycle
//!   stopped, and stopping once [`num_feasible_nodes_to_find`] feasible nodes are found), then
//!   sums the weighted, normalized [`ScorePlugin`] scores and picks the best node, breaking ties
//!   at random.
//! - [`SchedulerLoop`] keeps a [`Snapshot`] up to date from node and pod watches, queues the
//!   pending pods, assumes each scheduled pod onto its node in the snapshot and posts the
//!   binding (several at once). A pod that fits nowhere gets `PodScheduled=False` with reason
//!   `Unschedulable`, a `FailedScheduling` event, and is retried when a node is added or
//!   changes, when a pod is deleted, and periodically.
//!
//! The built-in plugins ([`plugins`]) are upstream's, with upstream's names, messages and
//! default weights: NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts,
//! NodeResourcesFit (LeastAllocated), NodeResourcesBalancedAllocation and ImageLocality, with
//! DefaultPreemption as the PostFilter ([`preemption`]): a pod that fits nowhere evicts pods of
//! lower priority and is nominated to their node (`status.nominatedNodeName`).
//!
//! # How to implement your own
//!
//! **A plugin.** Implement [`FilterPlugin`] (and/or [`ScorePlugin`]) and add it to the default
//! framework. Filters see the parsed pod and one node; return a [`Rejection`] whose reason
//! reads like upstream's (`node(s) ...`), since it is counted into the pod's message:
//!
//! ```
//! use kybernetes_sched::{FilterPlugin, Framework, NodeInfo, PodInfo, Rejection, Scheduler, ScorePlugin, Snapshot};
//!
//! /// Only nodes in the pod's `team` get the pod.
//! struct SameTeam;
//! impl FilterPlugin for SameTeam {
//!     fn name(&self) -> &str { "SameTeam" }
//!     fn filter(&self, pod: &PodInfo<'_>, node: &NodeInfo) -> Result<(), Rejection> {
//!         let team = pod.pod().metadata.labels.as_ref().and_then(|l| l.get("team"));
//!         match team {
//!             Some(t) if node.labels().get("team") != Some(t) => Err("node(s) belonged to another team".into()),
//!             _ => Ok(()),
//!         }
//!     }
//! }
//!
//! /// Prefers nodes with fewer pods.
//! struct FewestPods;
//! impl ScorePlugin for FewestPods {
//!     fn name(&self) -> &str { "FewestPods" }
//!     fn score(&self, _pod: &PodInfo<'_>, node: &NodeInfo) -> i64 { 100 - node.pod_count().min(100) as i64 }
//!     fn weight(&self) -> i64 { 5 }
//! }
//!
//! let framework = Framework::default_plugins().with_filter(SameTeam).with_score(FewestPods);
//! let node = serde_json::from_value(serde_json::json!({
//!     "metadata": {"name": "n1", "labels": {"team": "blue"}},
//!     "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}},
//! }))?;
//! let pod = serde_json::from_value(serde_json::json!({
//!     "metadata": {"name": "p", "namespace": "default", "labels": {"team": "red"}},
//!     "spec": {"containers": [{"name": "c"}]},
//! }))?;
//! let err = framework.schedule(&pod, &Snapshot::new(vec![node], vec![])).expect_err("wrong team");
//! assert_eq!(err.to_string(), "0/1 nodes are available: 1 node(s) belonged to another team.");
//! # Ok::<(), serde_json::Error>(())
//! ```
//!
//! **A whole scheduler.** Implement [`Scheduler`] yourself and hand it to
//! [`SchedulerLoop::spawn`]; the loop does the watching, queueing, assuming and binding.
//!
//! ```
//! use k8s_openapi::api::core::v1::Pod;
//! use kybernetes_sched::{Rejection, Scheduler, Snapshot, Unschedulable};
//!
//! /// Puts every pod on the node with the fewest pods.
//! struct LeastPods;
//! impl Scheduler for LeastPods {
//!     fn schedule(&self, _pod: &Pod, snapshot: &Snapshot) -> Result<String, Unschedulable> {
//!         snapshot
//!             .nodes()
//!             .iter()
//!             .min_by_key(|n| n.pod_count())
//!             .map(|n| n.name().to_string())
//!             .ok_or_else(|| Unschedulable::new(0, vec![]))
//!     }
//! }
//! ```

pub mod config;
pub mod error;
mod events;
pub mod framework;
pub mod kube_scheduler_config;
pub mod node_selector;
pub mod nominated;
pub mod plugins;
pub mod pod_info;
pub mod preemption;
pub mod profile;
mod queue;
pub mod resources;
mod scheduling_loop;
pub mod snapshot;
mod status;
pub mod unschedulable;
mod volume_binder;
pub mod volumes;

pub use config::SchedulerConfig;
pub use error::{Error, Result};
pub use framework::{
    FilterPlugin, Framework, MAX_NODE_SCORE, Scheduler, ScorePlugin, default_normalize_score,
    num_feasible_nodes_to_find,
};
pub use kube_scheduler_config::{ConfigError, KubeSchedulerConfiguration, KubeSchedulerProfile};
pub use pod_info::PodInfo;
pub use preemption::{PostFilter, Preemption};
pub use profile::Profile;
pub use resources::{PodRequests, Resource};
pub use scheduling_loop::SchedulerLoop;
pub use snapshot::{ImageStates, NodeChange, NodeInfo, Snapshot, pod_key};
pub use unschedulable::{Rejection, Unschedulable};
