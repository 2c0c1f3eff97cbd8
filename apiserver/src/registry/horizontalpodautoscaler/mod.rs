//! HorizontalPodAutoscalers: stored at `autoscaling/v2`, served at `autoscaling/v1` too by
//! [`conversion`], with upstream's defaults (minReplicas 1, the 80% CPU metric, the behavior
//! rules filled in when `behavior` is given) and [`validation`].
//!
//! The kind is the built-in example of a kind served in two versions: [`Strategy::storage_form`]
//! converts what a client wrote to the storage version and [`Strategy::served_form`] converts
//! the stored object to the version asked for, on every read, list and watch event.

use kybernetes_core::ResourceInfo;
use kybernetes_core::status::StatusCause;
use serde_json::{Value, json};

use super::{Strategy, default_field, object_field};

pub mod conversion;
pub mod validation;

/// The storage version.
const STORAGE_API_VERSION: &str = "autoscaling/v2";

/// The strategy of autoscaling horizontalpodautoscalers (v2 and v1).
#[derive(Clone, Copy, Debug, Default)]
pub struct HorizontalPodAutoscalerStrategy;

fn is_v1(obj: &Value) -> bool {
    obj.get("apiVersion").and_then(Value::as_str) == Some("autoscaling/v1")
}

/// The object in the storage version.
fn as_v2(obj: &Value) -> Value {
    if is_v1(obj) {
        conversion::to_v2(obj)
    } else {
        obj.clone()
    }
}

/// The annotation of `obj`, if any.
fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    obj.pointer("/metadata/annotations")?.get(key)
}

/// Sets or removes the annotation `key` of `obj`.
fn set_annotation(obj: &mut Value, key: &str, value: Option<&Value>) {
    let Some(meta) = object_field(obj, "metadata") else {
        return;
    };
    match value {
        Some(v) => {
            let a = meta.entry("annotations").or_insert_with(|| json!({}));
            if let Some(a) = a.as_object_mut() {
                a.insert(key.into(), v.clone());
            }
        }
        None => {
            if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                a.remove(key);
            }
        }
    }
}

/// The status-carrying annotations of the v1 form: they belong to status, so the main
/// resource's writes cannot set them (upstream resets status on the converted object).
const STATUS_ANNOTATIONS: [&str; 2] = [conversion::CONDITIONS, conversion::CURRENT_METRICS];

/// Upstream's `GenerateHPAScaleUpRules`/`GenerateHPAScaleDownRules` defaults: scale up at once
/// by 4 pods or 100% per 15 s, whichever is more; scale down by up to 100% per 15 s. The
/// scale-down window stays unset, as upstream: the controller applies its 300 s default
/// (`--horizontal-pod-autoscaler-downscale-stabilization`) when it is.
fn default_rules(rules: &mut Value, up: bool) {
    let Some(r) = rules.as_object_mut() else {
        return;
    };
    if up {
        default_field(r, "stabilizationWindowSeconds", json!(0));
    }
    default_field(r, "selectPolicy", json!("Max"));
    let policies = if up {
        json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}])
    } else {
        json!([{"type": "Percent", "value": 100, "periodSeconds": 15}])
    };
    // An explicit empty list stays, for validation to refuse.
    default_field(r, "policies", policies);
}

/// Upstream's autoscaling/v2 `SetDefaults_HorizontalPodAutoscaler`.
fn default_v2(obj: &mut Value) {
    let Some(spec) = object_field(obj, "spec") else {
        return;
    };
    default_field(spec, "minReplicas", json!(1));
    if spec
        .get("metrics")
        .is_none_or(|m| m.as_array().is_none_or(Vec::is_empty))
    {
        spec.insert(
            "metrics".into(),
            json!([conversion::cpu_utilization_metric(json!(
                conversion::DEFAULT_CPU_UTILIZATION
            ))]),
        );
    }
    // Only a given behavior is filled in: without one the controller applies its own
    // defaults, as upstream.
    if let Some(b) = spec.get_mut("behavior").filter(|b| b.is_object()) {
        for (key, up) in [("scaleUp", true), ("scaleDown", false)] {
            let rules = b
                .as_object_mut()
                .map(|b| b.entry(key).or_insert_with(|| json!({})));
            if let Some(rules) = rules {
                if !rules.is_object() {
                    *rules = json!({});
                }
                default_rules(rules, up);
            }
        }
    }
}

impl Strategy for HorizontalPodAutoscalerStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        if is_v1(obj) {
            for key in STATUS_ANNOTATIONS {
                set_annotation(obj, key, None);
            }
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        if is_v1(new) {
            for key in STATUS_ANNOTATIONS {
                let kept = annotation(old, key).cloned();
                set_annotation(new, key, kept.as_ref());
            }
        }
    }

    fn default(&self, obj: &mut Value) {
        if is_v1(obj) {
            // v1's only default; the metric default comes with the conversion to v2.
            if let Some(spec) = object_field(obj, "spec") {
                default_field(spec, "minReplicas", json!(1));
            }
        } else {
            default_v2(obj);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<StatusCause> {
        validation::validate(&as_v2(obj))
    }

    fn storage_form(&self, obj: &Value) -> Option<Value> {
        if !is_v1(obj) {
            return None;
        }
        let mut stored = conversion::to_v2(obj);
        default_v2(&mut stored);
        stored["apiVersion"] = json!(STORAGE_API_VERSION);
        Some(stored)
    }

    fn served_form(&self, r: &ResourceInfo, stored: &Value) -> Option<Value> {
        (r.version == "v1").then(|| conversion::to_v1(stored))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1() -> ResourceInfo {
        ResourceInfo::custom(
            "autoscaling",
            "v1",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
        )
    }

    #[test]
    fn v2_defaults_fill_min_replicas_the_cpu_metric_and_a_given_behavior() {
        let mut obj = json!({"apiVersion": "autoscaling/v2", "spec": {"maxReplicas": 3, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}});
        HorizontalPodAutoscalerStrategy.default(&mut obj);
        assert_eq!(obj["spec"]["minReplicas"], 1);
        assert_eq!(
            obj["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        let b = &obj["spec"]["behavior"];
        assert_eq!(b["scaleDown"]["stabilizationWindowSeconds"], 60);
        assert_eq!(
            b["scaleDown"]["policies"],
            json!([{"type": "Percent", "value": 100, "periodSeconds": 15}])
        );
        assert_eq!(b["scaleUp"]["stabilizationWindowSeconds"], 0);
        assert_eq!(b["scaleUp"]["selectPolicy"], "Max");
        assert_eq!(b["scaleUp"]["policies"].as_array().map(Vec::len), Some(2));

        let mut plain = json!({"apiVersion": "autoscaling/v2", "spec": {"maxReplicas": 3}});
        HorizontalPodAutoscalerStrategy.default(&mut plain);
        assert!(plain["spec"].get("behavior").is_none());
    }

    #[test]
    fn a_v1_write_is_stored_as_v2_and_read_back_as_v1() {
        let mut obj = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 10, "targetCPUUtilizationPercentage": 50}});
        let s = HorizontalPodAutoscalerStrategy;
        s.default(&mut obj);
        assert!(s.validate(&obj).is_empty());
        let stored = s.storage_form(&obj).expect("converted");
        assert_eq!(stored["apiVersion"], "autoscaling/v2");
        assert_eq!(stored["spec"]["minReplicas"], 1);
        assert_eq!(
            stored["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            50
        );
        let served = s.served_form(&v1(), &stored).expect("v1");
        assert_eq!(served["spec"]["targetCPUUtilizationPercentage"], 50);
        assert!(
            s.storage_form(&stored).is_none(),
            "a v2 write is stored as written"
        );
    }

    #[test]
    fn v1_bounds_are_checked_in_the_v2_form() {
        let obj = json!({"apiVersion": "autoscaling/v1", "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
            "minReplicas": 4, "maxReplicas": 2, "targetCPUUtilizationPercentage": 0}});
        let fields: Vec<String> = HorizontalPodAutoscalerStrategy
            .validate(&obj)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.maxReplicas",
                "spec.metrics[0].resource.target.averageUtilization"
            ]
        );
    }
}
