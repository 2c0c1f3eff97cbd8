//! What the PersistentVolume controller and the scheduler's VolumeBinding plugin share
//! (upstream's `pkg/controller/volume/persistentvolume/util` and `storage/v1/helpers`): the
//! well-known annotations, a claim's and a volume's storage class (the legacy beta annotation
//! first), and upstream's `FindMatchingVolume`, which picks the smallest available volume that
//! satisfies a claim.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::quantity::parse_milli;
use crate::selector::LabelSelector;

/// The legacy class annotation, honoured before `storageClassName` on claims and volumes.
pub const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";
/// Marks the default StorageClass.
pub const IS_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
/// The beta form of [`IS_DEFAULT_CLASS_ANNOTATION`], still honoured upstream.
pub const BETA_IS_DEFAULT_CLASS_ANNOTATION: &str =
    "storageclass.beta.kubernetes.io/is-default-class";
/// Set on a claim once the controller has finished binding it.
pub const BIND_COMPLETED_ANNOTATION: &str = "pv.kubernetes.io/bind-completed";
/// Set on a claim or volume that the controller (not the user) bound.
pub const BOUND_BY_CONTROLLER_ANNOTATION: &str = "pv.kubernetes.io/bound-by-controller";
/// The provisioner that created a volume.
pub const PROVISIONED_BY_ANNOTATION: &str = "pv.kubernetes.io/provisioned-by";
/// The node the scheduler chose for a WaitForFirstConsumer claim.
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
/// The provisioner asked to provision a claim.
pub const STORAGE_PROVISIONER_ANNOTATION: &str = "volume.kubernetes.io/storage-provisioner";
/// The beta form of [`STORAGE_PROVISIONER_ANNOTATION`], still written upstream.
pub const BETA_STORAGE_PROVISIONER_ANNOTATION: &str =
    "volume.beta.kubernetes.io/storage-provisioner";
/// Holds a claim while a pod uses it.
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";
/// Holds a volume while it is bound.
pub const PV_PROTECTION_FINALIZER: &str = "kubernetes.io/pv-protection";

/// The class a claim asks for (upstream's `GetPersistentVolumeClaimClass`): the beta
/// annotation if present, else `spec.storageClassName`, else `""` (no class).
///
/// ```
/// use k8s_openapi::api::core::v1::PersistentVolumeClaim;
/// use kybernetes_core::persistent_volume::claim_class;
/// let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
///     "metadata": {"annotations": {"volume.beta.kubernetes.io/storage-class": "slow"}},
///     "spec": {"storageClassName": "fast"},
/// }))?;
/// assert_eq!(claim_class(&claim), "slow");
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    if let Some(class) = annotation(&claim.metadata.annotations, BETA_STORAGE_CLASS_ANNOTATION) {
        return class;
    }
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// Whether the claim names a class at all (annotation or field), even `""`; a claim that
/// does not gets the default class (upstream's retroactive default StorageClass assignment).
pub fn claim_has_class(claim: &PersistentVolumeClaim) -> bool {
    annotation(&claim.metadata.annotations, BETA_STORAGE_CLASS_ANNOTATION).is_some()
        || claim
            .spec
            .as_ref()
            .is_some_and(|s| s.storage_class_name.is_some())
}

/// The class of a volume (upstream's `GetPersistentVolumeClass`), as [`claim_class`].
pub fn volume_class(volume: &PersistentVolume) -> &str {
    if let Some(class) = annotation(&volume.metadata.annotations, BETA_STORAGE_CLASS_ANNOTATION) {
        return class;
    }
    volume
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// Whether the class is marked default (either annotation, `"true"`).
pub fn is_default_class(class: &StorageClass) -> bool {
    [
        IS_DEFAULT_CLASS_ANNOTATION,
        BETA_IS_DEFAULT_CLASS_ANNOTATION,
    ]
    .iter()
    .any(|a| annotation(&class.metadata.annotations, a) == Some("true"))
}

/// The default class among `classes` (upstream's `GetDefaultClass`): of several, the newest,
/// and of equally new ones the first by name.
pub fn default_class<'a>(
    classes: impl IntoIterator<Item = &'a StorageClass>,
) -> Option<&'a StorageClass> {
    classes
        .into_iter()
        .filter(|c| is_default_class(c))
        .max_by(|a, b| {
            let created = |c: &StorageClass| c.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(a)
                .cmp(&created(b))
                .then_with(|| b.metadata.name.cmp(&a.metadata.name))
        })
}

/// The value of annotation `key`, if set.
pub fn annotation<'a>(
    annotations: &'a Option<BTreeMap<String, String>>,
    key: &str,
) -> Option<&'a str> {
    annotations.as_ref()?.get(key).map(String::as_str)
}

/// The storage a claim requests, in bytes (rounded up; 0 when absent or unreadable).
pub fn requested_bytes(claim: &PersistentVolumeClaim) -> i128 {
    let q = claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"));
    q.and_then(|q| parse_milli(&q.0))
        .map_or(0, |m| (m + 999) / 1000)
}

/// The storage a volume offers, in bytes (0 when absent or unreadable).
pub fn capacity_bytes(volume: &PersistentVolume) -> i128 {
    let q = volume
        .spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"));
    q.and_then(|q| parse_milli(&q.0)).map_or(0, |m| m / 1000)
}

/// Whether the volume's `claimRef` names this claim (upstream's `IsVolumeBoundToClaim`): the
/// same namespace and name, and the same uid unless the reference has none (pre-bound).
pub fn is_volume_bound_to_claim(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    if r.name != claim.metadata.name || r.namespace != claim.metadata.namespace {
        return false;
    }
    match r.uid.as_deref() {
        None | Some("") => true,
        Some(uid) => claim.metadata.uid.as_deref() == Some(uid),
    }
}

/// `Filesystem` unless set (the API default).
fn volume_mode(mode: Option<&str>) -> &str {
    mode.unwrap_or("Filesystem")
}

/// Whether the claim's volume mode differs from the volume's (upstream's
/// `CheckVolumeModeMismatches`).
pub fn volume_mode_mismatch(claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> bool {
    let claim_mode = claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    let volume_mode_ = volume.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    volume_mode(claim_mode) != volume_mode(volume_mode_)
}

/// Whether the volume offers every access mode the claim asks for (upstream's
/// `CheckAccessModes`).
pub fn access_modes_fit(claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> bool {
    let offered = volume
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default();
    claim
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default()
        .iter()
        .all(|m| offered.contains(m))
}

/// Whether the claim's `spec.selector` matches the volume's labels (no selector matches all;
/// one that does not parse matches none).
fn selector_matches(claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> bool {
    let Some(selector) = claim.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return true;
    };
    let Ok(json) = serde_json::to_value(selector) else {
        return false;
    };
    let Ok(selector) = LabelSelector::from_json(&json) else {
        return false;
    };
    let empty = BTreeMap::new();
    selector.matches(volume.metadata.labels.as_ref().unwrap_or(&empty))
}

/// Where a match is looked for: by the PV controller (no node), or by the scheduler for one
/// node, which then also checks access modes and the volume's node affinity.
pub enum MatchScope<'a> {
    /// The PV controller: claims of WaitForFirstConsumer classes are left to the scheduler.
    Controller {
        /// The claim's class binds only once a pod using it is scheduled.
        delay_binding: bool,
    },
    /// The scheduler, for one node.
    Node {
        /// Whether the volume's node affinity admits the node.
        affinity_fits: &'a (dyn Fn(&PersistentVolume) -> bool + Sync),
    },
}

/// Upstream's `FindMatchingVolume`: a volume pre-bound to the claim if there is one, else the
/// smallest available volume of the claim's class that is at least as large as the request,
/// has its access modes and volume mode, and matches its selector.
///
/// ```
/// use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
/// use kybernetes_core::persistent_volume::{MatchScope, find_matching_volume};
/// let pv = |name: &str, size: &str| -> PersistentVolume { serde_json::from_value(serde_json::json!({
///     "metadata": {"name": name},
///     "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "storageClassName": "manual"},
///     "status": {"phase": "Available"},
/// })).unwrap() };
/// let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
///     "metadata": {"name": "c", "namespace": "default"},
///     "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual", "resources": {"requests": {"storage": "1Gi"}}},
/// }))?;
/// let volumes = [pv("small", "500Mi"), pv("big", "10Gi"), pv("fits", "2Gi")];
/// let found = find_matching_volume(&claim, volumes.iter(), &MatchScope::Controller { delay_binding: false });
/// assert_eq!(found.and_then(|v| v.metadata.name.as_deref()), Some("fits"));
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn find_matching_volume<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    scope: &MatchScope<'_>,
) -> Option<&'a PersistentVolume> {
    let requested = requested_bytes(claim);
    let class = claim_class(claim);
    let mut smallest: Option<(&PersistentVolume, i128)> = None;
    for volume in volumes {
        if volume_mode_mismatch(claim, volume) || volume.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let affinity_fits = match scope {
            MatchScope::Node { affinity_fits } => affinity_fits(volume),
            MatchScope::Controller { .. } => true,
        };
        if is_volume_bound_to_claim(volume, claim) {
            return affinity_fits.then_some(volume);
        }
        if let MatchScope::Controller {
            delay_binding: true,
        } = scope
        {
            continue;
        }
        let available =
            volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available");
        let unclaimed = volume.spec.as_ref().is_none_or(|s| s.claim_ref.is_none());
        if !available || !unclaimed || !selector_matches(claim, volume) {
            continue;
        }
        if volume_class(volume) != class || !affinity_fits || !access_modes_fit(claim, volume) {
            continue;
        }
        let size = capacity_bytes(volume);
        if size >= requested && smallest.is_none_or(|(_, s)| size < s) {
            smallest = Some((volume, size));
        }
    }
    smallest.map(|(v, _)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(v: serde_json::Value) -> PersistentVolume {
        serde_json::from_value(v).expect("volume")
    }

    fn claim(v: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(v).expect("claim")
    }

    fn base_claim() -> serde_json::Value {
        json!({
            "metadata": {"name": "c", "namespace": "default", "uid": "u1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "manual"},
        })
    }

    fn available(name: &str, size: &str) -> serde_json::Value {
        json!({
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "storageClassName": "manual"},
            "status": {"phase": "Available"},
        })
    }

    const CONTROLLER: MatchScope<'static> = MatchScope::Controller {
        delay_binding: false,
    };

    #[test]
    fn a_too_small_volume_or_another_class_or_mode_does_not_match() {
        let c = claim(base_claim());
        let small = pv(available("small", "512Mi"));
        assert!(find_matching_volume(&c, [&small], &CONTROLLER).is_none());
        let mut other = available("other", "5Gi");
        other["spec"]["storageClassName"] = json!("fast");
        assert!(find_matching_volume(&c, [&pv(other)], &CONTROLLER).is_none());
        let mut block = available("block", "5Gi");
        block["spec"]["volumeMode"] = json!("Block");
        assert!(find_matching_volume(&c, [&pv(block)], &CONTROLLER).is_none());
        let mut rwx = base_claim();
        rwx["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        assert!(
            find_matching_volume(&claim(rwx), [&pv(available("a", "5Gi"))], &CONTROLLER).is_none()
        );
    }

    #[test]
    fn a_pre_bound_volume_wins_and_the_legacy_annotation_names_the_class() {
        let c = claim(base_claim());
        let mut pre = available("pre", "100Gi");
        pre["spec"]["claimRef"] = json!({"name": "c", "namespace": "default"});
        pre["status"]["phase"] = json!("Bound");
        let volumes = [pv(available("fits", "1Gi")), pv(pre)];
        let found = find_matching_volume(&c, volumes.iter(), &CONTROLLER);
        assert_eq!(found.and_then(|v| v.metadata.name.as_deref()), Some("pre"));

        let mut legacy = base_claim();
        legacy["spec"]["storageClassName"] = json!(null);
        legacy["metadata"]["annotations"] = json!({BETA_STORAGE_CLASS_ANNOTATION: "manual"});
        let mut legacy_pv = available("legacy", "1Gi");
        legacy_pv["spec"]["storageClassName"] = json!(null);
        legacy_pv["metadata"]["annotations"] = json!({BETA_STORAGE_CLASS_ANNOTATION: "manual"});
        assert!(find_matching_volume(&claim(legacy), [&pv(legacy_pv)], &CONTROLLER).is_some());
    }

    #[test]
    fn a_selector_and_delayed_binding_narrow_the_match() {
        let mut c = base_claim();
        c["spec"]["selector"] = json!({"matchLabels": {"tier": "gold"}});
        let mut gold = available("gold", "1Gi");
        gold["metadata"]["labels"] = json!({"tier": "gold"});
        let volumes = [pv(available("plain", "1Gi")), pv(gold)];
        let found = find_matching_volume(&claim(c), volumes.iter(), &CONTROLLER);
        assert_eq!(found.and_then(|v| v.metadata.name.as_deref()), Some("gold"));

        let delayed = MatchScope::Controller {
            delay_binding: true,
        };
        let plain = pv(available("plain", "1Gi"));
        assert!(find_matching_volume(&claim(base_claim()), [&plain], &delayed).is_none());
        let nowhere = |_: &PersistentVolume| false;
        let on_node = MatchScope::Node {
            affinity_fits: &nowhere,
        };
        assert!(find_matching_volume(&claim(base_claim()), [&plain], &on_node).is_none());
    }

    #[test]
    fn the_newest_default_class_wins() {
        let class = |name: &str, created: &str, default: bool| -> StorageClass {
            serde_json::from_value(json!({
                "metadata": {"name": name, "creationTimestamp": created, "annotations": {IS_DEFAULT_CLASS_ANNOTATION: default.to_string()}},
                "provisioner": "p",
            }))
            .expect("class")
        };
        let classes = [
            class("old", "2024-01-01T00:00:00Z", true),
            class("new", "2024-02-01T00:00:00Z", true),
            class("newest", "2024-03-01T00:00:00Z", false),
        ];
        assert_eq!(
            default_class(&classes).and_then(|c| c.metadata.name.as_deref()),
            Some("new")
        );
    }
}
