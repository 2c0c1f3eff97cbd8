//! Pods: pod spec defaults and validation, the initial `Pending` status with its QoS class,
//! graceful deletion, field selectors, and the `binding`, `eviction`, `exec`, `attach`,
//! `portforward` and `proxy` subresources.

use kybernetes_core::status::StatusCause;
use kybernetes_core::{ApiError, Clock};
use serde_json::{Value, json};

use super::pod_template::{default_pod_spec, validate_pod_spec};
use super::{ProxyKind, Strategy, Subresource, object_field};

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
            "log" => Some(Subresource::Log),
            "exec" => Some(Subresource::Exec),
            "attach" => Some(Subresource::Attach),
            "portforward" => Some(Subresource::PortForward),
            "proxy" => Some(Subresource::Proxy(ProxyKind::Pod)),
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

/// The annotation naming the container kubectl picks when none is given.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// Which container a request that names none is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerDefault {
    /// The pod's only container (upstream's server rule, `pods/log`).
    OnlyContainer,
    /// The annotated default container, else the only one (exec and attach here: what
    /// kubectl does on its side, so that every client gets it).
    AnnotationOrOnly,
}

fn names(pod: &Value, field: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .map(String::from)
        .collect()
}

/// The spec of container `name` (app, init or ephemeral).
pub fn container_spec<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .filter_map(|f| pod.pointer(&format!("/spec/{f}")).and_then(Value::as_array))
        .flatten()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
}

/// The container a request is for (upstream's `LogLocation` and `streamLocation`): the one
/// asked for (which must exist), else, with [`ContainerDefault::AnnotationOrOnly`], the pod's
/// `kubectl.kubernetes.io/default-container`, else its only container; otherwise 400 listing
/// the choices, worded as upstream.
pub fn choose_container(
    pod: &Value,
    name: &str,
    requested: Option<&str>,
    default: ContainerDefault,
) -> Result<String, ApiError> {
    if let Some(c) = requested {
        return match container_spec(pod, c) {
            Some(_) => Ok(c.to_string()),
            None => Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {name}"
            ))),
        };
    }
    let containers = names(pod, "containers");
    let annotated = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
        .and_then(Value::as_str)
        .filter(|c| {
            default == ContainerDefault::AnnotationOrOnly && containers.iter().any(|n| n == c)
        });
    if let Some(c) = annotated {
        return Ok(c.to_string());
    }
    match containers.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}"
        ))),
        many => {
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                many.join(" ")
            );
            let init = names(pod, "initContainers");
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_container_is_the_only_one_the_annotated_one_or_must_be_named() {
        const AOO: ContainerDefault = ContainerDefault::AnnotationOrOnly;
        let one = json!({"spec": {"containers": [{"name": "app"}]}});
        assert_eq!(choose_container(&one, "p", None, AOO).expect("only"), "app");
        let two = json!({
            "metadata": {"annotations": {DEFAULT_CONTAINER_ANNOTATION: "side"}},
            "spec": {"containers": [{"name": "app"}, {"name": "side"}], "initContainers": [{"name": "init"}]},
        });
        assert_eq!(
            choose_container(&two, "p", None, AOO).expect("annotated"),
            "side"
        );
        assert_eq!(
            choose_container(&two, "p", Some("init"), AOO).expect("named"),
            "init"
        );
        let mut unannotated = two.clone();
        unannotated["metadata"] = json!({});
        let e = choose_container(&unannotated, "p", None, AOO).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "a container name must be specified for pod p, choose one of: [app side] or one of the init containers: [init]"
        );
        let e = choose_container(&one, "p", Some("nope"), AOO).unwrap_err();
        assert_eq!(e.message, "container nope is not valid for pod p");
    }
}
