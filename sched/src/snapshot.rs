//! The scheduler's view of the cluster: each node with the sum of what its pods request,
//! kept up to date incrementally (upstream's scheduler cache and its `NodeInfo`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use crate::error::{Error, Result};
use crate::node_selector::NO_LABELS;
use crate::nominated::Nominator;
use crate::resources::{PodRequests, Resource, node_allocatable};
use crate::volumes::VolumeListers;

mod spreading_owners;
mod topology;
pub use spreading_owners::{OwnerKind, SpreadingOwners};
pub(crate) use topology::bump;
pub use topology::{
    AffinityTerm, CountKey, DomainCounts, ExistingTermGroup, NamespaceScope, PodSelector, TermKind,
    existing_terms, selector_of, with_label_keys,
};

/// One node as the plugins see it: the node object, its allocatable resources and what the
/// pods placed on it request.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    node: Arc<Node>,
    allocatable: Resource,
    usage: Usage,
    /// Copied out of the node object so filters do not chase it for every node.
    unschedulable: bool,
    taints: Vec<Taint>,
    /// `status.images`: each name of each image with the image's size in bytes.
    images: HashMap<String, i64>,
}

/// What the pods on a node add up to, and the pods themselves.
#[derive(Clone, Debug, Default)]
struct Usage {
    requested: Resource,
    non_zero_requested: Resource,
    pods: Vec<Arc<Pod>>,
}

impl Usage {
    fn add(&mut self, r: &PodRequests, pod: Arc<Pod>) {
        self.requested.add(&r.requests);
        self.non_zero_requested.add(&r.non_zero);
        self.pods.push(pod);
    }

    fn sub(&mut self, r: &PodRequests, key: &str) {
        self.requested.sub(&r.requests);
        self.non_zero_requested.sub(&r.non_zero);
        if let Some(i) = self.pods.iter().position(|p| has_key(p, key)) {
            self.pods.swap_remove(i);
        }
    }

    /// Replaces the stored object of a pod whose requests did not change.
    fn replace(&mut self, key: &str, pod: Arc<Pod>) {
        if let Some(p) = self.pods.iter_mut().find(|p| has_key(p, key)) {
            *p = pod;
        }
    }
}

/// Whether `key` (see [`pod_key`]) names `pod`, without building the key.
fn has_key(pod: &Pod, key: &str) -> bool {
    match pod.metadata.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid == key,
        _ => key.split_once('/').is_some_and(|(ns, name)| {
            pod.metadata.namespace.as_deref().unwrap_or_default() == ns
                && pod.metadata.name.as_deref().unwrap_or_default() == name
        }),
    }
}

impl NodeInfo {
    /// A node with no pods on it.
    pub fn new(node: Node) -> NodeInfo {
        let mut info = NodeInfo {
            node: Arc::new(Node::default()),
            allocatable: Resource::default(),
            usage: Usage::default(),
            unschedulable: false,
            taints: Vec::new(),
            images: HashMap::new(),
        };
        info.set_node(node);
        info
    }

    /// Replaces the node object, keeping the usage.
    fn set_node(&mut self, node: Node) {
        self.allocatable = node_allocatable(&node);
        let spec = node.spec.as_ref();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.images = node
            .status
            .iter()
            .flat_map(|s| s.images.iter().flatten())
            .flat_map(|i| {
                let size = i.size_bytes.unwrap_or(0);
                i.names.iter().flatten().map(move |n| (n.clone(), size))
            })
            .collect();
        self.node = Arc::new(node);
    }

    /// The node object.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or_default()
    }

    /// The node's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.node.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
    }

    /// The node's taints.
    pub fn taints(&self) -> &[Taint] {
        &self.taints
    }

    /// Whether the node is cordoned (`spec.unschedulable`).
    pub fn unschedulable(&self) -> bool {
        self.unschedulable
    }

    /// The node's allocatable resources.
    pub fn allocatable(&self) -> &Resource {
        &self.allocatable
    }

    /// The sum of the requests of the pods on the node.
    pub fn requested(&self) -> &Resource {
        &self.usage.requested
    }

    /// The sum of the non-zero requests (see [`PodRequests::non_zero`]) of the pods on the node.
    pub fn non_zero_requested(&self) -> &Resource {
        &self.usage.non_zero_requested
    }

    /// How many pods are on the node (assumed ones included).
    pub fn pod_count(&self) -> usize {
        self.usage.pods.len()
    }

    /// The pods on the node (assumed ones included), in no particular order (upstream's
    /// `NodeInfo.Pods`).
    pub fn pods(&self) -> &[Arc<Pod>] {
        &self.usage.pods
    }

    /// The images the node reports (`status.images`), each name with the image's size in
    /// bytes (upstream's `NodeInfo.ImageStates`).
    pub fn images(&self) -> &HashMap<String, i64> {
        &self.images
    }

    /// Counts `pod` on this copy of the node, as if it were placed here (preemption and
    /// nominated pods simulate with it; the snapshot is not changed).
    pub fn add_pod(&mut self, pod: Arc<Pod>) {
        self.usage.add(&PodRequests::of(&pod), pod);
    }

    /// Stops counting `pod` on this copy of the node. Returns whether it was counted.
    pub fn remove_pod(&mut self, pod: &Pod) -> bool {
        let key = pod_key(pod);
        match self.usage.pods.iter().position(|p| has_key(p, &key)) {
            Some(_) => {
                self.usage.sub(&PodRequests::of(pod), &key);
                true
            }
            None => false,
        }
    }

    /// Whether replacing the node with `new` can change where pods fit: allocatable, labels,
    /// taints or cordoning changed (a heartbeat does not).
    fn scheduling_properties_differ(&self, new: &Node) -> bool {
        let spec = |n: &Node| {
            n.spec
                .as_ref()
                .map(|s| (s.taints.clone(), s.unschedulable.unwrap_or(false)))
        };
        self.node.metadata.labels != new.metadata.labels
            || spec(&self.node) != spec(new)
            || self.allocatable != node_allocatable(new)
    }
}

/// What [`Snapshot::upsert_node`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeChange {
    /// The node is new.
    Added,
    /// The node changed in a way that may let pods fit that did not before.
    Updated,
    /// Nothing that matters for scheduling changed.
    Unchanged,
}

/// A pod the snapshot counts on a node.
#[derive(Clone, Debug)]
struct PlacedPod {
    node: String,
    requests: PodRequests,
    /// The pod, for the plugins that look at other pods' labels and affinity.
    pod: Arc<Pod>,
    /// Assumed by the scheduler and not yet seen bound through the watch.
    assumed: bool,
}

/// How many nodes hold each image, for ImageLocality's spread (upstream's
/// `ImageStateSummary.NumNodes`).
#[derive(Clone, Debug, Default)]
pub struct ImageStates {
    nodes_with: HashMap<String, usize>,
    total_nodes: usize,
}

impl ImageStates {
    /// How many nodes report the image under this name.
    pub fn nodes_with(&self, name: &str) -> usize {
        self.nodes_with.get(name).copied().unwrap_or(0)
    }

    /// How many nodes there are.
    pub fn total_nodes(&self) -> usize {
        self.total_nodes
    }

    fn count(&mut self, node: &NodeInfo, delta: isize) {
        for name in node.images.keys() {
            let n = self.nodes_with.entry(name.clone()).or_default();
            *n = n.saturating_add_signed(delta);
            if *n == 0 {
                self.nodes_with.remove(name);
            }
        }
    }
}

/// The nodes and the pods placed on them, as [`Scheduler::schedule`](crate::Scheduler::schedule)
/// sees them.
///
/// The scheduling loop keeps one snapshot up to date from its node and pod watches, and
/// [`assume`](Snapshot::assume)s each pod onto the node it picks before the binding is written,
/// so the next cycle sees the node's new load without re-summing any pods. A benchmark or a
/// test builds one straight from objects:
///
/// ```
/// use k8s_openapi::api::core::v1::{Node, Pod};
/// use kybernetes_sched::{Framework, Scheduler, Snapshot};
/// let node: Node = serde_json::from_value(serde_json::json!({
///     "metadata": {"name": "node-1"},
///     "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
/// }))?;
/// let pod: Pod = serde_json::from_value(serde_json::json!({
///     "metadata": {"name": "web", "namespace": "default"},
///     "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]},
/// }))?;
/// let mut snapshot = Snapshot::new(vec![node], vec![]);
/// let chosen = Framework::default_plugins().schedule(&pod, &snapshot).expect("fits");
/// snapshot.assume(&pod, &chosen)?;
/// assert_eq!(snapshot.node("node-1").map(|n| n.requested().milli_cpu), Some(1000));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    pods: HashMap<String, PlacedPod>,
    /// Usage of pods bound to nodes the snapshot does not (yet) hold.
    absent: HashMap<String, Usage>,
    /// Claims, volumes and storage classes, for VolumeBinding.
    volumes: VolumeListers,
    /// Which nodes hold which images, for ImageLocality.
    images: ImageStates,
    /// PodDisruptionBudgets by `namespace/name`, for preemption.
    pdbs: HashMap<String, Arc<PodDisruptionBudget>>,
    /// Pending pods with a `status.nominatedNodeName`.
    nominated: Nominator,
    /// Pods per topology domain and namespace labels, for InterPodAffinity and
    /// PodTopologySpread.
    topology: topology::TopologyIndex,
    /// The selectors of Services and workload controllers, for PodTopologySpread's system
    /// default constraints.
    spreading_owners: SpreadingOwners,
}

/// The key the snapshot and the scheduling queue know a pod by: its UID, or `namespace/name`
/// when it has none.
pub fn pod_key(pod: &Pod) -> String {
    match pod.metadata.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid.to_string(),
        _ => format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        ),
    }
}

/// `namespace/name` of an object.
pub(crate) fn object_key(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// Whether a pod has finished (phase Succeeded or Failed) and no longer holds resources.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

impl Snapshot {
    /// A snapshot of `nodes`, with every pod of `pods` that is bound (`spec.nodeName`) and not
    /// terminal counted on its node.
    pub fn new(nodes: Vec<Node>, pods: Vec<Pod>) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for node in nodes {
            snapshot.upsert_node(node);
        }
        for pod in &pods {
            snapshot.add_pod(pod);
        }
        snapshot
    }

    /// The claims, volumes and storage classes the scheduler knows.
    pub fn volumes(&self) -> &VolumeListers {
        &self.volumes
    }

    /// The claims, volumes and storage classes, to update them.
    pub fn volumes_mut(&mut self) -> &mut VolumeListers {
        &mut self.volumes
    }

    /// Which nodes hold which images.
    pub fn images(&self) -> &ImageStates {
        &self.images
    }

    /// The PodDisruptionBudgets the scheduler knows.
    pub fn pdbs(&self) -> impl Iterator<Item = &PodDisruptionBudget> {
        self.pdbs.values().map(|p| p.as_ref())
    }

    /// Adds or replaces a PodDisruptionBudget.
    pub fn upsert_pdb(&mut self, pdb: PodDisruptionBudget) {
        self.pdbs.insert(object_key(&pdb.metadata), Arc::new(pdb));
    }

    /// Forgets a PodDisruptionBudget.
    pub fn remove_pdb(&mut self, pdb: &PodDisruptionBudget) {
        self.pdbs.remove(&object_key(&pdb.metadata));
    }

    /// Keeps only the PodDisruptionBudgets whose `namespace/name` is in `keys` (a relist).
    pub fn retain_pdbs(&mut self, keys: &std::collections::HashSet<String>) {
        self.pdbs.retain(|k, _| keys.contains(k));
    }

    /// The Services and workload controllers that spread pods, by their selectors.
    pub fn spreading_owners(&self) -> &SpreadingOwners {
        &self.spreading_owners
    }

    /// The spreading owners, to keep them current.
    pub fn spreading_owners_mut(&mut self) -> &mut SpreadingOwners {
        &mut self.spreading_owners
    }

    /// The pending pods nominated to nodes (`status.nominatedNodeName`).
    pub fn nominated(&self) -> &Nominator {
        &self.nominated
    }

    /// The nominated pods, to update them.
    pub fn nominated_mut(&mut self) -> &mut Nominator {
        &mut self.nominated
    }

    /// Every node, in a stable order (the scheduler rotates where it starts in it).
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// How many nodes the snapshot holds.
    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// Adds a node or replaces it, keeping the pods counted on it.
    pub fn upsert_node(&mut self, node: Node) -> NodeChange {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(&i) = self.index.get(&name) {
            let info = &mut self.nodes[i];
            let change = if info.scheduling_properties_differ(&node) {
                NodeChange::Updated
            } else {
                NodeChange::Unchanged
            };
            if change == NodeChange::Updated {
                self.topology.invalidate();
            }
            let images_changed = info.node.status.as_ref().map(|s| &s.images)
                != node.status.as_ref().map(|s| &s.images);
            if images_changed {
                self.images.count(&self.nodes[i], -1);
            }
            let info = &mut self.nodes[i];
            info.set_node(node);
            if images_changed {
                self.images.count(&self.nodes[i], 1);
            }
            return change;
        }
        let mut info = NodeInfo::new(node);
        info.usage = self.absent.remove(&name).unwrap_or_default();
        self.images.count(&info, 1);
        self.images.total_nodes += 1;
        self.index.insert(name, self.nodes.len());
        self.nodes.push(info);
        self.topology.invalidate();
        NodeChange::Added
    }

    /// Removes a node; the pods bound to it stay counted, should it come back.
    pub fn remove_node(&mut self, name: &str) -> bool {
        let Some(i) = self.index.remove(name) else {
            return false;
        };
        let info = self.nodes.swap_remove(i);
        self.topology.invalidate();
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name().to_string(), i);
        }
        self.images.count(&info, -1);
        self.images.total_nodes = self.images.total_nodes.saturating_sub(1);
        if !info.usage.pods.is_empty() {
            self.absent.insert(name.to_string(), info.usage);
        }
        true
    }

    /// Counts a bound pod (`spec.nodeName` set) on its node, or updates it; confirms an
    /// assumed pod. A terminal or unbound pod is removed instead. Returns whether the pod is
    /// counted.
    pub fn add_pod(&mut self, pod: &Pod) -> bool {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        if node.is_empty() || is_terminal(pod) {
            self.remove_pod(pod);
            return false;
        }
        let pod = Arc::new(pod.clone());
        self.place(
            pod_key(&pod),
            node.to_string(),
            PodRequests::of(&pod),
            false,
            pod,
        );
        true
    }

    /// [`add_pod`](Snapshot::add_pod) for a pod the caller already shares. Returns whether
    /// other pods may now fit differently: the pod is newly counted or confirmed, moved, or
    /// relabelled (upstream's `AssignedPodAdd`/`AssignedPodUpdate`), not merely updated.
    pub(crate) fn add_shared_pod(&mut self, pod: Arc<Pod>) -> bool {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default()
            .to_string();
        if node.is_empty() || is_terminal(&pod) {
            self.remove_pod(&pod);
            return false;
        }
        self.place(pod_key(&pod), node, PodRequests::of(&pod), false, pod)
    }

    /// Stops counting a pod. Returns whether it was counted.
    pub fn remove_pod(&mut self, pod: &Pod) -> bool {
        self.remove_key(&pod_key(pod))
    }

    /// Counts `pod` on `node` before its binding is confirmed (upstream's `AssumePod`).
    pub fn assume(&mut self, pod: &Pod, node: &str) -> Result<()> {
        self.assume_shared(Arc::new(pod.clone()), node)
    }

    /// [`assume`](Snapshot::assume) for a pod the caller already shares.
    pub fn assume_shared(&mut self, pod: Arc<Pod>, node: &str) -> Result<()> {
        if !self.index.contains_key(node) {
            return Err(Error::NodeNotFound {
                node: node.to_string(),
            });
        }
        let mut assumed = pod;
        if assumed.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node) {
            // Plugins that look at the pods on a node (NodePorts, preemption) see it there.
            let p = Arc::make_mut(&mut assumed);
            p.spec.get_or_insert_with(Default::default).node_name = Some(node.to_string());
        }
        self.place(
            pod_key(&assumed),
            node.to_string(),
            PodRequests::of(&assumed),
            true,
            assumed,
        );
        Ok(())
    }

    /// Undoes [`assume`](Snapshot::assume) when the binding failed; a pod already confirmed
    /// by the watch stays. Returns whether an assumption was dropped.
    pub fn forget(&mut self, pod: &Pod) -> bool {
        self.forget_key(&pod_key(pod))
    }

    /// Whether the snapshot counts the pod (assumed or confirmed).
    pub fn contains_pod(&self, pod: &Pod) -> bool {
        self.pods.contains_key(&pod_key(pod))
    }

    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    pub(crate) fn forget_key(&mut self, key: &str) -> bool {
        if self.pods.get(key).is_some_and(|p| p.assumed) {
            self.remove_key(key)
        } else {
            false
        }
    }

    pub(crate) fn remove_key(&mut self, key: &str) -> bool {
        let Some(old) = self.pods.remove(key) else {
            return false;
        };
        self.usage_mut(&old.node).sub(&old.requests, key);
        if let Some(&i) = self.index.get(&old.node) {
            let labels = self.nodes[i]
                .node
                .metadata
                .labels
                .as_ref()
                .unwrap_or(&NO_LABELS);
            self.topology.on_pod(&old.pod, Some(labels), -1);
        }
        if self
            .absent
            .get(&old.node)
            .is_some_and(|u| u.pods.is_empty())
        {
            self.absent.remove(&old.node);
        }
        true
    }

    /// Keys of the pods the watch confirmed (not assumed), for a relist.
    pub(crate) fn confirmed_keys(&self) -> Vec<String> {
        self.pods
            .iter()
            .filter(|(_, p)| !p.assumed)
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn place(
        &mut self,
        key: String,
        node: String,
        requests: PodRequests,
        assumed: bool,
        pod: Arc<Pod>,
    ) -> bool {
        if let Some(old) = self.pods.get(&key)
            && old.node == node
            && old.requests == requests
            && old.pod.metadata.labels == pod.metadata.labels
            && old.pod.metadata.deletion_timestamp == pod.metadata.deletion_timestamp
        {
            let mut confirmed = false;
            if let Some(p) = self.pods.get_mut(&key) {
                if !assumed {
                    confirmed = p.assumed;
                    p.assumed = false;
                }
                // The latest version only: keeping the assumed copy beside the watched one
                // held every bound pod twice.
                p.pod = pod.clone();
            }
            self.usage_mut(&node).replace(&key, pod);
            return confirmed;
        }
        self.remove_key(&key);
        self.usage_mut(&node).add(&requests, pod.clone());
        if let Some(&i) = self.index.get(&node) {
            let labels = self.nodes[i]
                .node
                .metadata
                .labels
                .as_ref()
                .unwrap_or(&NO_LABELS);
            self.topology.on_pod(&pod, Some(labels), 1);
        }
        self.pods.insert(
            key,
            PlacedPod {
                node,
                requests,
                pod,
                assumed,
            },
        );
        true
    }

    fn usage_mut(&mut self, node: &str) -> &mut Usage {
        match self.index.get(node) {
            Some(&i) => &mut self.nodes[i].usage,
            None => self.absent.entry(node.to_string()).or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "10"}},
        }))
        .expect("node")
    }

    fn pod(name: &str, node: Option<&str>, cpu: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
        }))
        .expect("pod")
    }

    #[test]
    fn bound_pods_are_summed_per_node() {
        let s = Snapshot::new(
            vec![node("a", "4"), node("b", "4")],
            vec![
                pod("p1", Some("a"), "1"),
                pod("p2", Some("a"), "500m"),
                pod("p3", None, "1"),
            ],
        );
        let a = s.node("a").expect("a");
        assert_eq!((a.requested().milli_cpu, a.pod_count()), (1500, 2));
        assert_eq!(s.node("b").map(|b| b.pod_count()), Some(0));
    }

    #[test]
    fn assume_then_forget_restores_the_node() {
        let mut s = Snapshot::new(vec![node("a", "4")], vec![]);
        let p = pod("p", None, "1");
        s.assume(&p, "a").expect("assume");
        assert_eq!(s.node("a").map(|n| n.requested().milli_cpu), Some(1000));
        assert!(s.forget(&p));
        assert_eq!(s.node("a").map(|n| n.pod_count()), Some(0));
        assert!(s.assume(&p, "missing").is_err());
    }

    #[test]
    fn a_confirmed_pod_is_not_forgotten() {
        let mut s = Snapshot::new(vec![node("a", "4")], vec![]);
        let p = pod("p", None, "1");
        s.assume(&p, "a").expect("assume");
        s.add_pod(&pod("p", Some("a"), "1"));
        assert!(!s.forget(&p));
        assert_eq!(s.node("a").map(|n| n.pod_count()), Some(1));
    }

    #[test]
    fn pods_on_a_missing_node_count_once_it_appears() {
        let mut s = Snapshot::new(vec![node("a", "4")], vec![pod("p", Some("b"), "1")]);
        assert_eq!(s.upsert_node(node("b", "4")), NodeChange::Added);
        assert_eq!(s.node("b").map(|n| n.requested().milli_cpu), Some(1000));
        assert!(s.remove_node("a"));
        assert_eq!(s.node("b").map(|n| n.name()), Some("b"));
        assert!(s.remove_node("b"));
        assert_eq!(s.upsert_node(node("b", "4")), NodeChange::Added);
        assert_eq!(s.node("b").map(|n| n.pod_count()), Some(1));
    }

    #[test]
    fn terminal_and_deleted_pods_release_their_requests() {
        let mut s = Snapshot::new(
            vec![node("a", "4")],
            vec![pod("p", Some("a"), "1"), pod("q", Some("a"), "1")],
        );
        let mut done = pod("p", Some("a"), "1");
        done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).expect("status"));
        s.add_pod(&done);
        assert!(s.remove_pod(&pod("q", Some("a"), "1")));
        assert_eq!(
            s.node("a")
                .map(|n| (n.pod_count(), n.requested().milli_cpu)),
            Some((0, 0))
        );
    }

    #[test]
    fn only_scheduling_properties_count_as_node_updates() {
        let mut s = Snapshot::new(vec![node("a", "4")], vec![]);
        assert_eq!(s.upsert_node(node("a", "4")), NodeChange::Unchanged);
        assert_eq!(s.upsert_node(node("a", "8")), NodeChange::Updated);
        let mut cordoned = node("a", "8");
        cordoned.spec = Some(serde_json::from_value(json!({"unschedulable": true})).expect("spec"));
        assert_eq!(s.upsert_node(cordoned), NodeChange::Updated);
    }
}
