//! StorageClasses (`storage.k8s.io/v1`): upstream's defaults (`reclaimPolicy: Delete`,
//! `volumeBindingMode: Immediate`), validation, and the fields that cannot change once the
//! class exists (provisioner, parameters, reclaim policy, binding mode).

use kybernetes_core::status::StatusCause;
use kybernetes_core::validation;
use serde_json::{Value, json};

use super::{Strategy, default_field, forbidden, immutable, invalid, not_supported, required};

/// The reclaim policies a class may give its volumes.
const RECLAIM_POLICIES: [&str; 2] = ["Delete", "Retain"];
/// When a class's claims are bound.
const BINDING_MODES: [&str; 2] = ["Immediate", "WaitForFirstConsumer"];

/// The strategy of storage.k8s.io/v1 storageclasses.
#[derive(Clone, Copy, Debug, Default)]
pub struct StorageClassStrategy;

impl Strategy for StorageClassStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(m) = obj.as_object_mut() else {
            return;
        };
        default_field(m, "reclaimPolicy", json!("Delete"));
        default_field(m, "volumeBindingMode", json!("Immediate"));
    }

    fn validate(&self, obj: &Value) -> Vec<StatusCause> {
        let mut out = Vec::new();
        match obj.get("provisioner").and_then(Value::as_str) {
            None | Some("") => out.push(required("provisioner")),
            Some(p) => {
                for e in validation::is_qualified_name(&p.to_lowercase()) {
                    out.push(invalid("provisioner", format!("Invalid value: {p:?}: {e}")));
                }
            }
        }
        if let Some(p) = obj.get("reclaimPolicy").filter(|v| !v.is_null())
            && !p.as_str().is_some_and(|p| RECLAIM_POLICIES.contains(&p))
        {
            out.push(not_supported("reclaimPolicy", p, &RECLAIM_POLICIES));
        }
        match obj.get("volumeBindingMode").filter(|v| !v.is_null()) {
            None => out.push(required("volumeBindingMode")),
            Some(m) if !m.as_str().is_some_and(|m| BINDING_MODES.contains(&m)) => {
                out.push(not_supported("volumeBindingMode", m, &BINDING_MODES));
            }
            Some(_) => {}
        }
        out
    }

    fn validate_update(&self, obj: &Value, old: &Value) -> Vec<StatusCause> {
        let mut out = self.validate(obj);
        let null = Value::Null;
        let field = |v: &'_ Value, k: &str| v.get(k).cloned().unwrap_or(Value::Null);
        // An absent map and an empty one are the same to upstream's DeepEqual of Go maps
        // only when both are nil; treat `{}` and absent alike, as they decode the same.
        let params = |v: &Value| match v.get("parameters") {
            Some(Value::Object(m)) if !m.is_empty() => Value::Object(m.clone()),
            _ => null.clone(),
        };
        if params(obj) != params(old) {
            out.push(forbidden(
                "parameters",
                "updates to parameters are forbidden.",
            ));
        }
        if field(obj, "provisioner") != field(old, "provisioner") {
            out.push(forbidden(
                "provisioner",
                "updates to provisioner are forbidden.",
            ));
        }
        if field(obj, "reclaimPolicy") != field(old, "reclaimPolicy") {
            out.push(forbidden(
                "reclaimPolicy",
                "updates to reclaimPolicy are forbidden.",
            ));
        }
        out.extend(immutable(
            "volumeBindingMode",
            obj.get("volumeBindingMode"),
            old.get("volumeBindingMode"),
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaulted(v: Value) -> Value {
        let mut v = v;
        StorageClassStrategy.default(&mut v);
        v
    }

    #[test]
    fn a_class_defaults_to_delete_and_immediate_and_needs_a_provisioner() {
        let sc =
            defaulted(json!({"metadata": {"name": "fast"}, "provisioner": "example.com/disk"}));
        assert_eq!(sc["reclaimPolicy"], "Delete");
        assert_eq!(sc["volumeBindingMode"], "Immediate");
        assert!(StorageClassStrategy.validate(&sc).is_empty());
        let fields = |v: Value| -> Vec<String> {
            StorageClassStrategy
                .validate(&defaulted(v))
                .into_iter()
                .map(|c| c.field)
                .collect()
        };
        assert_eq!(fields(json!({})), ["provisioner"]);
        assert_eq!(
            fields(
                json!({"provisioner": "p", "reclaimPolicy": "Recycle", "volumeBindingMode": "Later"})
            ),
            ["reclaimPolicy", "volumeBindingMode"]
        );
    }

    #[test]
    fn provisioner_parameters_policy_and_mode_are_immutable() {
        let old = defaulted(json!({"provisioner": "p", "parameters": {"a": "1"}}));
        let mut new = old.clone();
        new["metadata"] = json!({"annotations": {"x": "y"}});
        assert!(StorageClassStrategy.validate_update(&new, &old).is_empty());
        new["provisioner"] = json!("q");
        new["parameters"] = json!({"a": "2"});
        new["reclaimPolicy"] = json!("Retain");
        new["volumeBindingMode"] = json!("WaitForFirstConsumer");
        let causes = StorageClassStrategy.validate_update(&new, &old);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "parameters",
                "provisioner",
                "reclaimPolicy",
                "volumeBindingMode"
            ]
        );
        assert_eq!(
            causes[0].message,
            "Forbidden: updates to parameters are forbidden."
        );
        assert!(
            causes[3].message.ends_with("field is immutable"),
            "{}",
            causes[3].message
        );
    }
}
