//! NodeResourcesFit: the pod's requests must fit the node's free allocatable resources; among
//! nodes that fit, the least (or most) allocated scores highest.

use std::borrow::Cow;

use crate::framework::{FilterPlugin, MAX_NODE_SCORE, ScorePlugin};
use crate::pod_info::PodInfo;
use crate::resources::is_scalar_resource_name;
use crate::snapshot::NodeInfo;
use crate::unschedulable::Rejection;

/// How NodeResourcesFit scores nodes (upstream's `ScoringStrategyType`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScoringStrategy {
    /// Prefer nodes with the most free capacity, spreading pods (the default).
    #[default]
    LeastAllocated,
    /// Prefer nodes with the least free capacity, packing pods.
    MostAllocated,
}

/// A resource the scoring looks at, resolved once instead of by string per node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ScoredResource {
    Cpu,
    Memory,
    EphemeralStorage,
    Scalar(String),
}

impl ScoredResource {
    pub(crate) fn parse(name: &str) -> ScoredResource {
        match name {
            "cpu" => ScoredResource::Cpu,
            "memory" => ScoredResource::Memory,
            "ephemeral-storage" => ScoredResource::EphemeralStorage,
            other => ScoredResource::Scalar(other.to_string()),
        }
    }

    /// What the pod requests of this resource; with `use_requested` false, CPU and memory use
    /// the non-zero requests.
    #[inline]
    pub(crate) fn pod_request(&self, pod: &PodInfo<'_>, use_requested: bool) -> i64 {
        let r = pod.requests();
        match self {
            ScoredResource::Cpu if use_requested => r.requests.milli_cpu,
            ScoredResource::Cpu => r.non_zero.milli_cpu,
            ScoredResource::Memory if use_requested => r.requests.memory,
            ScoredResource::Memory => r.non_zero.memory,
            ScoredResource::EphemeralStorage => r.requests.ephemeral_storage,
            ScoredResource::Scalar(name) => r.requests.scalar.get(name).copied().unwrap_or(0),
        }
    }

    /// Upstream's `calculateResourceAllocatableRequest`: the node's allocatable amount and what
    /// it would have requested with the pod on it; `(0, 0)` leaves the resource out.
    #[inline]
    pub(crate) fn allocatable_and_requested(
        &self,
        node: &NodeInfo,
        pod_request: i64,
        use_requested: bool,
    ) -> (i64, i64) {
        let requested = if use_requested {
            node.requested()
        } else {
            node.non_zero_requested()
        };
        let alloc = node.allocatable();
        match self {
            ScoredResource::Cpu => (
                alloc.milli_cpu,
                requested.milli_cpu.saturating_add(pod_request),
            ),
            ScoredResource::Memory => (alloc.memory, requested.memory.saturating_add(pod_request)),
            ScoredResource::EphemeralStorage => (
                alloc.ephemeral_storage,
                node.requested()
                    .ephemeral_storage
                    .saturating_add(pod_request),
            ),
            ScoredResource::Scalar(name) => {
                if pod_request == 0 && is_scalar_resource_name(name) {
                    return (0, 0);
                }
                match alloc.scalar.get(name) {
                    Some(&a) => (a, node.requested().get(name).saturating_add(pod_request)),
                    None => (0, 0),
                }
            }
        }
    }
}

/// Upstream's NodeResourcesFit plugin.
///
/// Filter: the node must have room for one more pod (`pods` allocatable) and enough free CPU,
/// memory, ephemeral storage and scalar resources for the pod's requests; the reasons are
/// `Too many pods` and `Insufficient <resource>`. Score: [`ScoringStrategy`] over weighted
/// resources (default LeastAllocated over CPU and memory, weight 1 each; plugin weight 1).
#[derive(Clone, Debug)]
pub struct NodeResourcesFit {
    strategy: ScoringStrategy,
    resources: Vec<(ScoredResource, i64)>,
}

impl Default for NodeResourcesFit {
    fn default() -> Self {
        NodeResourcesFit::new(
            ScoringStrategy::LeastAllocated,
            &[("cpu", 1), ("memory", 1)],
        )
    }
}

impl NodeResourcesFit {
    /// A plugin scoring with `strategy` over `resources` (name, weight).
    pub fn new(strategy: ScoringStrategy, resources: &[(&str, i64)]) -> NodeResourcesFit {
        let resources = resources
            .iter()
            .map(|(name, w)| (ScoredResource::parse(name), *w))
            .collect();
        NodeResourcesFit {
            strategy,
            resources,
        }
    }
}

/// `(capacity - requested) * 100 / capacity`, 0 when over capacity.
fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    scale(capacity - requested, capacity)
}

/// `requested * 100 / capacity`, with requested capped at capacity.
fn most_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 {
        return 0;
    }
    scale(requested.clamp(0, capacity), capacity)
}

/// `part * 100 / whole` for `0 <= part <= whole`, exact even when `part * 100` overflows.
fn scale(part: i64, whole: i64) -> i64 {
    match part.checked_mul(MAX_NODE_SCORE) {
        Some(p) => p / whole,
        None => ((i128::from(part) * i128::from(MAX_NODE_SCORE)) / i128::from(whole)) as i64,
    }
}

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &str {
        "NodeResourcesFit"
    }

    fn filter(&self, pod: &PodInfo<'_>, node: &NodeInfo) -> Result<(), Rejection> {
        let mut reasons: Vec<Cow<'static, str>> = Vec::new();
        let alloc = node.allocatable();
        let used = node.requested();
        if node.pod_count() as i64 + 1 > alloc.allowed_pod_number {
            reasons.push("Too many pods".into());
        }
        let req = &pod.requests().requests;
        let free = |a: i64, u: i64| a.saturating_sub(u);
        if req.milli_cpu > 0 && req.milli_cpu > free(alloc.milli_cpu, used.milli_cpu) {
            reasons.push("Insufficient cpu".into());
        }
        if req.memory > 0 && req.memory > free(alloc.memory, used.memory) {
            reasons.push("Insufficient memory".into());
        }
        if req.ephemeral_storage > 0
            && req.ephemeral_storage > free(alloc.ephemeral_storage, used.ephemeral_storage)
        {
            reasons.push("Insufficient ephemeral-storage".into());
        }
        for (name, &q) in &req.scalar {
            if q > 0 && q > free(alloc.get(name), used.get(name)) {
                reasons.push(format!("Insufficient {name}").into());
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(Rejection::with_reasons(reasons))
        }
    }
}

impl ScorePlugin for NodeResourcesFit {
    fn name(&self) -> &str {
        "NodeResourcesFit"
    }

    fn score(&self, pod: &PodInfo<'_>, node: &NodeInfo) -> i64 {
        let (mut node_score, mut weight_sum) = (0i64, 0i64);
        for (resource, weight) in &self.resources {
            let pod_request = resource.pod_request(pod, false);
            let (allocatable, requested) =
                resource.allocatable_and_requested(node, pod_request, false);
            if allocatable == 0 {
                continue;
            }
            let score = match self.strategy {
                ScoringStrategy::LeastAllocated => least_requested_score(requested, allocatable),
                ScoringStrategy::MostAllocated => most_requested_score(requested, allocatable),
            };
            node_score += score * weight;
            weight_sum += weight;
        }
        if weight_sum == 0 {
            0
        } else {
            node_score / weight_sum
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};
    use crate::snapshot::Snapshot;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::json;

    fn requesting(cpu: &str, memory: &str) -> Pod {
        pod(
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}),
        )
    }

    fn reasons(r: Result<(), Rejection>) -> Vec<String> {
        r.err()
            .map(|r| r.reasons().iter().map(|s| s.to_string()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn requests_must_fit_free_capacity() {
        let fit = NodeResourcesFit::default();
        let n = node("a", json!({}));
        assert!(
            fit.filter(&PodInfo::new(&requesting("4", "8Gi")), &n)
                .is_ok()
        );
        assert_eq!(
            reasons(fit.filter(&PodInfo::new(&requesting("4100m", "1Gi")), &n)),
            ["Insufficient cpu"]
        );
        assert_eq!(
            reasons(fit.filter(&PodInfo::new(&requesting("5", "9Gi")), &n)),
            ["Insufficient cpu", "Insufficient memory"]
        );
    }

    #[test]
    fn placed_pods_use_up_capacity() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "a"},
            "status": {"allocatable": {"cpu": "2", "memory": "8Gi", "pods": "2"}},
        }))
        .expect("node");
        let mut placed = requesting("1500m", "1Gi");
        placed.metadata.uid = Some("placed".into());
        placed.spec.as_mut().expect("spec").node_name = Some("a".into());
        let snapshot = Snapshot::new(vec![node], vec![placed]);
        let n = snapshot.node("a").expect("a");
        let fit = NodeResourcesFit::default();
        assert_eq!(
            reasons(fit.filter(&PodInfo::new(&requesting("600m", "1Gi")), n)),
            ["Insufficient cpu"]
        );
        assert!(
            fit.filter(&PodInfo::new(&requesting("500m", "1Gi")), n)
                .is_ok()
        );
    }

    #[test]
    fn the_pods_allocatable_caps_the_pod_count_even_for_best_effort_pods() {
        let fit = NodeResourcesFit::default();
        let full = node("a", json!({"status": {"allocatable": {"pods": "0"}}}));
        assert_eq!(
            reasons(fit.filter(&PodInfo::new(&pod(json!({}))), &full)),
            ["Too many pods"]
        );
    }

    #[test]
    fn extended_resources_are_checked() {
        let fit = NodeResourcesFit::default();
        let gpu_pod = pod(
            json!({"containers": [{"name": "c", "resources": {"limits": {"example.com/gpu": "2"}}}]}),
        );
        let info = PodInfo::new(&gpu_pod);
        assert_eq!(
            reasons(fit.filter(&info, &node("a", json!({})))),
            ["Insufficient example.com/gpu"]
        );
        let gpu_node = node(
            "b",
            json!({"status": {"allocatable": {"example.com/gpu": "4"}}}),
        );
        assert!(fit.filter(&info, &gpu_node).is_ok());
    }

    #[test]
    fn least_allocated_scores_free_capacity() {
        // 4 CPUs, 8 GiB; pod asks 1 CPU and 2 GiB: (75 + 75) / 2.
        let fit = NodeResourcesFit::default();
        let p = requesting("1", "2Gi");
        assert_eq!(fit.score(&PodInfo::new(&p), &node("a", json!({}))), 75);
        // Best-effort pods count 100m and 200 MiB: cpu 97, memory (8192-200)*100/8192 = 97.
        assert_eq!(
            fit.score(&PodInfo::new(&pod(json!({}))), &node("a", json!({}))),
            97
        );
        // Over capacity scores 0 for that resource.
        assert_eq!(
            fit.score(
                &PodInfo::new(&requesting("8", "2Gi")),
                &node("a", json!({}))
            ),
            37
        );
    }

    #[test]
    fn most_allocated_and_resource_weights() {
        let fit =
            NodeResourcesFit::new(ScoringStrategy::MostAllocated, &[("cpu", 3), ("memory", 1)]);
        let p = requesting("1", "4Gi");
        // cpu 25 * 3 + memory 50 * 1 = 125 / 4
        assert_eq!(fit.score(&PodInfo::new(&p), &node("a", json!({}))), 31);
    }
}
