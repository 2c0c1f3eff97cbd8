//! The `Scheduler` trait and the default scheduler: a framework that runs Filter plugins to find
//! feasible nodes and Score plugins to rank them (upstream's scheduling framework and
//! `schedulePod`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::nominated::nominated_for;
use crate::plugins::{
    ImageLocality, InterPodAffinity, NodeAffinity, NodeName, NodePorts,
    NodeResourcesBalancedAllocation, NodeResourcesFit, NodeUnschedulable, PodTopologySpread,
    TaintToleration, VolumeBinding,
};
use crate::pod_info::PodInfo;
use crate::preemption::{self, PostFilter};
use crate::snapshot::{NodeInfo, Snapshot};
use crate::unschedulable::{Rejection, Unschedulable};

/// The highest score a Score plugin gives a node (upstream's `MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

/// Below this many nodes every node is searched (upstream's `minFeasibleNodesToFind`).
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;

/// The adaptive percentage never goes below this (upstream's
/// `minFeasibleNodesPercentageToFind`).
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// Picks a node for a pod. Pure and synchronous: it reads the snapshot and returns a node name,
/// or why no node fits. The scheduling loop does the I/O around it.
pub trait Scheduler: Send + Sync {
    /// The name of the node the pod should run on, or why it fits none.
    fn schedule(&self, pod: &Pod, snapshot: &Snapshot) -> Result<String, Unschedulable>;

    /// What to do about a pod that fits nowhere (upstream's PostFilter extension point):
    /// the default framework's DefaultPreemption picks pods to preempt. By default nothing.
    fn post_filter(
        &self,
        _pod: &Pod,
        _snapshot: &Snapshot,
        _failure: &Unschedulable,
    ) -> PostFilter {
        PostFilter::Skipped
    }
}

/// A Filter plugin: decides whether a node can run the pod at all.
pub trait FilterPlugin: Send + Sync {
    /// The plugin's name (upstream's, for the built-in ones).
    fn name(&self) -> &str;

    /// Whether the plugin has anything to check for this pod; `false` skips it for the whole
    /// cycle (upstream's PreFilter returning `Skip`).
    fn pre_filter(&self, _pod: &PodInfo<'_>) -> bool {
        true
    }

    /// `Ok` when the node can run the pod, else why not.
    fn filter(&self, pod: &PodInfo<'_>, node: &NodeInfo) -> Result<(), Rejection>;

    /// Updates what the plugin's PreFilter worked out for `pod` as if `other` were placed on
    /// `node` (upstream's `PreFilterExtensions.AddPod`). Preemption's dry runs and nominated
    /// pods change a copy of a node; a plugin that counted the other pods up front (as
    /// InterPodAffinity and PodTopologySpread do) must see the same change. Only called after
    /// [`pre_filter`](FilterPlugin::pre_filter) returned `true`. By default nothing.
    fn add_pod(&self, _pod: &mut PodInfo<'_>, _other: &Pod, _node: &NodeInfo) {}

    /// The reverse of [`add_pod`](FilterPlugin::add_pod): `other` leaves `node` (upstream's
    /// `PreFilterExtensions.RemovePod`).
    fn remove_pod(&self, _pod: &mut PodInfo<'_>, _other: &Pod, _node: &NodeInfo) {}
}

/// A Score plugin: ranks the feasible nodes.
pub trait ScorePlugin: Send + Sync {
    /// The plugin's name (upstream's, for the built-in ones).
    fn name(&self) -> &str;

    /// Whether the plugin has anything to score for this pod; `false` skips it for the whole
    /// cycle (upstream's PreScore returning `Skip`).
    fn pre_score(&self, _pod: &PodInfo<'_>) -> bool {
        true
    }

    /// The node's score, in `0..=100` after [`normalize`](ScorePlugin::normalize).
    fn score(&self, pod: &PodInfo<'_>, node: &NodeInfo) -> i64;

    /// Maps the raw scores of all feasible nodes into `0..=100` (upstream's `NormalizeScore`);
    /// the default leaves them as they are.
    fn normalize(&self, _scores: &mut [i64]) {}

    /// How much this plugin's score counts (upstream's plugin weight).
    fn weight(&self) -> i64 {
        1
    }
}

/// Upstream's `numFeasibleNodesToFind`: how many feasible nodes to find before scoring.
///
/// All of them below 100 nodes; otherwise `percentage` of them (0 means adaptive:
/// `50 - nodes/125` percent, at least 5 %), and never fewer than 100.
///
/// ```
/// use kybernetes_sched::num_feasible_nodes_to_find;
/// assert_eq!(num_feasible_nodes_to_find(0, 50), 50);
/// assert_eq!(num_feasible_nodes_to_find(0, 5000), 500); // 50 - 40 = 10 %
/// assert_eq!(num_feasible_nodes_to_find(0, 6000), 300); // 5 %
/// assert_eq!(num_feasible_nodes_to_find(10, 500), 100);
/// assert_eq!(num_feasible_nodes_to_find(100, 5000), 5000);
/// ```
pub fn num_feasible_nodes_to_find(percentage: u32, num_all_nodes: usize) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND || percentage >= 100 {
        return num_all_nodes;
    }
    let percentage = if percentage == 0 {
        (50usize.saturating_sub(num_all_nodes / 125)).max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    } else {
        percentage as usize
    };
    (num_all_nodes * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Upstream's `DefaultNormalizeScore`: scales scores so the highest becomes `max`; with
/// `reverse`, the highest becomes 0 and a node scoring 0 gets `max`.
///
/// ```
/// let mut scores = [0, 2, 4];
/// kybernetes_sched::default_normalize_score(100, true, &mut scores);
/// assert_eq!(scores, [100, 50, 0]);
/// ```
pub fn default_normalize_score(max: i64, reverse: bool, scores: &mut [i64]) {
    let highest = scores.iter().copied().max().unwrap_or(0);
    if highest <= 0 {
        if reverse {
            scores.fill(max);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = max * *s / highest;
        *s = if reverse { max - v } else { v };
    }
}

struct WeightedScore {
    plugin: Box<dyn ScorePlugin>,
    weight: i64,
}

/// The default scheduler: Filter plugins in order, then weighted Score plugins, over
/// `percentageOfNodesToScore` of the nodes starting where the previous cycle stopped.
///
/// ```
/// use kybernetes_sched::{FilterPlugin, Framework, NodeInfo, PodInfo, Rejection};
///
/// /// Keeps pods off nodes labelled `maintenance`.
/// struct NoMaintenance;
/// impl FilterPlugin for NoMaintenance {
///     fn name(&self) -> &str { "NoMaintenance" }
///     fn filter(&self, _pod: &PodInfo<'_>, node: &NodeInfo) -> Result<(), Rejection> {
///         if node.labels().contains_key("maintenance") {
///             return Err("node(s) were in maintenance".into());
///         }
///         Ok(())
///     }
/// }
///
/// let framework = Framework::default_plugins().with_filter(NoMaintenance);
/// assert!(framework.filter_names().contains(&"NoMaintenance"));
/// ```
pub struct Framework {
    filters: Vec<Box<dyn FilterPlugin>>,
    scores: Vec<WeightedScore>,
    percentage_of_nodes_to_score: u32,
    /// Whether DefaultPreemption runs as the PostFilter.
    preemption: bool,
    next_start_node_index: AtomicUsize,
    rng: AtomicU64,
}

impl std::fmt::Debug for Framework {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Framework")
            .field("filters", &self.filter_names())
            .field(
                "scores",
                &self
                    .scores
                    .iter()
                    .map(|s| (s.plugin.name(), s.weight))
                    .collect::<Vec<_>>(),
            )
            .field(
                "percentage_of_nodes_to_score",
                &self.percentage_of_nodes_to_score,
            )
            .finish()
    }
}

impl Default for Framework {
    fn default() -> Self {
        Framework::default_plugins()
    }
}

impl Framework {
    /// A framework with no plugins: every node is feasible and all score the same.
    pub fn empty() -> Framework {
        Framework {
            filters: Vec::new(),
            scores: Vec::new(),
            percentage_of_nodes_to_score: 0,
            preemption: false,
            next_start_node_index: AtomicUsize::new(0),
            rng: AtomicU64::new(0x853c_49e6_748f_ea9b),
        }
    }

    /// Upstream's default plugins for what this crate implements. Filters: NodeUnschedulable,
    /// NodeName, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit, VolumeBinding,
    /// PodTopologySpread, InterPodAffinity. PostFilter: DefaultPreemption. Scores (weight):
    /// TaintToleration (3), NodeAffinity (2), NodeResourcesFit with LeastAllocated (1),
    /// NodeResourcesBalancedAllocation (1), ImageLocality (1), PodTopologySpread (2),
    /// InterPodAffinity (2).
    pub fn default_plugins() -> Framework {
        Framework::empty()
            .with_filter(NodeUnschedulable)
            .with_filter(NodeName)
            .with_filter(TaintToleration)
            .with_filter(NodeAffinity)
            .with_filter(NodePorts)
            .with_filter(NodeResourcesFit::default())
            .with_filter(VolumeBinding)
            .with_filter(PodTopologySpread::default())
            .with_filter(InterPodAffinity)
            .with_preemption(true)
            .with_score(TaintToleration)
            .with_score(NodeAffinity)
            .with_score(NodeResourcesFit::default())
            .with_score(NodeResourcesBalancedAllocation::default())
            .with_score(ImageLocality)
            .with_score(PodTopologySpread::default())
            .with_score(InterPodAffinity)
    }

    /// Turns DefaultPreemption, the PostFilter, on or off (`without("DefaultPreemption")`
    /// turns it off too).
    pub fn with_preemption(mut self, enabled: bool) -> Framework {
        self.preemption = enabled;
        self
    }

    /// Whether DefaultPreemption runs for pods that fit nowhere.
    pub fn preemption_enabled(&self) -> bool {
        self.preemption
    }

    /// Appends a Filter plugin; filters run in the order they were added.
    pub fn with_filter(mut self, plugin: impl FilterPlugin + 'static) -> Framework {
        self.filters.push(Box::new(plugin));
        self
    }

    /// Appends a Score plugin with its own [`weight`](ScorePlugin::weight).
    pub fn with_score(mut self, plugin: impl ScorePlugin + 'static) -> Framework {
        let weight = plugin.weight();
        self.scores.push(WeightedScore {
            plugin: Box::new(plugin),
            weight,
        });
        self
    }

    /// Changes the weight of the Score plugin called `name`.
    pub fn with_score_weight(mut self, name: &str, weight: i64) -> Framework {
        for s in self.scores.iter_mut().filter(|s| s.plugin.name() == name) {
            s.weight = weight;
        }
        self
    }

    /// Removes every Filter and Score plugin called `name` (to disable a default plugin).
    pub fn without(mut self, name: &str) -> Framework {
        if name == preemption::NAME {
            self.preemption = false;
        }
        self.filters.retain(|f| f.name() != name);
        self.scores.retain(|s| s.plugin.name() != name);
        self
    }

    /// Sets `percentageOfNodesToScore` (0, the default, is upstream's adaptive percentage;
    /// 100 searches every node).
    pub fn with_percentage_of_nodes_to_score(mut self, percentage: u32) -> Framework {
        self.percentage_of_nodes_to_score = percentage;
        self
    }

    /// Seeds the random choice among equally scored nodes.
    pub fn with_seed(self, seed: u64) -> Framework {
        self.rng.store(seed, Ordering::Relaxed);
        self
    }

    /// The Filter plugins' names, in order.
    pub fn filter_names(&self) -> Vec<&str> {
        self.filters.iter().map(|f| f.name()).collect()
    }

    /// The Score plugins' names with their weights, in order.
    pub fn score_names(&self) -> Vec<(&str, i64)> {
        self.scores
            .iter()
            .map(|s| (s.plugin.name(), s.weight))
            .collect()
    }

    /// A random number for tie-breaking (splitmix64 over an atomic counter).
    pub(crate) fn next_random(&self) -> u64 {
        let mut z = self
            .rng
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Runs the filters over the nodes from the rotating start index until enough feasible
    /// nodes are found (upstream's `findNodesThatPassFilters`). Returns the feasible nodes'
    /// indexes and the rejected nodes.
    fn find_feasible(
        &self,
        pod: &PodInfo<'_>,
        snapshot: &Snapshot,
    ) -> (Vec<usize>, Vec<(String, Rejection)>, Vec<String>) {
        let nodes = snapshot.nodes();
        let n = nodes.len();
        let to_find = num_feasible_nodes_to_find(self.percentage_of_nodes_to_score, n);
        let filters = self.active_filters(pod);
        let start = self.next_start_node_index.load(Ordering::Relaxed) % n;
        let mut feasible = Vec::with_capacity(to_find);
        let mut rejected = Vec::new();
        let mut rejecting = vec![false; filters.len()];
        let mut processed = 0;
        for offset in 0..n {
            let mut i = start + offset;
            if i >= n {
                i -= n;
            }
            let node = &nodes[i];
            processed += 1;
            match run_filters_naming(&filters, pod, node, snapshot) {
                Ok(()) => {
                    feasible.push(i);
                    if feasible.len() >= to_find {
                        break;
                    }
                }
                Err((filter, rejection)) => {
                    rejecting[filter] = true;
                    rejected.push((node.name().to_string(), rejection));
                }
            }
        }
        self.next_start_node_index
            .store((start + processed) % n, Ordering::Relaxed);
        let plugins = filters
            .iter()
            .zip(rejecting)
            .filter(|(_, r)| *r)
            .map(|(f, _)| f.name().to_string())
            .collect();
        (feasible, rejected, plugins)
    }

    /// The Filter plugins with something to check for this pod (their PreFilter).
    pub(crate) fn active_filters(&self, pod: &PodInfo<'_>) -> Vec<&dyn FilterPlugin> {
        self.filters
            .iter()
            .filter(|f| f.pre_filter(pod))
            .map(|f| f.as_ref())
            .collect()
    }

    /// Runs the Score plugins over the feasible nodes and sums their weighted, normalized
    /// scores (upstream's `prioritizeNodes`).
    fn prioritize(&self, pod: &PodInfo<'_>, nodes: &[NodeInfo], feasible: &[usize]) -> Vec<i64> {
        let mut totals = vec![0i64; feasible.len()];
        let mut scores = vec![0i64; feasible.len()];
        for WeightedScore { plugin, weight } in &self.scores {
            if *weight == 0 || !plugin.pre_score(pod) {
                continue;
            }
            for (score, &i) in scores.iter_mut().zip(feasible) {
                *score = plugin.score(pod, &nodes[i]);
            }
            plugin.normalize(&mut scores);
            for (total, score) in totals.iter_mut().zip(&scores) {
                *total += (*score).clamp(0, MAX_NODE_SCORE) * weight;
            }
        }
        totals
    }

    /// The highest-scoring node, ties broken uniformly at random (what upstream's `selectHost`
    /// reservoir sampling yields, with one random draw per pod).
    fn select_host(&self, feasible: &[usize], totals: &[i64]) -> usize {
        let best = totals.iter().copied().max().unwrap_or(0);
        let ties = totals.iter().filter(|&&t| t == best).count();
        let pick = if ties > 1 {
            (self.next_random() % ties as u64) as usize
        } else {
            0
        };
        let chosen = totals
            .iter()
            .enumerate()
            .filter(|&(_, &t)| t == best)
            .nth(pick)
            .map_or(0, |(j, _)| j);
        feasible[chosen]
    }
}

/// Runs `filters` on `node`, with the pods nominated to it counted as upstream's
/// `RunFilterPluginsWithNominatedPods` does: when pods of priority at least `pod`'s are
/// nominated to the node, it must pass both with them added and as it is (a pod's required
/// affinity may need them present or absent).
pub(crate) fn run_filters(
    filters: &[&dyn FilterPlugin],
    pod: &PodInfo<'_>,
    node: &NodeInfo,
    snapshot: &Snapshot,
) -> Result<(), Rejection> {
    run_filters_naming(filters, pod, node, snapshot).map_err(|(_, r)| r)
}

/// [`run_filters`], also saying which filter (its index in `filters`) rejected the node.
fn run_filters_naming(
    filters: &[&dyn FilterPlugin],
    pod: &PodInfo<'_>,
    node: &NodeInfo,
    snapshot: &Snapshot,
) -> Result<(), (usize, Rejection)> {
    let check = |pod: &PodInfo<'_>, node: &NodeInfo| {
        filters
            .iter()
            .enumerate()
            .try_for_each(|(i, f)| f.filter(pod, node).map_err(|r| (i, r)))
    };
    let nominated = nominated_for(snapshot.nominated(), pod.pod(), node.name());
    if nominated.is_empty() {
        return check(pod, node);
    }
    let mut with = Simulation::new(filters, pod, node);
    for p in nominated {
        with.add_pod(p.clone());
    }
    check(&with.pod, &with.node)?;
    check(pod, node)
}

/// A copy of the pod's cycle state and of one node that a dry run adds pods to and removes
/// pods from, keeping the filters' PreFilter state in step (upstream runs the
/// `PreFilterExtensions` on a cloned CycleState and NodeInfo).
pub(crate) struct Simulation<'f, 'a> {
    filters: &'f [&'f dyn FilterPlugin],
    /// The pod, with the filters' state as the changes left it.
    pub(crate) pod: PodInfo<'a>,
    /// The node, with the changes.
    pub(crate) node: NodeInfo,
}

impl<'f, 'a> Simulation<'f, 'a> {
    /// Starts from `pod` and `node` as they are.
    pub(crate) fn new(
        filters: &'f [&'f dyn FilterPlugin],
        pod: &PodInfo<'a>,
        node: &NodeInfo,
    ) -> Simulation<'f, 'a> {
        Simulation {
            filters,
            pod: pod.clone(),
            node: node.clone(),
        }
    }

    /// Counts `other` on the node.
    pub(crate) fn add_pod(&mut self, other: Arc<Pod>) {
        for f in self.filters {
            f.add_pod(&mut self.pod, &other, &self.node);
        }
        self.node.add_pod(other);
    }

    /// Stops counting `other` on the node, if it was.
    pub(crate) fn remove_pod(&mut self, other: &Pod) {
        if self.node.remove_pod(other) {
            for f in self.filters {
                f.remove_pod(&mut self.pod, other, &self.node);
            }
        }
    }

    /// Runs the filters on the simulated node.
    pub(crate) fn run(&self, snapshot: &Snapshot) -> Result<(), Rejection> {
        run_filters(self.filters, &self.pod, &self.node, snapshot)
    }
}

/// The pod parsed once for a cycle over `snapshot`.
pub(crate) fn pod_info<'a>(pod: &'a Pod, snapshot: &'a Snapshot) -> PodInfo<'a> {
    PodInfo::new(pod)
        .with_volumes(snapshot.volumes())
        .with_images(snapshot.images())
        .with_snapshot(snapshot)
}

impl Scheduler for Framework {
    fn post_filter(&self, pod: &Pod, snapshot: &Snapshot, failure: &Unschedulable) -> PostFilter {
        if !self.preemption {
            return PostFilter::Skipped;
        }
        preemption::preempt(self, pod, snapshot, failure)
    }

    fn schedule(&self, pod: &Pod, snapshot: &Snapshot) -> Result<String, Unschedulable> {
        let nodes = snapshot.nodes();
        if nodes.is_empty() {
            return Err(Unschedulable::new(0, Vec::new()));
        }
        let info = pod_info(pod, snapshot);
        let (feasible, rejected, plugins) = self.find_feasible(&info, snapshot);
        match feasible.as_slice() {
            [] => Err(Unschedulable::new(nodes.len(), rejected).with_plugins(plugins)),
            [only] => Ok(nodes[*only].name().to_string()),
            _ => {
                let totals = self.prioritize(&info, nodes, &feasible);
                Ok(nodes[self.select_host(&feasible, &totals)]
                    .name()
                    .to_string())
            }
        }
    }
}

impl<S: Scheduler + ?Sized> Scheduler for std::sync::Arc<S> {
    fn schedule(&self, pod: &Pod, snapshot: &Snapshot) -> Result<String, Unschedulable> {
        (**self).schedule(pod, snapshot)
    }

    fn post_filter(&self, pod: &Pod, snapshot: &Snapshot, failure: &Unschedulable) -> PostFilter {
        (**self).post_filter(pod, snapshot, failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;

    fn nodes(n: usize) -> Vec<Node> {
        (0..n)
            .map(|i| {
                serde_json::from_value(json!({
                    "metadata": {"name": format!("node-{i}"), "labels": {"idx": i.to_string()}},
                    "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
                }))
                .expect("node")
            })
            .collect()
    }

    fn pod(cpu: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
        }))
        .expect("pod")
    }

    #[test]
    fn percentage_of_nodes_to_score_follows_upstream() {
        assert_eq!(num_feasible_nodes_to_find(0, 0), 0);
        assert_eq!(num_feasible_nodes_to_find(0, 99), 99);
        assert_eq!(num_feasible_nodes_to_find(0, 100), 100);
        assert_eq!(num_feasible_nodes_to_find(0, 200), 100); // 49 % of 200 = 98 → at least 100
        assert_eq!(num_feasible_nodes_to_find(0, 1000), 420); // 50 - 8 = 42 %
        assert_eq!(num_feasible_nodes_to_find(0, 5000), 500);
        assert_eq!(num_feasible_nodes_to_find(0, 10_000), 500); // clamped to 5 %
        assert_eq!(num_feasible_nodes_to_find(30, 1000), 300);
        assert_eq!(num_feasible_nodes_to_find(150, 1000), 1000);
    }

    /// Counts how many nodes its filter sees.
    struct Counting(std::sync::atomic::AtomicUsize);
    impl FilterPlugin for Counting {
        fn name(&self) -> &str {
            "Counting"
        }
        fn filter(&self, _pod: &PodInfo<'_>, _node: &NodeInfo) -> Result<(), Rejection> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    #[test]
    fn search_stops_once_enough_feasible_nodes_are_found_and_rotates() {
        let snapshot = Snapshot::new(nodes(1000), vec![]);
        let fw = Framework::empty().with_filter(Counting(AtomicUsize::new(0)));
        let info_pod = pod("100m");
        let info = PodInfo::new(&info_pod);
        let (feasible, _, _) = fw.find_feasible(&info, &snapshot);
        assert_eq!(feasible.len(), 420);
        assert_eq!(feasible[0], 0);
        let (feasible, _, _) = fw.find_feasible(&info, &snapshot);
        assert_eq!(feasible[0], 420);
        let (feasible, _, _) = fw.find_feasible(&info, &snapshot);
        assert_eq!(feasible[0], 840);
        assert_eq!(feasible[200], 40); // wrapped around
    }

    #[test]
    fn unschedulable_pods_report_every_node() {
        let snapshot = Snapshot::new(nodes(3), vec![]);
        let err = Framework::default_plugins()
            .schedule(&pod("5"), &snapshot)
            .expect_err("too big");
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 3 Insufficient cpu."
        );
        assert_eq!(err.rejections().len(), 3);
    }

    #[test]
    fn no_nodes_means_no_nodes_available() {
        let err = Framework::default_plugins()
            .schedule(&pod("1"), &Snapshot::default())
            .expect_err("no nodes");
        assert_eq!(err.to_string(), "no nodes available to schedule pods");
    }

    #[test]
    fn equal_nodes_share_the_load() {
        let mut snapshot = Snapshot::new(nodes(3), vec![]);
        let fw = Framework::default_plugins();
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for i in 0..9 {
            let mut p = pod("100m");
            p.metadata.name = Some(format!("p{i}"));
            let node = fw.schedule(&p, &snapshot).expect("fits");
            snapshot.assume(&p, &node).expect("assume");
            *counts.entry(node).or_default() += 1;
        }
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![3, 3, 3]);
    }

    #[test]
    fn weights_and_removal_change_the_plugin_set() {
        let fw = Framework::default_plugins()
            .with_score_weight("TaintToleration", 7)
            .without("NodeAffinity");
        assert!(!fw.filter_names().contains(&"NodeAffinity"));
        assert_eq!(fw.score_names()[0], ("TaintToleration", 7));
    }

    #[test]
    fn ties_are_broken_across_all_best_nodes() {
        let fw = Framework::empty();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            seen.insert(fw.select_host(&[0, 1, 2, 3], &[5, 9, 9, 9]));
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    }
}
