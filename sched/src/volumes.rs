//! The claims, volumes and storage classes the VolumeBinding plugin reads (upstream's PVC, PV
//! and StorageClass listers), and what one pod's claims need on one node (upstream's
//! `FindPodVolumes`): which claims are bound, which to bind to which static volume, and which
//! to provision there.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kybernetes_core::persistent_volume::{MatchScope, claim_class, find_matching_volume};

use crate::node_selector::NodeSelectorMatcher;
use crate::snapshot::NodeInfo;

/// The provisioner name of classes with no provisioner (static volumes only).
const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// The storage objects the scheduler watches.
#[derive(Clone, Debug, Default)]
pub struct VolumeListers {
    /// By `namespace/name`.
    claims: HashMap<String, Arc<PersistentVolumeClaim>>,
    volumes: HashMap<String, Arc<PersistentVolume>>,
    classes: HashMap<String, Arc<StorageClass>>,
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

impl VolumeListers {
    /// Adds or replaces a claim.
    pub fn upsert_claim(&mut self, claim: PersistentVolumeClaim) {
        self.claims.insert(claim_key(&claim), Arc::new(claim));
    }

    /// Removes a claim.
    pub fn remove_claim(&mut self, claim: &PersistentVolumeClaim) {
        self.claims.remove(&claim_key(claim));
    }

    /// Adds or replaces a volume.
    pub fn upsert_volume(&mut self, volume: PersistentVolume) {
        self.volumes
            .insert(name_of(&volume.metadata), Arc::new(volume));
    }

    /// Removes a volume.
    pub fn remove_volume(&mut self, volume: &PersistentVolume) {
        self.volumes.remove(&name_of(&volume.metadata));
    }

    /// Adds or replaces a class.
    pub fn upsert_class(&mut self, class: StorageClass) {
        self.classes
            .insert(name_of(&class.metadata), Arc::new(class));
    }

    /// Removes a class.
    pub fn remove_class(&mut self, class: &StorageClass) {
        self.classes.remove(&name_of(&class.metadata));
    }

    /// Keeps only the claims (by [`claim_key`]), volumes or classes (by name) in `keep`, after
    /// a relist.
    pub(crate) fn retain_claims(&mut self, keep: &HashSet<String>) {
        self.claims.retain(|k, _| keep.contains(k));
    }

    pub(crate) fn retain_volumes(&mut self, keep: &HashSet<String>) {
        self.volumes.retain(|k, _| keep.contains(k));
    }

    pub(crate) fn retain_classes(&mut self, keep: &HashSet<String>) {
        self.classes.retain(|k, _| keep.contains(k));
    }

    fn claim(&self, ns: &str, name: &str) -> Option<&Arc<PersistentVolumeClaim>> {
        self.claims.get(&format!("{ns}/{name}"))
    }
}

/// `namespace/name` of a claim.
pub(crate) fn claim_key(claim: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        claim.metadata.namespace.as_deref().unwrap_or_default(),
        name_of(&claim.metadata)
    )
}

/// The claim names of a pod's `persistentVolumeClaim` volumes.
pub fn pod_claim_names(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
}

/// A pod's claims, sorted as upstream's `GetPodVolumeClaims` does.
#[derive(Clone, Debug, Default)]
pub struct PodVolumeClaims {
    /// Claims bound to a volume (`spec.volumeName` set).
    pub bound: Vec<Arc<PersistentVolumeClaim>>,
    /// Unbound claims of a WaitForFirstConsumer class: bound or provisioned once the pod has a
    /// node.
    pub delayed: Vec<Arc<PersistentVolumeClaim>>,
    /// Unbound claims of an Immediate class (the PV controller binds them; the pod waits).
    pub immediate: Vec<Arc<PersistentVolumeClaim>>,
    /// Why the claims cannot be used at all (missing or being deleted).
    pub problem: Option<String>,
}

impl PodVolumeClaims {
    /// Sorts the pod's claims.
    pub fn of(pod: &Pod, listers: &VolumeListers) -> PodVolumeClaims {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let mut out = PodVolumeClaims::default();
        for name in pod_claim_names(pod) {
            let Some(claim) = listers.claim(ns, name) else {
                out.problem = Some(format!("persistentvolumeclaim {name:?} not found"));
                continue;
            };
            if claim.metadata.deletion_timestamp.is_some() {
                out.problem = Some(format!("persistentvolumeclaim {name:?} is being deleted"));
                continue;
            }
            let bound = claim
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .is_some_and(|v| !v.is_empty());
            let delayed = listers
                .classes
                .get(claim_class(claim))
                .and_then(|c| c.volume_binding_mode.as_deref())
                == Some("WaitForFirstConsumer");
            match (bound, delayed) {
                (true, _) => out.bound.push(claim.clone()),
                (false, true) => out.delayed.push(claim.clone()),
                (false, false) => out.immediate.push(claim.clone()),
            }
        }
        out
    }

    /// Whether the pod uses any claim.
    pub fn is_empty(&self) -> bool {
        self.bound.is_empty()
            && self.delayed.is_empty()
            && self.immediate.is_empty()
            && self.problem.is_none()
    }
}

/// Whether the volume's required node affinity admits the node (no affinity admits every node).
pub fn volume_fits_node(volume: &PersistentVolume, node: &NodeInfo) -> bool {
    let Some(required) = volume
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    required
        .node_selector_terms
        .iter()
        .filter_map(NodeSelectorMatcher::parse)
        .any(|m| m.matches(node))
}

/// What the delayed claims of a pod need on a node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VolumeDecisions {
    /// (claim, static volume to bind it to).
    pub bind: Vec<(Arc<PersistentVolumeClaim>, Arc<PersistentVolume>)>,
    /// Claims to provision on the node.
    pub provision: Vec<Arc<PersistentVolumeClaim>>,
}

/// Why a node cannot serve a pod's claims, with upstream's VolumeBinding reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeConflict {
    /// A bound volume's node affinity excludes the node.
    NodeAffinity,
    /// No static volume fits and the class cannot provision.
    NoVolume,
    /// A bound claim's volume does not exist.
    VolumeMissing,
}

impl VolumeConflict {
    /// Upstream's message.
    pub fn reason(self) -> &'static str {
        match self {
            VolumeConflict::NodeAffinity => "node(s) had volume node affinity conflict",
            VolumeConflict::NoVolume => "node(s) didn't find available persistent volumes to bind",
            VolumeConflict::VolumeMissing => {
                "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
            }
        }
    }
}

/// Upstream's `FindPodVolumes` for one node: bound claims must have their volume reachable
/// from it; each delayed claim gets the smallest fitting static volume there (no volume twice),
/// else is provisioned there if its class has a provisioner.
pub fn find_pod_volumes(
    claims: &PodVolumeClaims,
    node: &NodeInfo,
    listers: &VolumeListers,
) -> Result<VolumeDecisions, VolumeConflict> {
    for claim in &claims.bound {
        let name = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .unwrap_or_default();
        let Some(volume) = listers.volumes.get(name) else {
            return Err(VolumeConflict::VolumeMissing);
        };
        if !volume_fits_node(volume, node) {
            return Err(VolumeConflict::NodeAffinity);
        }
    }
    let mut decisions = VolumeDecisions::default();
    let mut chosen: HashSet<String> = HashSet::new();
    let fits = |v: &PersistentVolume| volume_fits_node(v, node);
    let scope = MatchScope::Node {
        affinity_fits: &fits,
    };
    for claim in &claims.delayed {
        let candidates = listers
            .volumes
            .values()
            .filter(|v| !chosen.contains(v.metadata.name.as_deref().unwrap_or_default()))
            .map(Arc::as_ref);
        if let Some(volume) = find_matching_volume(claim, candidates, &scope) {
            let name = volume.metadata.name.clone().unwrap_or_default();
            if let Some(volume) = listers.volumes.get(&name) {
                decisions.bind.push((claim.clone(), volume.clone()));
            }
            chosen.insert(name);
            continue;
        }
        let provisioner = listers
            .classes
            .get(claim_class(claim))
            .map(|c| c.provisioner.as_str());
        match provisioner {
            Some(p) if !p.is_empty() && p != NO_PROVISIONER => {
                decisions.provision.push(claim.clone())
            }
            _ => return Err(VolumeConflict::NoVolume),
        }
    }
    Ok(decisions)
}
