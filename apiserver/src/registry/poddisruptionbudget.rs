//! PodDisruptionBudgets (`policy/v1`): upstream's spec validation. The server-owned parts
//! (status reset on create, `generation` bumped on spec changes, status kept on updates of the
//! main resource) come from the generic rules, since the kind has a status subresource and a
//! generation.

use kybernetes_core::Clock;
use kybernetes_core::selector::LabelSelector;
use kybernetes_core::status::StatusCause;
use serde_json::{Value, json};

use super::deployment::int_or_percent;
use super::{Strategy, invalid};

/// The values of `spec.unhealthyPodEvictionPolicy`.
const EVICTION_POLICIES: [&str; 2] = ["AlwaysAllow", "IfHealthyBudget"];

/// The strategy of policy/v1 poddisruptionbudgets.
#[derive(Clone, Copy, Debug, Default)]
pub struct PodDisruptionBudgetStrategy;

impl Strategy for PodDisruptionBudgetStrategy {
    fn initial_status(&self, obj: &mut Value, _clock: &Clock) {
        // Upstream starts every budget at zero allowed disruptions until the disruption
        // controller has computed it.
        obj["status"] = json!({
            "disruptionsAllowed": 0,
            "currentHealthy": 0,
            "desiredHealthy": 0,
            "expectedPods": 0,
        });
    }

    fn validate(&self, obj: &Value) -> Vec<StatusCause> {
        let mut out = Vec::new();
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let min = spec.get("minAvailable").filter(|v| !v.is_null());
        let max = spec.get("maxUnavailable").filter(|v| !v.is_null());
        if min.is_some() && max.is_some() {
            out.push(invalid(
                "spec",
                "Invalid value: minAvailable and maxUnavailable cannot be both set",
            ));
        }
        for (name, v) in [("minAvailable", min), ("maxUnavailable", max)] {
            if let Some(Err(e)) = v.map(int_or_percent) {
                out.push(invalid(
                    &format!("spec.{name}"),
                    format!("Invalid value: {e}"),
                ));
            }
        }
        if let Some(sel) = spec.get("selector")
            && let Err(e) = LabelSelector::from_json(sel)
        {
            out.push(invalid("spec.selector", format!("Invalid value: {e}")));
        }
        if let Some(p) = spec
            .get("unhealthyPodEvictionPolicy")
            .filter(|v| !v.is_null())
        {
            let supported = p.as_str().is_some_and(|p| EVICTION_POLICIES.contains(&p));
            if !supported {
                out.push(StatusCause {
                    reason: "FieldValueNotSupported".into(),
                    message: format!(
                        "Unsupported value: {p}: supported values: \"AlwaysAllow\", \"IfHealthyBudget\""
                    ),
                    field: "spec.unhealthyPodEvictionPolicy".into(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causes(spec: Value) -> Vec<String> {
        PodDisruptionBudgetStrategy
            .validate(&json!({ "spec": spec }))
            .into_iter()
            .map(|c| c.field)
            .collect()
    }

    #[test]
    fn a_budget_takes_one_int_or_percent_and_a_known_eviction_policy() {
        assert!(
            causes(json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}))
                .is_empty()
        );
        assert!(
            causes(json!({"maxUnavailable": "50%", "unhealthyPodEvictionPolicy": "AlwaysAllow"}))
                .is_empty()
        );
        assert_eq!(
            causes(json!({"minAvailable": 1, "maxUnavailable": 1})),
            ["spec"]
        );
        assert_eq!(causes(json!({"minAvailable": -1})), ["spec.minAvailable"]);
        assert_eq!(
            causes(json!({"maxUnavailable": "150%"})),
            ["spec.maxUnavailable"]
        );
        assert_eq!(
            causes(json!({"maxUnavailable": "half"})),
            ["spec.maxUnavailable"]
        );
        assert_eq!(
            causes(json!({"unhealthyPodEvictionPolicy": "Sometimes"})),
            ["spec.unhealthyPodEvictionPolicy"]
        );
        assert_eq!(
            causes(json!({"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}})),
            ["spec.selector"]
        );
    }
}
