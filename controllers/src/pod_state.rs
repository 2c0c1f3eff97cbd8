//! Pod state as controllers judge it, after upstream's `controller_utils.go` and `podutil`:
//! active, ready and available pods, and the order in which pods are picked for deletion.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::api_values::from_time;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

/// Whether a pod counts towards a controller's replicas: not finished (Succeeded/Failed) and not
/// being deleted (upstream's `IsPodActive`).
pub fn is_pod_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && pod.metadata.deletion_timestamp.is_none()
}

/// The pod's Ready condition, if present.
fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Whether the pod's Ready condition is True (upstream's `podutil.IsPodReady`).
pub fn is_pod_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// When the pod became ready, if it is ready.
pub fn pod_ready_since(pod: &Pod) -> Option<DateTime<Utc>> {
    ready_condition(pod)
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(from_time)
}

/// Whether the pod has been ready for at least `min_ready_seconds` at `now` (upstream's
/// `podutil.IsPodAvailable`).
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: DateTime<Utc>) -> bool {
    if !is_pod_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    pod_ready_since(pod)
        .is_some_and(|t| t + chrono::Duration::seconds(i64::from(min_ready_seconds)) < now)
}

/// How long until a ready pod becomes available, if it is ready but not yet available.
pub fn until_available(pod: &Pod, min_ready_seconds: i32, now: DateTime<Utc>) -> Option<Duration> {
    if min_ready_seconds <= 0 || is_pod_available(pod, min_ready_seconds, now) {
        return None;
    }
    let since = pod_ready_since(pod)?;
    let at = since + chrono::Duration::seconds(i64::from(min_ready_seconds));
    // Available strictly after `at`: wake one second later.
    Some((at - now).to_std().unwrap_or_default() + Duration::from_secs(1))
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    }
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| {
            cs.iter().map(|c| c.restart_count).max().unwrap_or(0)
        })
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.annotations()
        .get("controller.kubernetes.io/pod-deletion-cost")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// Upstream's `ActivePodsWithRanks` order: the pods to delete first come first. `rank` is the
/// number of related pods on the same node (doubled-up pods go first).
fn compare_for_deletion(a: &Pod, ra: usize, b: &Pod, rb: usize) -> Ordering {
    let (ya, yb) = (is_pod_ready(a), is_pod_ready(b));
    // 1. Unassigned < assigned.
    node_name(b)
        .is_empty()
        .cmp(&node_name(a).is_empty())
        // 2. Pending < Unknown < Running.
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        // 3. Not ready < ready.
        .then_with(|| ya.cmp(&yb))
        // 4. Lower pod-deletion-cost first.
        .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
        // 5. Doubled up (higher rank) first.
        .then_with(|| rb.cmp(&ra))
        // 6. Ready for less time first.
        .then_with(|| {
            if ya && yb {
                pod_ready_since(b).cmp(&pod_ready_since(a))
            } else {
                Ordering::Equal
            }
        })
        // 7. More restarts first.
        .then_with(|| max_restarts(b).cmp(&max_restarts(a)))
        // 8. Newer first.
        .then_with(|| {
            b.metadata
                .creation_timestamp
                .as_ref()
                .cmp(&a.metadata.creation_timestamp.as_ref())
        })
        .then_with(|| a.name_any().cmp(&b.name_any()))
}

/// Picks the `count` pods to delete first when scaling down, ranked as upstream's
/// `getPodsToDelete`: `related` are the pods of the owner's sibling controllers (and its own),
/// used to rank doubled-up pods on a node first.
pub fn pods_to_delete(
    mut pods: Vec<Arc<Pod>>,
    related: &[Arc<Pod>],
    count: usize,
) -> Vec<Arc<Pod>> {
    if count < pods.len() {
        let mut per_node: HashMap<&str, usize> = HashMap::new();
        for p in related {
            let n = node_name(p);
            if !n.is_empty() && is_pod_active(p) {
                *per_node.entry(n).or_default() += 1;
            }
        }
        let rank = |p: &Pod| per_node.get(node_name(p)).copied().unwrap_or(0);
        let ranks: HashMap<String, usize> = pods.iter().map(|p| (p.name_any(), rank(p))).collect();
        let r = |p: &Pod| ranks.get(&p.name_any()).copied().unwrap_or(0);
        pods.sort_by(|a, b| compare_for_deletion(a, r(a), b, r(b)));
    }
    pods.truncate(count);
    pods
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api_values::to_time;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    /// A pod on `node` (unassigned when empty) in `phase` with its Ready condition.
    pub(crate) fn pod(name: &str, node: &str, phase: &str, ready: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_string()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn scale_down_deletes_unassigned_then_pending_then_not_ready_first() {
        let pods = vec![
            pod("running-ready", "n1", "Running", true),
            pod("running-not-ready", "n1", "Running", false),
            pod("pending", "n1", "Pending", false),
            pod("unassigned", "", "Pending", false),
        ];
        let picked = pods_to_delete(pods.clone(), &pods, 3);
        let names: Vec<_> = picked.iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["unassigned", "pending", "running-not-ready"]);
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let now = Utc::now();
        let mut p = (*pod("a", "n", "Running", true)).clone();
        if let Some(c) = p.status.as_mut().and_then(|s| s.conditions.as_mut()) {
            c[0].last_transition_time = Some(to_time(now - chrono::Duration::seconds(5)));
        }
        assert!(is_pod_available(&p, 0, now));
        assert!(is_pod_available(&p, 3, now));
        assert!(!is_pod_available(&p, 10, now));
        assert!(until_available(&p, 10, now).is_some());
    }
}
