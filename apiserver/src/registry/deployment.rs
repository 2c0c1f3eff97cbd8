//! Deployments: upstream's defaults (replicas, revision history, progress deadline, the
//! RollingUpdate strategy at 25%/25%) and the rolling-update rules.

use kybernetes_core::status::StatusCause;
use serde_json::{Value, json};

use super::pod_template::{default_replicated, validate_workload};
use super::{Strategy, default_field, invalid, object_field};

/// The strategy of apps/v1 deployments.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeploymentStrategy;

impl Strategy for DeploymentStrategy {
    fn default(&self, obj: &mut Value) {
        default_replicated(obj);
        let Some(spec) = object_field(obj, "spec") else {
            return;
        };
        default_field(spec, "revisionHistoryLimit", json!(10));
        default_field(spec, "progressDeadlineSeconds", json!(600));
        let strategy = spec.entry("strategy").or_insert_with(|| json!({}));
        if let Some(s) = strategy.as_object_mut() {
            default_field(s, "type", json!("RollingUpdate"));
            if s.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                let ru = s.entry("rollingUpdate").or_insert_with(|| json!({}));
                if let Some(ru) = ru.as_object_mut() {
                    default_field(ru, "maxUnavailable", json!("25%"));
                    default_field(ru, "maxSurge", json!("25%"));
                }
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<StatusCause> {
        let mut out = Vec::new();
        validate_workload(obj, &mut out);
        validate_rolling_update(obj, &mut out);
        out
    }
}

/// An int-or-string: a non-negative integer or a percentage (upstream's
/// `ValidatePositiveIntOrPercent` with `IsNotMoreThan100Percent`); the value and whether it is a
/// percentage.
pub(crate) fn int_or_percent(v: &Value) -> Result<(i64, bool), String> {
    match v {
        Value::Number(n) => n.as_i64().filter(|n| *n >= 0).map(|n| (n, false)).ok_or_else(|| format!("{n}: must be greater than or equal to 0")),
        Value::String(s) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .filter(|p| (0..=100).contains(p))
            .map(|p| (p, true))
            .ok_or_else(|| format!("{s:?}: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%')")),
        other => Err(format!("{other}: must be an integer or percentage")),
    }
}

fn validate_rolling_update(obj: &Value, out: &mut Vec<StatusCause>) {
    let Some(ru) = obj.pointer("/spec/strategy/rollingUpdate") else {
        return;
    };
    let field = |f: &str| format!("spec.strategy.rollingUpdate.{f}");
    let surge = ru.get("maxSurge").map(int_or_percent);
    let unavailable = ru.get("maxUnavailable").map(int_or_percent);
    for (name, v) in [("maxSurge", &surge), ("maxUnavailable", &unavailable)] {
        if let Some(Err(e)) = v {
            out.push(invalid(&field(name), format!("Invalid value: {e}")));
        }
    }
    if let (Some(Ok((0, _))), Some(Ok((0, _)))) = (&surge, &unavailable) {
        out.push(invalid(
            &field("maxUnavailable"),
            "Invalid value: 0: may not be 0 when `maxSurge` is 0",
        ));
    }
    if let Some(Ok((p, true))) = &unavailable
        && *p > 100
    {
        out.push(invalid(
            &field("maxUnavailable"),
            "Invalid value: must not be greater than 100%",
        ));
    }
    if obj.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate") {
        out.push(StatusCause {
            reason: "FieldValueForbidden".into(),
            message: "Forbidden: may not be specified when strategy `type` is 'Recreate'".into(),
            field: "spec.strategy.rollingUpdate".into(),
        });
    }
}
