//! What the plugins need to know about the pod being scheduled, computed once per cycle.

use k8s_openapi::api::core::v1::{Pod, Toleration};

use crate::node_selector::{PreferredNodeAffinity, RequiredNodeAffinity};
use crate::plugins::{InterPodAffinityState, TopologySpreadState};
use crate::resources::PodRequests;
use crate::snapshot::{ImageStates, Snapshot};
use crate::volumes::{PodVolumeClaims, VolumeListers};

/// The listers of a pod built without any (no claims are known).
static NO_VOLUMES: std::sync::LazyLock<VolumeListers> =
    std::sync::LazyLock::new(VolumeListers::default);

/// The image states of a pod built without any (no node holds any image).
static NO_IMAGES: std::sync::LazyLock<ImageStates> = std::sync::LazyLock::new(ImageStates::default);
/// The snapshot of a pod built without one.
static NO_SNAPSHOT: std::sync::LazyLock<Snapshot> = std::sync::LazyLock::new(Snapshot::default);

/// The pod being scheduled, with its requests, tolerations and node affinity parsed once per
/// scheduling cycle (upstream computes the same in its PreFilter/PreScore steps).
#[derive(Clone, Debug)]
pub struct PodInfo<'a> {
    pod: &'a Pod,
    requests: PodRequests,
    required_affinity: RequiredNodeAffinity,
    preferred_affinity: PreferredNodeAffinity,
    volume_claims: PodVolumeClaims,
    volume_listers: &'a VolumeListers,
    image_states: &'a ImageStates,
    snapshot: &'a Snapshot,
    /// InterPodAffinity's and PodTopologySpread's per-cycle state (upstream's CycleState),
    /// computed on first use.
    pub(crate) inter_pod_affinity: std::sync::OnceLock<InterPodAffinityState>,
    pub(crate) topology_spread: std::sync::OnceLock<TopologySpreadState>,
    /// PodTopologySpread's system default constraints, for a pod without its own.
    pub(crate) default_topology_spread: std::sync::OnceLock<TopologySpreadState>,
}

impl<'a> PodInfo<'a> {
    /// Parses what the plugins need from `pod`.
    pub fn new(pod: &'a Pod) -> PodInfo<'a> {
        let (required_affinity, preferred_affinity) = match &pod.spec {
            Some(spec) => (
                RequiredNodeAffinity::of(spec),
                PreferredNodeAffinity::of(spec),
            ),
            None => Default::default(),
        };
        PodInfo {
            pod,
            requests: PodRequests::of(pod),
            required_affinity,
            preferred_affinity,
            volume_claims: PodVolumeClaims::default(),
            volume_listers: &NO_VOLUMES,
            image_states: &NO_IMAGES,
            snapshot: &NO_SNAPSHOT,
            inter_pod_affinity: std::sync::OnceLock::new(),
            topology_spread: std::sync::OnceLock::new(),
            default_topology_spread: std::sync::OnceLock::new(),
        }
    }

    /// Looks up the pod's PersistentVolumeClaims in `listers` (for VolumeBinding).
    pub fn with_volumes(mut self, listers: &'a VolumeListers) -> PodInfo<'a> {
        self.volume_claims = PodVolumeClaims::of(self.pod, listers);
        self.volume_listers = listers;
        self
    }

    /// Uses `images` for how many nodes hold each image (for ImageLocality).
    pub fn with_images(mut self, images: &'a ImageStates) -> PodInfo<'a> {
        self.image_states = images;
        self
    }

    /// How many nodes hold each image.
    pub fn image_states(&self) -> &'a ImageStates {
        self.image_states
    }

    /// Lets the plugins that look at other pods (InterPodAffinity, PodTopologySpread) see
    /// `snapshot`.
    pub fn with_snapshot(mut self, snapshot: &'a Snapshot) -> PodInfo<'a> {
        self.snapshot = snapshot;
        self
    }

    /// The snapshot the pod is scheduled against (empty unless set with
    /// [`with_snapshot`](PodInfo::with_snapshot)).
    pub fn snapshot(&self) -> &'a Snapshot {
        self.snapshot
    }

    /// The pod's claims, sorted by how they bind.
    pub fn volume_claims(&self) -> &PodVolumeClaims {
        &self.volume_claims
    }

    /// The claims, volumes and classes the pod was looked up in.
    pub fn volume_listers(&self) -> &'a VolumeListers {
        self.volume_listers
    }

    /// The pod object.
    pub fn pod(&self) -> &'a Pod {
        self.pod
    }

    /// `namespace/name`, for messages.
    pub fn full_name(&self) -> String {
        format!(
            "{}/{}",
            self.pod.metadata.namespace.as_deref().unwrap_or_default(),
            self.pod.metadata.name.as_deref().unwrap_or_default()
        )
    }

    /// `spec.nodeName`, when set.
    pub fn node_name(&self) -> Option<&'a str> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
    }

    /// The pod's resource requests.
    pub fn requests(&self) -> &PodRequests {
        &self.requests
    }

    /// The pod's tolerations.
    pub fn tolerations(&self) -> &'a [Toleration] {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default()
    }

    /// `spec.nodeSelector` and required node affinity.
    pub fn required_affinity(&self) -> &RequiredNodeAffinity {
        &self.required_affinity
    }

    /// Preferred node affinity terms.
    pub fn preferred_affinity(&self) -> &PreferredNodeAffinity {
        &self.preferred_affinity
    }
}
