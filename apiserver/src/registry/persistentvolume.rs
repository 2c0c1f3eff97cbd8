//! PersistentVolumes: upstream's defaults (`Retain`, `Filesystem`, phase `Pending` until the
//! PV controller makes the volume `Available`), spec validation (capacity, access modes,
//! exactly one volume source, node affinity for `local`), and the fields fixed at creation.

use kybernetes_core::Clock;
use kybernetes_core::status::StatusCause;
use kybernetes_core::validation;
use serde_json::{Value, json};

use super::{
    Strategy, default_field, forbidden, immutable, invalid, not_supported, object_field, required,
    required_because,
};

/// The access modes of the API.
pub(crate) const ACCESS_MODES: [&str; 4] = [
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
/// The volume modes of the API.
pub(crate) const VOLUME_MODES: [&str; 2] = ["Block", "Filesystem"];
/// The reclaim policies of a volume.
const RECLAIM_POLICIES: [&str; 3] = ["Delete", "Recycle", "Retain"];
/// The fields of `PersistentVolumeSource` (upstream's inline `persistentvolumesource`).
const VOLUME_SOURCES: [&str; 22] = [
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

/// The strategy of v1 persistentvolumes.
#[derive(Clone, Copy, Debug, Default)]
pub struct PersistentVolumeStrategy;

impl Strategy for PersistentVolumeStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = object_field(obj, "spec") else {
            return;
        };
        default_field(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
        default_field(spec, "volumeMode", json!("Filesystem"));
    }

    fn initial_status(&self, obj: &mut Value, clock: &Clock) {
        obj["status"] = json!({
            "phase": "Pending",
            "lastPhaseTransitionTime": kybernetes_core::clock::format_time(clock.now()),
        });
    }

    fn validate(&self, obj: &Value) -> Vec<StatusCause> {
        let mut out = Vec::new();
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        validate_access_modes(spec, "spec.accessModes", &mut out);
        validate_capacity(spec, &mut out);
        validate_class_name(spec, "spec.storageClassName", &mut out);
        if let Some(p) = present(spec, "persistentVolumeReclaimPolicy")
            && !p.as_str().is_some_and(|p| RECLAIM_POLICIES.contains(&p))
        {
            out.push(not_supported(
                "spec.persistentVolumeReclaimPolicy",
                p,
                &RECLAIM_POLICIES,
            ));
        }
        validate_volume_mode(spec, "spec.volumeMode", &mut out);
        validate_source(spec, &mut out);
        out
    }

    fn validate_update(&self, obj: &Value, old: &Value) -> Vec<StatusCause> {
        let mut out = self.validate(obj);
        let (spec, old_spec) = (&obj["spec"], &old["spec"]);
        if source(spec) != source(old_spec) {
            out.push(forbidden(
                "spec.persistentvolumesource",
                "spec.persistentvolumesource is immutable after creation",
            ));
        }
        out.extend(immutable(
            "spec.volumeMode",
            spec.get("volumeMode"),
            old_spec.get("volumeMode"),
        ));
        if present(old_spec, "nodeAffinity").is_some() {
            out.extend(immutable(
                "spec.nodeAffinity",
                spec.get("nodeAffinity"),
                old_spec.get("nodeAffinity"),
            ));
        }
        out
    }
}

/// `spec[key]` unless absent or null.
fn present<'a>(spec: &'a Value, key: &str) -> Option<&'a Value> {
    spec.get(key).filter(|v| !v.is_null())
}

/// The volume sources set in `spec`, as (name, source).
fn source(spec: &Value) -> Vec<(&'static str, &Value)> {
    VOLUME_SOURCES
        .iter()
        .filter_map(|k| present(spec, k).map(|v| (*k, v)))
        .collect()
}

/// At least one access mode, each a known one (shared with claims).
pub(crate) fn validate_access_modes(spec: &Value, field: &str, out: &mut Vec<StatusCause>) {
    let modes = spec.get("accessModes").and_then(Value::as_array);
    match modes {
        None => out.push(required(field)),
        Some(m) if m.is_empty() => out.push(required(field)),
        Some(m) => {
            for mode in m {
                if !mode.as_str().is_some_and(|s| ACCESS_MODES.contains(&s)) {
                    out.push(not_supported(field, mode, &ACCESS_MODES));
                }
            }
        }
    }
}

/// `Block` or `Filesystem`, when set.
pub(crate) fn validate_volume_mode(spec: &Value, field: &str, out: &mut Vec<StatusCause>) {
    if let Some(m) = present(spec, "volumeMode")
        && !m.as_str().is_some_and(|s| VOLUME_MODES.contains(&s))
    {
        out.push(not_supported(field, m, &VOLUME_MODES));
    }
}

/// A class name, when set, is a DNS subdomain (shared with claims).
pub(crate) fn validate_class_name(spec: &Value, field: &str, out: &mut Vec<StatusCause>) {
    if let Some(name) = present(spec, "storageClassName").and_then(Value::as_str)
        && !name.is_empty()
    {
        for e in validation::is_dns1123_subdomain(name) {
            out.push(invalid(field, format!("Invalid value: {name:?}: {e}")));
        }
    }
}

/// `capacity` holds exactly `storage`, a valid quantity.
fn validate_capacity(spec: &Value, out: &mut Vec<StatusCause>) {
    let capacity = spec.get("capacity").and_then(Value::as_object);
    let Some(capacity) = capacity.filter(|c| !c.is_empty()) else {
        out.push(required("spec.capacity"));
        return;
    };
    if !capacity.contains_key("storage") || capacity.len() > 1 {
        out.push(not_supported(
            "spec.capacity",
            &Value::Object(capacity.clone()),
            &["storage"],
        ));
    }
    if let Some(q) = capacity.get("storage") {
        let parsed = q.as_str().and_then(kybernetes_core::quantity::parse_milli);
        if parsed.is_none_or(|m| m < 0) {
            out.push(invalid(
                "spec.capacity[storage]",
                format!("Invalid value: {q}: must be a valid resource quantity"),
            ));
        }
    }
}

/// Exactly one volume source; `hostPath` and `local` need a path, `local` node affinity.
fn validate_source(spec: &Value, out: &mut Vec<StatusCause>) {
    let sources = source(spec);
    match sources.as_slice() {
        [] => out.push(required_because("spec", "must specify a volume type")),
        [_] => {}
        [_, rest @ ..] => {
            for (name, _) in rest {
                out.push(forbidden(
                    &format!("spec.{name}"),
                    "may not specify more than 1 volume type",
                ));
            }
        }
    }
    for (name, src) in &sources {
        if matches!(*name, "hostPath" | "local")
            && src
                .get("path")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            out.push(required(&format!("spec.{name}.path")));
        }
        if *name == "local" && present(spec, "nodeAffinity").is_none() {
            out.push(required_because(
                "spec.nodeAffinity",
                "Local volume requires node affinity",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(spec: Value) -> Vec<String> {
        let mut pv = json!({"metadata": {"name": "pv"}, "spec": spec});
        PersistentVolumeStrategy.default(&mut pv);
        PersistentVolumeStrategy
            .validate(&pv)
            .into_iter()
            .map(|c| c.field)
            .collect()
    }

    #[test]
    fn a_volume_needs_capacity_access_modes_and_one_source() {
        let ok = json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/data"}});
        assert!(fields(ok).is_empty());
        assert_eq!(
            fields(json!({"hostPath": {"path": "/d"}})),
            ["spec.accessModes", "spec.capacity"]
        );
        assert_eq!(
            fields(json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]})),
            ["spec"]
        );
        assert_eq!(
            fields(
                json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "local": {"path": "/d"}})
            ),
            ["spec.nodeAffinity"]
        );
        assert_eq!(
            fields(
                json!({"capacity": {"storage": "1Gi", "cpu": "1"}, "accessModes": ["Sometimes"], "hostPath": {"path": "/d"}, "persistentVolumeReclaimPolicy": "Keep"})
            ),
            [
                "spec.accessModes",
                "spec.capacity",
                "spec.persistentVolumeReclaimPolicy"
            ]
        );
    }

    #[test]
    fn the_source_and_mode_are_fixed_at_creation() {
        let mut old = json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/a"}}});
        PersistentVolumeStrategy.default(&mut old);
        let mut new = old.clone();
        new["spec"]["claimRef"] = json!({"name": "c", "namespace": "default"});
        assert!(
            PersistentVolumeStrategy
                .validate_update(&new, &old)
                .is_empty()
        );
        new["spec"]["hostPath"]["path"] = json!("/b");
        new["spec"]["volumeMode"] = json!("Block");
        let causes: Vec<String> = PersistentVolumeStrategy
            .validate_update(&new, &old)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(causes, ["spec.persistentvolumesource", "spec.volumeMode"]);
    }
}
