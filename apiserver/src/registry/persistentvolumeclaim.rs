//! PersistentVolumeClaims: the `Filesystem` default, phase `Pending` until bound, upstream's
//! validation (access modes and a positive storage request), and its update rule: the spec is
//! fixed at creation except `volumeName` (set once, by binding), a class set on a claim that
//! had none (retroactive default class, or the legacy annotation's value), and a larger
//! storage request on a bound claim.

use kybernetes_core::Clock;
use kybernetes_core::persistent_volume::BETA_STORAGE_CLASS_ANNOTATION;
use kybernetes_core::quantity::parse_milli;
use kybernetes_core::selector::LabelSelector;
use kybernetes_core::status::StatusCause;
use serde_json::{Value, json};

use super::persistentvolume::{validate_access_modes, validate_class_name, validate_volume_mode};
use super::{
    Strategy, default_field, forbidden, invalid, object_field, required, required_because,
};

/// The strategy of v1 persistentvolumeclaims.
#[derive(Clone, Copy, Debug, Default)]
pub struct PersistentVolumeClaimStrategy;

impl Strategy for PersistentVolumeClaimStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = object_field(obj, "spec") else {
            return;
        };
        default_field(spec, "volumeMode", json!("Filesystem"));
    }

    fn initial_status(&self, obj: &mut Value, _clock: &Clock) {
        obj["status"] = json!({"phase": "Pending"});
    }

    fn validate(&self, obj: &Value) -> Vec<StatusCause> {
        let mut out = Vec::new();
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let modes = spec.get("accessModes").and_then(Value::as_array);
        if modes.is_none_or(Vec::is_empty) {
            out.push(required_because(
                "spec.accessModes",
                "at least 1 access mode is required",
            ));
        } else {
            validate_access_modes(spec, "spec.accessModes", &mut out);
        }
        match spec.pointer("/resources/requests/storage") {
            None | Some(Value::Null) => out.push(required("spec.resources[storage]")),
            Some(q) => {
                if q.as_str().and_then(parse_milli).is_none_or(|m| m <= 0) {
                    out.push(invalid(
                        "spec.resources[storage]",
                        format!("Invalid value: {q}: must be greater than zero"),
                    ));
                }
            }
        }
        validate_class_name(spec, "spec.storageClassName", &mut out);
        validate_volume_mode(spec, "spec.volumeMode", &mut out);
        if let Some(sel) = spec.get("selector").filter(|v| !v.is_null())
            && let Err(e) = LabelSelector::from_json(sel)
        {
            out.push(invalid("spec.selector", format!("Invalid value: {e}")));
        }
        out
    }

    fn validate_update(&self, obj: &Value, old: &Value) -> Vec<StatusCause> {
        let mut out = self.validate(obj);
        let (mut new_spec, mut old_spec) = (obj["spec"].clone(), old["spec"].clone());
        // Binding sets volumeName once.
        if old_spec
            .get("volumeName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            old_spec["volumeName"] = new_spec.get("volumeName").cloned().unwrap_or(Value::Null);
        }
        if class_may_be_set(obj, old) {
            new_spec["storageClassName"] = old_spec
                .get("storageClassName")
                .cloned()
                .unwrap_or(Value::Null);
        }
        let bound = old.pointer("/status/phase").and_then(Value::as_str) == Some("Bound");
        if bound {
            new_spec["resources"]["requests"]["storage"] = old_spec
                .pointer("/resources/requests/storage")
                .cloned()
                .unwrap_or(Value::Null);
        }
        if !same_spec(&new_spec, &old_spec) {
            out.push(forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
        let size = |v: &Value| {
            v.pointer("/spec/resources/requests/storage")
                .and_then(Value::as_str)
                .and_then(parse_milli)
        };
        if let (Some(new), Some(old)) = (size(obj), size(old))
            && new < old
        {
            out.push(forbidden(
                "spec.resources.requests.storage",
                "field can not be less than previous value",
            ));
        }
        let class_annotation = |v: &Value| {
            v.pointer("/metadata/annotations")
                .and_then(|a| a.get(BETA_STORAGE_CLASS_ANNOTATION))
                .cloned()
        };
        if class_annotation(obj) != class_annotation(old) {
            out.push(invalid(
                &format!("metadata.annotations[{BETA_STORAGE_CLASS_ANNOTATION}]"),
                "Invalid value: field is immutable",
            ));
        }
        out
    }
}

/// Whether the update may set `spec.storageClassName` (upstream's
/// `validateStorageClassUpgradeFromAnnotation` and `...FromNil`): the old claim had none, and
/// the new one is the legacy annotation's value or, without the annotation, any class.
fn class_may_be_set(obj: &Value, old: &Value) -> bool {
    let old_class = old
        .pointer("/spec/storageClassName")
        .filter(|v| !v.is_null());
    let new_class = obj
        .pointer("/spec/storageClassName")
        .and_then(Value::as_str);
    if old_class.is_some() || new_class.is_none_or(str::is_empty) {
        return false;
    }
    match old
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(BETA_STORAGE_CLASS_ANNOTATION))
        .and_then(Value::as_str)
    {
        Some(annotated) => Some(annotated) == new_class,
        None => true,
    }
}

/// Spec equality with storage quantities compared by value (`1Gi` is `1073741824`) and
/// absent fields equal to null.
fn same_spec(a: &Value, b: &Value) -> bool {
    fn normalize(v: &Value) -> Value {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.retain(|_, x| !x.is_null());
        }
        for path in ["/resources/requests/storage", "/resources/limits/storage"] {
            if let Some(q) = v.pointer_mut(path)
                && let Some(milli) = q.as_str().and_then(parse_milli)
            {
                *q = json!(milli.to_string());
            }
        }
        v
    }
    normalize(a) == normalize(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(spec: Value) -> Value {
        let mut c = json!({"metadata": {"name": "c", "namespace": "default"}, "spec": spec});
        PersistentVolumeClaimStrategy.default(&mut c);
        c
    }

    fn fields(causes: Vec<StatusCause>) -> Vec<String> {
        causes.into_iter().map(|c| c.field).collect()
    }

    fn ok_spec() -> Value {
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}})
    }

    #[test]
    fn a_claim_needs_access_modes_and_a_positive_request() {
        assert!(
            PersistentVolumeClaimStrategy
                .validate(&claim(ok_spec()))
                .is_empty()
        );
        let causes = PersistentVolumeClaimStrategy.validate(&claim(json!({})));
        assert_eq!(
            causes[0].message,
            "Required value: at least 1 access mode is required"
        );
        assert_eq!(
            fields(causes),
            ["spec.accessModes", "spec.resources[storage]"]
        );
        let zero =
            json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "0"}}});
        assert_eq!(
            fields(PersistentVolumeClaimStrategy.validate(&claim(zero))),
            ["spec.resources[storage]"]
        );
    }

    #[test]
    fn binding_default_class_and_growth_are_the_only_spec_changes() {
        let mut old = claim(ok_spec());
        let mut new = old.clone();
        new["spec"]["volumeName"] = json!("pv-1");
        new["spec"]["storageClassName"] = json!("local-path");
        assert!(
            PersistentVolumeClaimStrategy
                .validate_update(&new, &old)
                .is_empty()
        );

        let mut grown = new.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert_eq!(
            fields(PersistentVolumeClaimStrategy.validate_update(&grown, &new)),
            ["spec"],
            "an unbound claim cannot grow"
        );
        new["status"] = json!({"phase": "Bound"});
        assert!(
            PersistentVolumeClaimStrategy
                .validate_update(&grown, &new)
                .is_empty()
        );
        let mut shrunk = new.clone();
        shrunk["spec"]["resources"]["requests"]["storage"] = json!("512Mi");
        assert_eq!(
            fields(PersistentVolumeClaimStrategy.validate_update(&shrunk, &new)),
            ["spec.resources.requests.storage"]
        );

        old["spec"]["volumeName"] = json!("pv-1");
        let mut rebound = old.clone();
        rebound["spec"]["volumeName"] = json!("pv-2");
        rebound["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        let causes = PersistentVolumeClaimStrategy.validate_update(&rebound, &old);
        assert_eq!(fields(causes), ["spec"]);
    }
}
