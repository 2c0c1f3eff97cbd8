//! The scheduler's writes to pods: the binding, and the `PodScheduled=False` condition of a pod
//! that fits nowhere.

use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kybernetes_core::Clock;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// How often a condition update is retried after a conflict.
const CONDITION_UPDATE_ATTEMPTS: usize = 3;

/// The pods API of `pod`'s namespace.
pub(crate) fn pod_api(client: kube::Client, pod: &Pod) -> Api<Pod> {
    Api::namespaced(
        client,
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    )
}

/// `namespace/name`, for messages and logs.
pub(crate) fn full_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Posts `pods/binding` for `pod` to `node`, with the pod's UID as precondition (upstream's
/// DefaultBinder).
pub(crate) async fn bind(client: kube::Client, pod: &Pod, node: &str) -> Result<()> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("Node".to_string()),
            name: Some(node.to_string()),
            ..Default::default()
        },
    };
    pod_api(client, pod)
        .create_subresource::<_, Value>("binding", &name, &PostParams::default(), &binding)
        .await
        .map(|_| ())
        .map_err(|source| Error::Api {
            action: format!("bind pod {} to node {node}", full_name(pod)),
            source,
        })
}

/// Whether a client error is an API `Status` with this HTTP code.
pub(crate) fn is_status(e: &Error, code: u16) -> bool {
    matches!(e, Error::Api { source: kube::Error::Api(status), .. } if status.code == code)
}

/// The pod's conditions with `PodScheduled` set to False for `reason`/`message`, or `None` when
/// it already says so. The transition time only moves when the status changes.
fn conditions_with_unschedulable(
    pod: &Pod,
    reason: &str,
    message: &str,
    now: &str,
) -> Option<Value> {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    let existing = conditions.and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    if let Some(c) = existing
        && c.status == "False"
        && c.reason.as_deref() == Some(reason)
        && c.message.as_deref() == Some(message)
    {
        return None;
    }
    let transition = match existing {
        Some(c) if c.status == "False" => c
            .last_transition_time
            .as_ref()
            .map(|t| json!(t))
            .unwrap_or(json!(now)),
        _ => json!(now),
    };
    let mut list: Vec<Value> = conditions
        .into_iter()
        .flatten()
        .filter(|c| c.type_ != "PodScheduled")
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    list.push(json!({
        "type": "PodScheduled",
        "status": "False",
        "reason": reason,
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": transition,
    }));
    Some(Value::Array(list))
}

/// Whether the pod does not yet carry `PodScheduled=False` with this reason and message.
pub(crate) fn needs_condition(pod: &Pod, reason: &str, message: &str) -> bool {
    conditions_with_unschedulable(pod, reason, message, "").is_some()
}

/// Sets `PodScheduled=False` with `reason` and `message` on a pod that is still unbound,
/// guarded by its resourceVersion so it can never overwrite a binding that raced ahead.
pub(crate) async fn set_unschedulable_condition(
    client: kube::Client,
    pod: &Pod,
    reason: &str,
    message: &str,
    clock: &Clock,
) -> Result<()> {
    let api = pod_api(client, pod);
    let name = pod.metadata.name.clone().unwrap_or_default();
    let action = || {
        format!(
            "update the PodScheduled condition of pod {}",
            full_name(pod)
        )
    };
    let mut current = pod.clone();
    for _ in 0..CONDITION_UPDATE_ATTEMPTS {
        let bound = current
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        if bound || current.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let Some(conditions) =
            conditions_with_unschedulable(&current, reason, message, &clock.now_rfc3339())
        else {
            return Ok(());
        };
        let patch = json!({
            "metadata": {"resourceVersion": current.metadata.resource_version},
            "status": {"conditions": conditions},
        });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => match api.get_opt(&name).await {
                Ok(Some(fresh)) if fresh.metadata.uid == pod.metadata.uid => current = fresh,
                Ok(_) => return Ok(()),
                Err(source) => {
                    return Err(Error::Api {
                        action: action(),
                        source,
                    });
                }
            },
            Err(source) => {
                return Err(Error::Api {
                    action: action(),
                    source,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(conditions: Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p"}, "status": {"conditions": conditions}}),
        )
        .expect("pod")
    }

    #[test]
    fn the_condition_is_added_once_and_keeps_its_transition_time() {
        let p = pod(json!([{"type": "Initialized", "status": "True"}]));
        let list =
            conditions_with_unschedulable(&p, "Unschedulable", "0/1 nodes", "2024-01-01T00:00:00Z")
                .expect("changed");
        assert_eq!(list[1]["type"], "PodScheduled");
        assert_eq!(list[0]["type"], "Initialized");
        let p = pod(list);
        assert!(
            conditions_with_unschedulable(&p, "Unschedulable", "0/1 nodes", "2024-01-02T00:00:00Z")
                .is_none()
        );
        let list =
            conditions_with_unschedulable(&p, "Unschedulable", "0/2 nodes", "2024-01-02T00:00:00Z")
                .expect("changed");
        assert_eq!(list[1]["lastTransitionTime"], "2024-01-01T00:00:00Z");
        assert_eq!(list[1]["message"], "0/2 nodes");
    }
}
