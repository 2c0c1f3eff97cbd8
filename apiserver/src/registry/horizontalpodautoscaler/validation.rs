//! Upstream's validation of an autoscaling/v2 HorizontalPodAutoscaler
//! (`pkg/apis/autoscaling/validation`), with its field paths and messages. A v1 object is
//! converted first, as upstream validates the internal form.

use kybernetes_core::quantity::parse_milli;
use kybernetes_core::status::StatusCause;
use kybernetes_core::validation::{is_dns1123_label, is_valid_path_segment_name};
use serde_json::Value;

use crate::registry::{invalid, required};

/// The longest stabilization window upstream allows (one hour).
pub const MAX_STABILIZATION_WINDOW_SECONDS: i64 = 3600;
/// The longest scaling-policy period upstream allows (30 minutes).
pub const MAX_PERIOD_SECONDS: i64 = 1800;

const METRIC_SOURCE_TYPES: [&str; 5] = [
    "ContainerResource",
    "External",
    "Object",
    "Pods",
    "Resource",
];

fn forbidden(field: &str, message: &str) -> StatusCause {
    StatusCause {
        reason: "FieldValueForbidden".into(),
        message: format!("Forbidden: {message}"),
        field: field.into(),
    }
}

fn required_with(field: &str, message: &str) -> StatusCause {
    StatusCause {
        message: format!("Required value: {message}"),
        ..required(field)
    }
}

fn not_supported(field: &str, value: &Value, supported: &[&str]) -> StatusCause {
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    StatusCause {
        reason: "FieldValueNotSupported".into(),
        message: format!(
            "Unsupported value: {}: supported values: {}",
            go_value(value),
            list.join(", ")
        ),
        field: field.into(),
    }
}

/// A value as upstream's field errors print it: strings quoted, numbers bare.
fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "\"\"".into(),
        other => other.to_string(),
    }
}

fn int(v: Option<&Value>) -> Option<i64> {
    v.filter(|v| !v.is_null()).and_then(Value::as_i64)
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The causes of a v2 object's spec (and status counts).
pub fn validate(obj: &Value) -> Vec<StatusCause> {
    let mut out = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let min = int(spec.get("minReplicas"));
    let max = int(spec.get("maxReplicas")).unwrap_or(0);
    if let Some(m) = min
        && m < 1
    {
        // Scale to zero is the alpha HPAScaleToZero feature, which is off as upstream.
        out.push(invalid(
            "spec.minReplicas",
            format!("Invalid value: {m}: must be greater than or equal to 1"),
        ));
    }
    if max < 1 {
        out.push(invalid(
            "spec.maxReplicas",
            format!("Invalid value: {max}: must be greater than 0"),
        ));
    }
    if let Some(m) = min
        && max < m
    {
        out.push(invalid(
            "spec.maxReplicas",
            format!("Invalid value: {max}: must be greater than or equal to `minReplicas`"),
        ));
    }
    let target = spec.get("scaleTargetRef").unwrap_or(&Value::Null);
    validate_object_reference(target, "spec.scaleTargetRef", &mut out);
    for (i, m) in spec
        .get("metrics")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        validate_metric(m, &format!("spec.metrics[{i}]"), &mut out);
    }
    if let Some(b) = spec.get("behavior").filter(|b| !b.is_null()) {
        for dir in ["scaleUp", "scaleDown"] {
            if let Some(rules) = b.get(dir).filter(|r| !r.is_null()) {
                validate_rules(rules, &format!("spec.behavior.{dir}"), &mut out);
            }
        }
    }
    for f in ["currentReplicas", "desiredReplicas"] {
        if let Some(n) = int(obj.pointer(&format!("/status/{f}")))
            && n < 0
        {
            out.push(invalid(
                &format!("status.{f}"),
                format!("Invalid value: {n}: must be greater than or equal to 0"),
            ));
        }
    }
    out
}

/// Upstream's `ValidateCrossVersionObjectReference`.
fn validate_object_reference(r: &Value, path: &str, out: &mut Vec<StatusCause>) {
    for key in ["kind", "name"] {
        let field = format!("{path}.{key}");
        let v = text(r, key);
        if v.is_empty() {
            out.push(required(&field));
            continue;
        }
        for msg in is_valid_path_segment_name(v) {
            out.push(invalid(&field, format!("Invalid value: {v:?}: {msg}")));
        }
    }
}

fn validate_metric(m: &Value, path: &str, out: &mut Vec<StatusCause>) {
    let t = text(m, "type");
    if t.is_empty() {
        out.push(required_with(
            &format!("{path}.type"),
            "must specify a metric source type",
        ));
    }
    let sources = [
        ("Object", "object"),
        ("Pods", "pods"),
        ("Resource", "resource"),
        ("ContainerResource", "containerResource"),
        ("External", "external"),
    ];
    let present: Vec<&str> = sources
        .iter()
        .map(|(_, key)| *key)
        .filter(|key| m.get(*key).is_some_and(|v| !v.is_null()))
        .collect();
    // Like upstream, only the first source present is validated in depth.
    if let Some(first) = present.first() {
        let src = &m[*first];
        let p = format!("{path}.{first}");
        match *first {
            "object" => validate_object_source(src, &p, out),
            "pods" => validate_pods_source(src, &p, out),
            "resource" => validate_resource_source(src, &p, false, out),
            "containerResource" => validate_resource_source(src, &p, true, out),
            _ => validate_external_source(src, &p, out),
        }
    }
    let expected = sources.iter().find(|(ty, _)| *ty == t).map(|(_, key)| *key);
    match expected {
        Some(key) if !present.contains(&key) => out.push(required_with(
            &format!("{path}.{key}"),
            "must populate information for the given metric source",
        )),
        Some(_) => {}
        None if !t.is_empty() => out.push(not_supported(
            &format!("{path}.type"),
            &m["type"],
            &METRIC_SOURCE_TYPES,
        )),
        None => {}
    }
    if present.len() != 1 {
        for key in present.iter().filter(|k| Some(**k) != expected) {
            out.push(forbidden(
                &format!("{path}.{key}"),
                "must populate the given metric source only",
            ));
        }
    }
}

/// Upstream's `validateMetricTarget`.
fn validate_target(t: &Value, path: &str, out: &mut Vec<StatusCause>) {
    let ty = text(t, "type");
    if ty.is_empty() {
        out.push(required_with(
            &format!("{path}.type"),
            "must specify a metric target type",
        ));
    }
    if !["Utilization", "Value", "AverageValue"].contains(&ty) {
        out.push(invalid(
            &format!("{path}.type"),
            format!("Invalid value: {ty:?}: must be either Utilization, Value, or AverageValue"),
        ));
    }
    for key in ["value", "averageValue"] {
        if let Some(q) = t.get(key).filter(|v| !v.is_null()) {
            let positive = quantity(q).is_some_and(|m| m > 0);
            if !positive {
                out.push(invalid(
                    &format!("{path}.{key}"),
                    format!("Invalid value: {}: must be positive", go_value(q)),
                ));
            }
        }
    }
    if let Some(u) = int(t.get("averageUtilization"))
        && u < 1
    {
        out.push(invalid(
            &format!("{path}.averageUtilization"),
            format!("Invalid value: {u}: must be greater than 0"),
        ));
    }
}

/// A quantity (a string or a bare number) in thousandths.
pub fn quantity(v: &Value) -> Option<i128> {
    match v {
        Value::String(s) => parse_milli(s),
        Value::Number(n) => parse_milli(&n.to_string()),
        _ => None,
    }
}

fn has(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(|v| !v.is_null())
}

fn validate_resource_source(src: &Value, path: &str, container: bool, out: &mut Vec<StatusCause>) {
    if text(src, "name").is_empty() {
        out.push(required_with(
            &format!("{path}.name"),
            "must specify a resource name",
        ));
    }
    if container {
        let c = text(src, "container");
        if c.is_empty() {
            out.push(required_with(
                &format!("{path}.container"),
                "must specify a container",
            ));
        } else {
            for msg in is_dns1123_label(c) {
                out.push(invalid(
                    &format!("{path}.container"),
                    format!("Invalid value: {c:?}: {msg}"),
                ));
            }
        }
    }
    let target = src.get("target").unwrap_or(&Value::Null);
    let tp = format!("{path}.target");
    validate_target(target, &tp, out);
    let (utilization, value) = (
        has(target, "averageUtilization"),
        has(target, "averageValue"),
    );
    if !utilization && !value {
        out.push(required_with(
            &format!("{tp}.averageUtilization"),
            "must set either a target raw value or a target utilization",
        ));
    }
    if utilization && value {
        out.push(forbidden(
            &format!("{tp}.averageValue"),
            "may not set both a target raw value and a target utilization",
        ));
    }
}

fn validate_metric_identifier(src: &Value, path: &str, out: &mut Vec<StatusCause>) {
    let id = src.get("metric").unwrap_or(&Value::Null);
    let name = text(id, "name");
    let field = format!("{path}.metric.name");
    if name.is_empty() {
        out.push(required_with(&field, "must specify a metric name"));
    }
    for msg in is_valid_path_segment_name(name)
        .into_iter()
        .filter(|_| !name.is_empty())
    {
        out.push(invalid(&field, format!("Invalid value: {name:?}: {msg}")));
    }
}

fn validate_pods_source(src: &Value, path: &str, out: &mut Vec<StatusCause>) {
    validate_metric_identifier(src, path, out);
    let target = src.get("target").unwrap_or(&Value::Null);
    validate_target(target, &format!("{path}.target"), out);
    if !has(target, "averageValue") {
        out.push(required_with(
            &format!("{path}.target.averageValue"),
            "must specify a positive target averageValue",
        ));
    }
}

fn validate_object_source(src: &Value, path: &str, out: &mut Vec<StatusCause>) {
    let described = src.get("describedObject").unwrap_or(&Value::Null);
    validate_object_reference(described, &format!("{path}.describedObject"), out);
    validate_metric_identifier(src, path, out);
    let target = src.get("target").unwrap_or(&Value::Null);
    validate_target(target, &format!("{path}.target"), out);
    if !has(target, "value") && !has(target, "averageValue") {
        out.push(required_with(
            &format!("{path}.target.value"),
            "must set either a target value or averageValue",
        ));
    }
}

fn validate_external_source(src: &Value, path: &str, out: &mut Vec<StatusCause>) {
    validate_metric_identifier(src, path, out);
    let target = src.get("target").unwrap_or(&Value::Null);
    validate_target(target, &format!("{path}.target"), out);
    let (value, average) = (has(target, "value"), has(target, "averageValue"));
    if !value && !average {
        out.push(required_with(
            &format!("{path}.target.value"),
            "must set either a target value for metric or a per-pod target",
        ));
    }
    if value && average {
        out.push(forbidden(
            &format!("{path}.target.value"),
            "may not set both a target value for metric and a per-pod target",
        ));
    }
}

/// Upstream's `validateScalingRules`.
fn validate_rules(rules: &Value, path: &str, out: &mut Vec<StatusCause>) {
    if let Some(w) = int(rules.get("stabilizationWindowSeconds")) {
        let field = format!("{path}.stabilizationWindowSeconds");
        if w < 0 {
            out.push(invalid(
                &field,
                format!("Invalid value: {w}: must be greater than or equal to zero"),
            ));
        }
        if w > MAX_STABILIZATION_WINDOW_SECONDS {
            out.push(invalid(
                &field,
                format!("Invalid value: {w}: must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}"),
            ));
        }
    }
    if let Some(p) = rules.get("selectPolicy").filter(|p| !p.is_null())
        && !p
            .as_str()
            .is_some_and(|p| ["Max", "Min", "Disabled"].contains(&p))
    {
        out.push(not_supported(
            &format!("{path}.selectPolicy"),
            p,
            &["Disabled", "Max", "Min"],
        ));
    }
    let policies = rules.get("policies").and_then(Value::as_array);
    let policies_path = format!("{path}.policies");
    if policies.is_none_or(Vec::is_empty) {
        out.push(required_with(
            &policies_path,
            "must specify at least one Policy",
        ));
    }
    for (i, p) in policies.into_iter().flatten().enumerate() {
        let pp = format!("{policies_path}[{i}]");
        let ty = p.get("type").unwrap_or(&Value::Null);
        if !ty
            .as_str()
            .is_some_and(|t| ["Pods", "Percent"].contains(&t))
        {
            out.push(not_supported(
                &format!("{pp}.type"),
                ty,
                &["Percent", "Pods"],
            ));
        }
        let value = int(p.get("value")).unwrap_or(0);
        if value <= 0 {
            out.push(invalid(
                &format!("{pp}.value"),
                format!("Invalid value: {value}: must be greater than zero"),
            ));
        }
        let period = int(p.get("periodSeconds")).unwrap_or(0);
        let field = format!("{pp}.periodSeconds");
        if period <= 0 {
            out.push(invalid(
                &field,
                format!("Invalid value: {period}: must be greater than zero"),
            ));
        }
        if period > MAX_PERIOD_SECONDS {
            out.push(invalid(
                &field,
                format!(
                    "Invalid value: {period}: must be less than or equal to {MAX_PERIOD_SECONDS}"
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(spec: Value) -> Vec<String> {
        validate(&json!({ "spec": spec }))
            .into_iter()
            .map(|c| c.field)
            .collect()
    }

    fn spec() -> Value {
        json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 10,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
        })
    }

    fn with(mut base: Value, pointer: &str, v: Value) -> Value {
        if let Some(slot) = base.pointer_mut(pointer) {
            *slot = v;
        }
        base
    }

    #[test]
    fn a_valid_autoscaler_has_no_causes() {
        assert!(fields(spec()).is_empty());
        let behavior = json!({"scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}});
        let mut s = spec();
        s["behavior"] = behavior;
        assert!(fields(s).is_empty());
    }

    #[test]
    fn replica_bounds_give_upstreams_fields_and_messages() {
        let causes = validate(&json!({"spec": with(spec(), "/minReplicas", json!(5))
            .as_object().cloned().map(|mut m| { m.insert("maxReplicas".into(), json!(2)); Value::Object(m) })}));
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.maxReplicas");
        assert_eq!(
            causes[0].message,
            "Invalid value: 2: must be greater than or equal to `minReplicas`"
        );
        assert_eq!(
            fields(with(spec(), "/minReplicas", json!(0))),
            ["spec.minReplicas"]
        );
        assert_eq!(
            fields(with(spec(), "/maxReplicas", json!(0))),
            ["spec.maxReplicas", "spec.maxReplicas"]
        );
    }

    #[test]
    fn the_target_reference_needs_a_kind_and_a_name() {
        assert_eq!(
            fields(with(
                spec(),
                "/scaleTargetRef",
                json!({"apiVersion": "apps/v1"})
            )),
            ["spec.scaleTargetRef.kind", "spec.scaleTargetRef.name"]
        );
        assert_eq!(
            fields(with(spec(), "/scaleTargetRef/name", json!("a/b"))),
            ["spec.scaleTargetRef.name"]
        );
    }

    #[test]
    fn metric_targets_must_be_positive_and_of_one_kind() {
        let target = "/metrics/0/resource/target";
        assert_eq!(
            fields(with(
                spec(),
                &format!("{target}/averageUtilization"),
                json!(0)
            )),
            ["spec.metrics[0].resource.target.averageUtilization"]
        );
        assert_eq!(
            fields(with(
                spec(),
                target,
                json!({"type": "AverageValue", "averageValue": "-1"})
            )),
            ["spec.metrics[0].resource.target.averageValue"]
        );
        assert_eq!(
            fields(with(spec(), target, json!({"type": "Utilization"}))),
            ["spec.metrics[0].resource.target.averageUtilization"]
        );
        assert_eq!(
            fields(with(spec(), "/metrics/0/type", json!("Pods"))),
            ["spec.metrics[0].pods"]
        );
        assert_eq!(
            fields(with(spec(), "/metrics/0/type", json!("Bogus"))),
            ["spec.metrics[0].type"]
        );
        let pods = json!([{"type": "Pods", "pods": {"metric": {"name": ""}, "target": {"type": "AverageValue"}}}]);
        assert_eq!(
            fields(with(spec(), "/metrics", pods)),
            [
                "spec.metrics[0].pods.metric.name",
                "spec.metrics[0].pods.target.averageValue"
            ]
        );
    }

    #[test]
    fn behavior_policies_are_bounded() {
        let mut s = spec();
        s["behavior"] = json!({"scaleDown": {"stabilizationWindowSeconds": 4000, "selectPolicy": "Most",
            "policies": [{"type": "Nodes", "value": 0, "periodSeconds": 2000}]}});
        assert_eq!(
            fields(s),
            [
                "spec.behavior.scaleDown.stabilizationWindowSeconds",
                "spec.behavior.scaleDown.selectPolicy",
                "spec.behavior.scaleDown.policies[0].type",
                "spec.behavior.scaleDown.policies[0].value",
                "spec.behavior.scaleDown.policies[0].periodSeconds",
            ]
        );
        let mut empty = spec();
        empty["behavior"] = json!({"scaleUp": {"policies": []}});
        assert_eq!(fields(empty), ["spec.behavior.scaleUp.policies"]);
    }
}
