//! The taints the node lifecycle controller keeps on nodes (upstream
//! `doNoScheduleTaintingPass` / `doNoExecuteTaintingPass`), and the toleration arithmetic of
//! taint eviction: whether a toleration matches a taint and when a pod stops tolerating a
//! node's NoExecute taints.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tracing::{debug, info};

use super::{NodeLifecycle, condition, min_time, to_chrono, to_time};

/// Taint of a node whose Ready condition is False.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
/// Taint of a node whose Ready condition is Unknown (its agent stopped reporting).
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// Taint of a node with `spec.unschedulable`.
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// NoSchedule taints that follow node conditions: (condition, status, taint key).
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", NOT_READY_TAINT),
    ("Ready", "Unknown", UNREACHABLE_TAINT),
    (
        "MemoryPressure",
        "True",
        "node.kubernetes.io/memory-pressure",
    ),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
];

/// The NoExecute taints on `node`, the ones taint eviction acts on.
pub(super) fn no_execute_taints(node: &Node) -> Vec<Taint> {
    node.spec
        .iter()
        .flat_map(|s| s.taints.iter().flatten())
        .filter(|t| t.effect == "NoExecute")
        .cloned()
        .collect()
}

/// Upstream `Toleration.ToleratesTaint`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration
        .effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    if toleration
        .key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != taint.key)
    {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// When the taint eviction controller deletes `pod` from a node with these NoExecute taints:
/// `None` if it tolerates them all forever. `first_seen` gives the time a taint without
/// `timeAdded` was first observed.
pub fn eviction_time(
    pod: &Pod,
    taints: &[Taint],
    default_toleration_seconds: i64,
    first_seen: impl Fn(&Taint) -> DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let mut at: Option<DateTime<Utc>> = None;
    for taint in taints {
        let added = taint
            .time_added
            .as_ref()
            .and_then(|t| to_chrono(&t.0))
            .unwrap_or_else(|| first_seen(taint));
        let seconds = match tolerations.iter().find(|t| tolerates(t, taint)) {
            Some(t) => match t.toleration_seconds {
                Some(s) => s.max(0),
                None => continue,
            },
            None if taint.key == NOT_READY_TAINT || taint.key == UNREACHABLE_TAINT => {
                default_toleration_seconds
            }
            None => 0,
        };
        at = min_time(at, added + chrono::Duration::seconds(seconds));
    }
    at
}

/// The taints the controller wants on `node`, given its conditions: (key, effect).
fn desired_taints(node: &Node) -> Vec<(&'static str, &'static str)> {
    let mut desired = Vec::new();
    for (type_, status, key) in CONDITION_TAINTS {
        if condition(node, type_).is_some_and(|c| c.status == status) {
            desired.push((key, "NoSchedule"));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        desired.push((UNSCHEDULABLE_TAINT, "NoSchedule"));
    }
    match condition(node, "Ready").map(|c| c.status.as_str()) {
        Some("False") => desired.push((NOT_READY_TAINT, "NoExecute")),
        Some("Unknown") => desired.push((UNREACHABLE_TAINT, "NoExecute")),
        _ => {}
    }
    desired
}

/// Whether the controller owns this taint.
fn is_managed(taint: &Taint) -> bool {
    match taint.effect.as_str() {
        "NoSchedule" => {
            taint.key == UNSCHEDULABLE_TAINT
                || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == taint.key)
        }
        "NoExecute" => taint.key == NOT_READY_TAINT || taint.key == UNREACHABLE_TAINT,
        _ => false,
    }
}

impl NodeLifecycle {
    /// Upstream `doNoScheduleTaintingPass` and `doNoExecuteTaintingPass`.
    pub(super) async fn sync_taints(&self, node: Node, now: DateTime<Utc>) -> Node {
        let current: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let desired = desired_taints(&node);
        let mut taints: Vec<Taint> = current
            .iter()
            .filter(|t| !is_managed(t) || desired.contains(&(t.key.as_str(), t.effect.as_str())))
            .cloned()
            .collect();
        for (key, effect) in &desired {
            if !taints.iter().any(|t| t.key == *key && t.effect == *effect) {
                taints.push(Taint {
                    key: key.to_string(),
                    effect: effect.to_string(),
                    value: None,
                    time_added: (*effect == "NoExecute").then(|| to_time(now)),
                });
            }
        }
        if taints == current {
            return node;
        }
        let name = node.name_any();
        info!(node = %name, taints = ?desired, "updating node taints");
        let patch = json!({
            "metadata": { "resourceVersion": node.metadata.resource_version },
            "spec": { "taints": if taints.is_empty() { json!(null) } else { json!(taints) } },
        });
        let api: Api<Node> = Api::all(self.client.clone());
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(updated) => updated,
            Err(e) => {
                debug!(node = %name, error = %e, "failed to update node taints; will retry");
                node
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn taint(key: &str, added: DateTime<Utc>) -> Taint {
        Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: Some(to_time(added)),
        }
    }

    fn pod(tolerations: Vec<Toleration>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                tolerations: Some(tolerations),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_pod_without_tolerations_tolerates_unreachable_for_the_default_time() {
        let t0 = DateTime::from_timestamp(1_000, 0).unwrap_or_default();
        let at = eviction_time(&pod(vec![]), &[taint(UNREACHABLE_TAINT, t0)], 300, |_| t0);
        assert_eq!(at, Some(t0 + chrono::Duration::seconds(300)));
    }

    #[test]
    fn an_untolerated_taint_evicts_at_once_and_a_toleration_without_seconds_never() {
        let t0 = DateTime::from_timestamp(1_000, 0).unwrap_or_default();
        assert_eq!(
            eviction_time(
                &pod(vec![]),
                &[taint("example.com/broken", t0)],
                300,
                |_| t0
            ),
            Some(t0)
        );
        let forever = Toleration {
            key: Some(UNREACHABLE_TAINT.into()),
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert_eq!(
            eviction_time(
                &pod(vec![forever]),
                &[taint(UNREACHABLE_TAINT, t0)],
                300,
                |_| t0
            ),
            None
        );
    }

    #[test]
    fn an_explicit_toleration_overrides_the_default() {
        let t0 = DateTime::from_timestamp(1_000, 0).unwrap_or_default();
        let short = Toleration {
            key: Some(NOT_READY_TAINT.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(5),
            ..Default::default()
        };
        assert_eq!(
            eviction_time(
                &pod(vec![short]),
                &[taint(NOT_READY_TAINT, t0)],
                300,
                |_| t0
            ),
            Some(t0 + chrono::Duration::seconds(5))
        );
    }
}
