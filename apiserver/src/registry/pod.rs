//! Pods: pod spec defaults and validation, the initial `Pending` status with its QoS class,
//! graceful deletion, field selectors, and the `binding`, `eviction`, `exec`, `attach` and
//! `portforward` subresources.

use kybernetes_core::Clock;
use kybernetes_core::status::StatusCause;
use serde_json::{Value, json};

use super::pod_template::{default_pod_spec, validate_pod_spec};
use super::{Strategy, Subresource, object_field};

/// The strategy of core/v1 pods.
#[derive(Clone, Copy, Debug, Default)]
pub struct PodStrategy;

impl Strategy for PodStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = object_field(obj, "spec") {
            default_pod_spec(spec);
        }
    }

    fn initial_status(&self, obj: &mut Value, _clock: &Clock) {
        let qos = qos_class(obj);
        obj["status"] = json!({ "phase": "Pending", "qosClass": qos });
    }

    fn validate(&self, obj: &Value) -> Vec<StatusCause> {
        let mut out = Vec::new();
        validate_pod_spec(obj.get("spec"), "spec", &mut out);
        out
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]
    }

    fn graceful_delete_seconds(&self, obj: &Value, requested: Option<i64>) -> i64 {
        // Upstream deletes pods at once that never reached a node or have finished.
        let scheduled = obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let phase = obj
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !scheduled || matches!(phase, "Succeeded" | "Failed") {
            return 0;
        }
        requested
            .or_else(|| {
                obj.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30)
    }

    fn subresource(&self, name: &str) -> Option<Subresource> {
        match name {
            "binding" => Some(Subresource::Binding),
            "eviction" => Some(Subresource::Eviction),
            "exec" => Some(Subresource::Exec),
            "attach" => Some(Subresource::Attach),
            "portforward" => Some(Subresource::PortForward),
            _ => None,
        }
    }
}

/// The pod's QoS class as upstream computes it (BestEffort, Burstable or Guaranteed).
pub fn qos_class(pod: &Value) -> &'static str {
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        if req.is_some_and(|m| !m.is_empty()) || lim.is_some_and(|m| !m.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let l = lim.and_then(|m| m.get(res));
            let q = req.and_then(|m| m.get(res)).or(l);
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}
