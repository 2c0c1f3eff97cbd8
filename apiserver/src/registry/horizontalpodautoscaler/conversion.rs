//! Conversion between `autoscaling/v2` (the storage version) and `autoscaling/v1`, as
//! upstream's `pkg/apis/autoscaling/v1/conversion.go` does it.
//!
//! v1 has one metric, `spec.targetCPUUtilizationPercentage`, and one current value,
//! `status.currentCPUUtilizationPercentage`. Everything else v2 holds travels in annotations
//! when read as v1 and is restored from them on write:
//! - [`METRICS`], the other metric specs, in v1's `MetricSpec` form;
//! - [`CURRENT_METRICS`], every current metric, in v1's `MetricStatus` form;
//! - [`CONDITIONS`], the status conditions;
//! - [`BEHAVIOR`], `spec.behavior`.

use serde_json::{Map, Value, json};

/// The annotation holding the v2 metric specs that v1 has no field for.
pub const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
/// The annotation holding the v2 current metrics.
pub const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
/// The annotation holding the v2 status conditions.
pub const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
/// The annotation holding the v2 `spec.behavior`.
pub const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";

/// The CPU utilization v1 and v2 assume when no metric is given (upstream's
/// `DefaultCPUUtilization`).
pub const DEFAULT_CPU_UTILIZATION: i64 = 80;

/// The field names shared by both versions' spec and status.
const SPEC_FIELDS: [&str; 3] = ["scaleTargetRef", "minReplicas", "maxReplicas"];
const STATUS_FIELDS: [&str; 4] = [
    "observedGeneration",
    "lastScaleTime",
    "currentReplicas",
    "desiredReplicas",
];

fn copy_fields(from: Option<&Value>, to: &mut Map<String, Value>, fields: &[&str]) {
    for f in fields {
        if let Some(v) = from.and_then(|m| m.get(*f)).filter(|v| !v.is_null()) {
            to.insert((*f).into(), v.clone());
        }
    }
}

fn items<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn non_null(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// A zero quantity where v1 has a non-pointer quantity and v2 had none (Go's zero value).
fn quantity_or_zero(v: Option<&Value>) -> Value {
    non_null(v).cloned().unwrap_or_else(|| json!("0"))
}

/// Sets `key` to `v` unless `v` is absent.
fn put(m: &mut Map<String, Value>, key: &str, v: Option<&Value>) {
    if let Some(v) = non_null(v) {
        m.insert(key.into(), v.clone());
    }
}

/// True for a v2 metric that v1's `targetCPUUtilizationPercentage` stands for.
fn is_cpu_utilization(m: &Value) -> bool {
    m.get("type").and_then(Value::as_str) == Some("Resource")
        && m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
        && non_null(m.pointer("/resource/target/averageUtilization")).is_some()
}

/// An autoscaling/v2 object as autoscaling/v1.
pub fn to_v1(v2: &Value) -> Value {
    let mut out = v2.clone();
    let Some(obj) = out.as_object_mut() else {
        return out;
    };
    obj.insert("apiVersion".into(), json!("autoscaling/v1"));

    let spec_in = v2.get("spec");
    let mut spec = Map::new();
    copy_fields(spec_in, &mut spec, &SPEC_FIELDS);
    let metrics = items(v2, "/spec/metrics");
    if let Some(cpu) = metrics.iter().find(|m| is_cpu_utilization(m)) {
        put(
            &mut spec,
            "targetCPUUtilizationPercentage",
            cpu.pointer("/resource/target/averageUtilization"),
        );
    }
    let others: Vec<Value> = metrics
        .iter()
        .filter(|m| !is_cpu_utilization(m))
        .map(metric_spec_to_v1)
        .collect();

    let status_in = v2.get("status");
    let current = items(v2, "/status/currentMetrics");
    let conditions = items(v2, "/status/conditions");
    let mut status = Map::new();
    copy_fields(status_in, &mut status, &STATUS_FIELDS);
    status.entry("currentReplicas").or_insert_with(|| json!(0));
    status.entry("desiredReplicas").or_insert_with(|| json!(0));
    let cpu_now = current.iter().find(|m| {
        m.get("type").and_then(Value::as_str) == Some("Resource")
            && m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
    });
    put(
        &mut status,
        "currentCPUUtilizationPercentage",
        cpu_now.and_then(|m| m.pointer("/resource/current/averageUtilization")),
    );

    let mut annotations = Vec::new();
    if !others.is_empty() {
        annotations.push((METRICS, Value::Array(others)));
    }
    if !current.is_empty() {
        let statuses = current.iter().map(metric_status_to_v1).collect();
        annotations.push((CURRENT_METRICS, Value::Array(statuses)));
    }
    if !conditions.is_empty() {
        annotations.push((CONDITIONS, Value::Array(conditions.to_vec())));
    }
    if let Some(b) = non_null(spec_in.and_then(|s| s.get("behavior"))) {
        annotations.push((BEHAVIOR, b.clone()));
    }
    obj.insert("spec".into(), Value::Object(spec));
    if status_in.is_some() {
        obj.insert("status".into(), Value::Object(status));
    }
    if !annotations.is_empty() {
        let meta = obj.entry("metadata").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            let a = meta.entry("annotations").or_insert_with(|| json!({}));
            if !a.is_object() {
                *a = json!({});
            }
            if let Some(a) = a.as_object_mut() {
                for (k, v) in annotations {
                    a.insert(k.into(), json!(v.to_string()));
                }
            }
        }
    }
    out
}

/// Removes and parses one of the conversion annotations.
fn take_annotation(obj: &mut Value, key: &str) -> Option<Value> {
    let a = obj
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)?;
    let raw = a.remove(key)?;
    match raw.as_str().map(serde_json::from_str::<Value>) {
        Some(Ok(v)) => Some(v),
        _ => {
            // Upstream fails the conversion; a stored object never carries a bad one, so a
            // client's bad annotation is dropped and logged rather than stored.
            tracing::debug!(
                annotation = key,
                "ignoring an unparsable conversion annotation"
            );
            None
        }
    }
}

/// An autoscaling/v1 object as autoscaling/v2, with the annotations of [`to_v1`] turned back
/// into fields (and removed).
pub fn to_v2(v1: &Value) -> Value {
    let mut out = v1.clone();
    let other_metrics = take_annotation(&mut out, METRICS);
    let current_metrics = take_annotation(&mut out, CURRENT_METRICS);
    let conditions = take_annotation(&mut out, CONDITIONS);
    let behavior = take_annotation(&mut out, BEHAVIOR);
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut)
        && meta
            .get("annotations")
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
    {
        meta.remove("annotations");
    }
    let Some(obj) = out.as_object_mut() else {
        return out;
    };
    obj.insert("apiVersion".into(), json!("autoscaling/v2"));

    let spec_in = v1.get("spec");
    let mut spec = Map::new();
    copy_fields(spec_in, &mut spec, &SPEC_FIELDS);
    let mut metrics: Vec<Value> = other_metrics
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(metric_spec_from_v1)
        .collect();
    if let Some(t) = non_null(spec_in.and_then(|s| s.get("targetCPUUtilizationPercentage"))) {
        metrics.push(cpu_utilization_metric(t.clone()));
    }
    if metrics.is_empty() {
        // v1 left the 80% default to the controller; v2 makes it explicit.
        metrics.push(cpu_utilization_metric(json!(DEFAULT_CPU_UTILIZATION)));
    }
    spec.insert("metrics".into(), Value::Array(metrics));
    if let Some(b) = behavior {
        spec.insert("behavior".into(), b);
    }
    obj.insert("spec".into(), Value::Object(spec));

    if let Some(status_in) = v1.get("status").filter(|s| s.is_object()) {
        let mut status = Map::new();
        copy_fields(Some(status_in), &mut status, &STATUS_FIELDS);
        let current = match &current_metrics {
            // The annotation, when present, is the ground truth (as upstream).
            Some(Value::Array(m)) => m.iter().map(metric_status_from_v1).collect(),
            _ => non_null(status_in.get("currentCPUUtilizationPercentage"))
                .map(|u| json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": u}}}))
                .into_iter()
                .collect::<Vec<_>>(),
        };
        if !current.is_empty() {
            status.insert("currentMetrics".into(), Value::Array(current));
        }
        if let Some(c) = conditions.filter(|c| c.as_array().is_some_and(|a| !a.is_empty())) {
            status.insert("conditions".into(), c);
        }
        obj.insert("status".into(), Value::Object(status));
    }
    out
}

/// A v2 `Resource` metric targeting `utilization` percent of the CPU request.
pub fn cpu_utilization_metric(utilization: Value) -> Value {
    json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": utilization}}})
}

/// A v2 metric spec in v1's form (the `MetricSpec` of the annotation).
fn metric_spec_to_v1(m: &Value) -> Value {
    let t = m.get("type").cloned().unwrap_or(Value::Null);
    let mut out = Map::new();
    out.insert("type".into(), t);
    let target = |src: &Value| src.get("target").cloned().unwrap_or(Value::Null);
    if let Some(r) = non_null(m.get("resource")) {
        let tg = target(r);
        let mut s = Map::new();
        put(&mut s, "name", r.get("name"));
        put(
            &mut s,
            "targetAverageUtilization",
            tg.get("averageUtilization"),
        );
        put(&mut s, "targetAverageValue", tg.get("averageValue"));
        out.insert("resource".into(), Value::Object(s));
    }
    if let Some(r) = non_null(m.get("containerResource")) {
        let tg = target(r);
        let mut s = Map::new();
        put(&mut s, "name", r.get("name"));
        put(&mut s, "container", r.get("container"));
        put(
            &mut s,
            "targetAverageUtilization",
            tg.get("averageUtilization"),
        );
        put(&mut s, "targetAverageValue", tg.get("averageValue"));
        out.insert("containerResource".into(), Value::Object(s));
    }
    if let Some(p) = non_null(m.get("pods")) {
        let tg = target(p);
        let mut s = Map::new();
        put(&mut s, "metricName", p.pointer("/metric/name"));
        put(&mut s, "selector", p.pointer("/metric/selector"));
        s.insert(
            "targetAverageValue".into(),
            quantity_or_zero(tg.get("averageValue")),
        );
        out.insert("pods".into(), Value::Object(s));
    }
    if let Some(o) = non_null(m.get("object")) {
        let tg = target(o);
        let mut s = Map::new();
        put(&mut s, "target", o.get("describedObject"));
        put(&mut s, "metricName", o.pointer("/metric/name"));
        put(&mut s, "selector", o.pointer("/metric/selector"));
        s.insert("targetValue".into(), quantity_or_zero(tg.get("value")));
        put(&mut s, "averageValue", tg.get("averageValue"));
        out.insert("object".into(), Value::Object(s));
    }
    if let Some(e) = non_null(m.get("external")) {
        let tg = target(e);
        let mut s = Map::new();
        put(&mut s, "metricName", e.pointer("/metric/name"));
        put(&mut s, "metricSelector", e.pointer("/metric/selector"));
        put(&mut s, "targetValue", tg.get("value"));
        put(&mut s, "targetAverageValue", tg.get("averageValue"));
        out.insert("external".into(), Value::Object(s));
    }
    Value::Object(out)
}

/// A v2 metric identifier from v1's name and selector fields.
fn metric_identifier(src: &Value, selector_key: &str) -> Value {
    let mut id = Map::new();
    put(&mut id, "name", src.get("metricName"));
    put(&mut id, "selector", src.get(selector_key));
    Value::Object(id)
}

/// A v1 metric spec (from the annotation) in v2's form.
fn metric_spec_from_v1(m: &Value) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), m.get("type").cloned().unwrap_or(Value::Null));
    let resource_target = |r: &Value| {
        let utilization = non_null(r.get("targetAverageUtilization"));
        let mut t = Map::new();
        let kind = if utilization.is_some() {
            "Utilization"
        } else {
            "AverageValue"
        };
        t.insert("type".into(), json!(kind));
        put(&mut t, "averageUtilization", utilization);
        put(&mut t, "averageValue", r.get("targetAverageValue"));
        Value::Object(t)
    };
    if let Some(r) = non_null(m.get("resource")) {
        let mut s = Map::new();
        put(&mut s, "name", r.get("name"));
        s.insert("target".into(), resource_target(r));
        out.insert("resource".into(), Value::Object(s));
    }
    if let Some(r) = non_null(m.get("containerResource")) {
        let mut s = Map::new();
        put(&mut s, "name", r.get("name"));
        put(&mut s, "container", r.get("container"));
        s.insert("target".into(), resource_target(r));
        out.insert("containerResource".into(), Value::Object(s));
    }
    if let Some(p) = non_null(m.get("pods")) {
        let target = json!({"type": "AverageValue", "averageValue": quantity_or_zero(p.get("targetAverageValue"))});
        out.insert(
            "pods".into(),
            json!({"metric": metric_identifier(p, "selector"), "target": target}),
        );
    }
    if let Some(o) = non_null(m.get("object")) {
        let average = non_null(o.get("averageValue"));
        let mut t = Map::new();
        let kind = if average.is_some() {
            "AverageValue"
        } else {
            "Value"
        };
        t.insert("type".into(), json!(kind));
        t.insert("value".into(), quantity_or_zero(o.get("targetValue")));
        put(&mut t, "averageValue", average);
        let mut s = Map::new();
        put(&mut s, "describedObject", o.get("target"));
        s.insert("metric".into(), metric_identifier(o, "selector"));
        s.insert("target".into(), Value::Object(t));
        out.insert("object".into(), Value::Object(s));
    }
    if let Some(e) = non_null(m.get("external")) {
        let value = non_null(e.get("targetValue"));
        let mut t = Map::new();
        let kind = if value.is_some() {
            "Value"
        } else {
            "AverageValue"
        };
        t.insert("type".into(), json!(kind));
        put(&mut t, "value", value);
        put(&mut t, "averageValue", e.get("targetAverageValue"));
        out.insert(
            "external".into(),
            json!({"metric": metric_identifier(e, "metricSelector"), "target": Value::Object(t)}),
        );
    }
    Value::Object(out)
}

/// A v2 current metric in v1's form.
fn metric_status_to_v1(m: &Value) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), m.get("type").cloned().unwrap_or(Value::Null));
    let current = |src: &Value| src.get("current").cloned().unwrap_or(Value::Null);
    for key in ["resource", "containerResource"] {
        if let Some(r) = non_null(m.get(key)) {
            let c = current(r);
            let mut s = Map::new();
            put(&mut s, "name", r.get("name"));
            put(&mut s, "container", r.get("container"));
            put(
                &mut s,
                "currentAverageUtilization",
                c.get("averageUtilization"),
            );
            s.insert(
                "currentAverageValue".into(),
                quantity_or_zero(c.get("averageValue")),
            );
            out.insert(key.into(), Value::Object(s));
        }
    }
    if let Some(p) = non_null(m.get("pods")) {
        let c = current(p);
        let mut s = Map::new();
        put(&mut s, "metricName", p.pointer("/metric/name"));
        put(&mut s, "selector", p.pointer("/metric/selector"));
        s.insert(
            "currentAverageValue".into(),
            quantity_or_zero(c.get("averageValue")),
        );
        out.insert("pods".into(), Value::Object(s));
    }
    if let Some(o) = non_null(m.get("object")) {
        let c = current(o);
        let mut s = Map::new();
        put(&mut s, "target", o.get("describedObject"));
        put(&mut s, "metricName", o.pointer("/metric/name"));
        put(&mut s, "selector", o.pointer("/metric/selector"));
        s.insert("currentValue".into(), quantity_or_zero(c.get("value")));
        put(&mut s, "averageValue", c.get("averageValue"));
        out.insert("object".into(), Value::Object(s));
    }
    if let Some(e) = non_null(m.get("external")) {
        let c = current(e);
        let mut s = Map::new();
        put(&mut s, "metricName", e.pointer("/metric/name"));
        put(&mut s, "metricSelector", e.pointer("/metric/selector"));
        s.insert("currentValue".into(), quantity_or_zero(c.get("value")));
        put(&mut s, "currentAverageValue", c.get("averageValue"));
        out.insert("external".into(), Value::Object(s));
    }
    Value::Object(out)
}

/// A v1 current metric (from the annotation) in v2's form.
fn metric_status_from_v1(m: &Value) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), m.get("type").cloned().unwrap_or(Value::Null));
    for key in ["resource", "containerResource"] {
        if let Some(r) = non_null(m.get(key)) {
            let mut c = Map::new();
            c.insert(
                "averageValue".into(),
                quantity_or_zero(r.get("currentAverageValue")),
            );
            put(
                &mut c,
                "averageUtilization",
                r.get("currentAverageUtilization"),
            );
            let mut s = Map::new();
            put(&mut s, "name", r.get("name"));
            put(&mut s, "container", r.get("container"));
            s.insert("current".into(), Value::Object(c));
            out.insert(key.into(), Value::Object(s));
        }
    }
    if let Some(p) = non_null(m.get("pods")) {
        let current = json!({"averageValue": quantity_or_zero(p.get("currentAverageValue"))});
        out.insert(
            "pods".into(),
            json!({"metric": metric_identifier(p, "selector"), "current": current}),
        );
    }
    if let Some(o) = non_null(m.get("object")) {
        let mut c = Map::new();
        c.insert("value".into(), quantity_or_zero(o.get("currentValue")));
        put(&mut c, "averageValue", o.get("averageValue"));
        let mut s = Map::new();
        put(&mut s, "describedObject", o.get("target"));
        s.insert("metric".into(), metric_identifier(o, "selector"));
        s.insert("current".into(), Value::Object(c));
        out.insert("object".into(), Value::Object(s));
    }
    if let Some(e) = non_null(m.get("external")) {
        let mut c = Map::new();
        c.insert("value".into(), quantity_or_zero(e.get("currentValue")));
        put(&mut c, "averageValue", e.get("currentAverageValue"));
        out.insert(
            "external".into(),
            json!({"metric": metric_identifier(e, "metricSelector"), "current": Value::Object(c)}),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_object() -> Value {
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "annotations": {"team": "a"}},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 10,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
                    {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "30"}}},
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max", "policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}]}},
            },
            "status": {
                "observedGeneration": 2, "currentReplicas": 3, "desiredReplicas": 4,
                "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 70, "averageValue": "70m"}}},
                ],
                "conditions": [{"type": "AbleToScale", "status": "True", "reason": "SucceededRescale", "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            },
        })
    }

    #[test]
    fn v1_carries_the_cpu_target_in_fields_and_the_rest_in_annotations() {
        let v1 = to_v1(&v2_object());
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
        assert!(v1["spec"].get("metrics").is_none());
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 70);
        assert_eq!(v1["status"]["desiredReplicas"], 4);
        let a = &v1["metadata"]["annotations"];
        assert_eq!(a["team"], "a");
        let others: Value =
            serde_json::from_str(a[METRICS].as_str().expect("metrics")).expect("json");
        assert_eq!(others.as_array().map(Vec::len), Some(3));
        assert_eq!(others[0]["resource"]["targetAverageValue"], "100Mi");
        assert_eq!(others[1]["pods"]["metricName"], "qps");
        assert_eq!(others[2]["external"]["targetValue"], "30");
        assert!(
            a[CONDITIONS]
                .as_str()
                .is_some_and(|c| c.contains("SucceededRescale"))
        );
        assert!(
            a[BEHAVIOR]
                .as_str()
                .is_some_and(|b| b.contains("stabilizationWindowSeconds"))
        );
        assert!(a[CURRENT_METRICS].as_str().is_some());
    }

    #[test]
    fn a_v1_round_trip_restores_the_v2_object() {
        let v2 = v2_object();
        let back = to_v2(&to_v1(&v2));
        assert_eq!(back["metadata"]["annotations"], json!({"team": "a"}));
        assert_eq!(back["spec"]["behavior"], v2["spec"]["behavior"]);
        assert_eq!(back["status"]["conditions"], v2["status"]["conditions"]);
        assert_eq!(
            back["status"]["currentMetrics"],
            v2["status"]["currentMetrics"]
        );
        // The CPU metric moves to the end, as upstream's conversion puts it.
        let metrics = back["spec"]["metrics"].as_array().expect("metrics");
        assert_eq!(metrics.len(), 4);
        assert_eq!(metrics[3], v2["spec"]["metrics"][1]);
        assert_eq!(metrics[0], v2["spec"]["metrics"][0]);
        assert_eq!(metrics[1], v2["spec"]["metrics"][2]);
        assert_eq!(metrics[2], v2["spec"]["metrics"][3]);
    }

    #[test]
    fn a_plain_v1_object_gets_the_cpu_metric_or_the_80_percent_default() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5, "targetCPUUtilizationPercentage": 50}});
        let v2 = to_v2(&v1);
        assert_eq!(
            v2["spec"]["metrics"],
            json!([cpu_utilization_metric(json!(50))])
        );
        assert!(v2["metadata"].get("annotations").is_none());
        assert!(v2.get("status").is_none());
        let mut bare = v1.clone();
        bare["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("targetCPUUtilizationPercentage");
        assert_eq!(
            to_v2(&bare)["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
    }
}
