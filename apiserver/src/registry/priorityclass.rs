//! PriorityClasses (`scheduling.k8s.io/v1`): upstream's default (`preemptionPolicy:
//! PreemptLowerPriority`), validation (user values at most one billion, the `system-` prefix
//! reserved for the built-in classes) and immutable `value` and `preemptionPolicy`. That at
//! most one class is the global default is checked by the `Priority` admission plugin, which
//! sees the other classes.

use kybernetes_core::status::StatusCause;
use serde_json::{Value, json};

use super::{Strategy, default_field, forbidden, immutable, not_supported};

/// The highest value a user-defined class may have (upstream's `HighestUserDefinablePriority`).
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;
/// Names with this prefix are reserved for the built-in classes.
pub const SYSTEM_PRIORITY_CLASS_PREFIX: &str = "system-";
/// The built-in classes (name, value, description), created at start as upstream's
/// `scheduling/bootstrap-system-priority-classes` post-start hook does.
pub const SYSTEM_PRIORITY_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];
/// The values of `preemptionPolicy`.
const PREEMPTION_POLICIES: [&str; 2] = ["Never", "PreemptLowerPriority"];

/// The built-in class objects.
pub fn system_priority_classes() -> Vec<Value> {
    SYSTEM_PRIORITY_CLASSES
        .iter()
        .map(|(name, value, description)| {
            json!({
                "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name},
                "value": value, "description": description,
            })
        })
        .collect()
}

/// Upstream's `IsKnownSystemPriorityClass`: `Err` says what differs from the built-in class.
fn known_system_class(name: &str, value: i64, global_default: bool) -> Result<(), String> {
    let Some((_, want, _)) = SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _, _)| *n == name) else {
        return Err(format!("{name} is not a known system priority class"));
    };
    if *want != value {
        return Err(format!("value of {name} PriorityClass must be {want}"));
    }
    if global_default {
        return Err(format!(
            "globalDefault of {name} PriorityClass must be false"
        ));
    }
    Ok(())
}

/// The strategy of scheduling.k8s.io/v1 priorityclasses.
#[derive(Clone, Copy, Debug, Default)]
pub struct PriorityClassStrategy;

impl Strategy for PriorityClassStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            default_field(m, "preemptionPolicy", json!("PreemptLowerPriority"));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<StatusCause> {
        let mut out = Vec::new();
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let value = obj.get("value").and_then(Value::as_i64).unwrap_or(0);
        let global_default = obj
            .get("globalDefault")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if name.starts_with(SYSTEM_PRIORITY_CLASS_PREFIX) {
            if let Err(e) = known_system_class(name, value, global_default) {
                out.push(forbidden(
                    "metadata.name",
                    format!(
                        "priority class names with '{SYSTEM_PRIORITY_CLASS_PREFIX}' prefix are reserved for system use only. error: {e}"
                    ),
                ));
            }
        } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
            out.push(forbidden(
                "value",
                format!(
                    "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"
                ),
            ));
        }
        if let Some(p) = obj.get("preemptionPolicy").filter(|v| !v.is_null())
            && !p.as_str().is_some_and(|p| PREEMPTION_POLICIES.contains(&p))
        {
            out.push(not_supported("preemptionPolicy", p, &PREEMPTION_POLICIES));
        }
        out
    }

    fn validate_update(&self, obj: &Value, old: &Value) -> Vec<StatusCause> {
        let mut out = self.validate(obj);
        if obj.get("value") != old.get("value") {
            out.push(forbidden("value", "may not be changed in an update."));
        }
        out.extend(immutable(
            "preemptionPolicy",
            obj.get("preemptionPolicy"),
            old.get("preemptionPolicy"),
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causes(v: Value) -> Vec<String> {
        let mut v = v;
        PriorityClassStrategy.default(&mut v);
        PriorityClassStrategy
            .validate(&v)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn user_classes_are_capped_and_the_system_prefix_is_reserved() {
        assert!(causes(json!({"metadata": {"name": "high"}, "value": 1_000_000_000})).is_empty());
        assert_eq!(
            causes(json!({"metadata": {"name": "higher"}, "value": 1_000_000_001})),
            ["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
        );
        assert_eq!(
            causes(json!({"metadata": {"name": "system-mine"}, "value": 5})),
            [
                "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"
            ]
        );
        for builtin in system_priority_classes() {
            assert!(causes(builtin).is_empty());
        }
        assert_eq!(
            causes(json!({"metadata": {"name": "p"}, "preemptionPolicy": "Sometimes"})),
            [
                "preemptionPolicy: Unsupported value: \"Sometimes\": supported values: \"Never\", \"PreemptLowerPriority\""
            ]
        );
    }

    #[test]
    fn value_and_preemption_policy_are_immutable() {
        let old = json!({"metadata": {"name": "p"}, "value": 5, "preemptionPolicy": "Never"});
        let new = json!({"metadata": {"name": "p"}, "value": 6, "preemptionPolicy": "PreemptLowerPriority"});
        let fields: Vec<String> = PriorityClassStrategy
            .validate_update(&new, &old)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, ["value", "preemptionPolicy"]);
    }
}
