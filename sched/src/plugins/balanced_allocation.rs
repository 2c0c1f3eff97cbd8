//! NodeResourcesBalancedAllocation: prefer nodes whose resources stay evenly used.

use crate::framework::{MAX_NODE_SCORE, ScorePlugin};
use crate::plugins::node_resources_fit::ScoredResource;
use crate::pod_info::PodInfo;
use crate::snapshot::NodeInfo;

/// Upstream's NodeResourcesBalancedAllocation Score plugin: `(1 - std) * 100`, where `std` is
/// the standard deviation of the requested fractions of each resource (CPU and memory by
/// default) with the pod on the node. Uses real requests, and skips best-effort pods as
/// upstream does (default weight 1).
#[derive(Clone, Debug)]
pub struct NodeResourcesBalancedAllocation {
    resources: Vec<ScoredResource>,
}

impl Default for NodeResourcesBalancedAllocation {
    fn default() -> Self {
        NodeResourcesBalancedAllocation::new(&["cpu", "memory"])
    }
}

impl NodeResourcesBalancedAllocation {
    /// A plugin balancing the named resources.
    pub fn new(resources: &[&str]) -> NodeResourcesBalancedAllocation {
        NodeResourcesBalancedAllocation {
            resources: resources.iter().map(|r| ScoredResource::parse(r)).collect(),
        }
    }
}

impl ScorePlugin for NodeResourcesBalancedAllocation {
    fn name(&self) -> &str {
        "NodeResourcesBalancedAllocation"
    }

    fn pre_score(&self, pod: &PodInfo<'_>) -> bool {
        self.resources.iter().any(|r| r.pod_request(pod, true) != 0)
    }

    fn score(&self, pod: &PodInfo<'_>, node: &NodeInfo) -> i64 {
        let mut inline = [0f64; 8];
        let mut heap = Vec::new();
        let buf: &mut [f64] = if self.resources.len() <= inline.len() {
            &mut inline
        } else {
            heap.resize(self.resources.len(), 0.0);
            &mut heap
        };
        let n = self.fractions(pod, node, buf);
        balanced_resource_score(&buf[..n])
    }
}

impl NodeResourcesBalancedAllocation {
    /// Writes the requested fraction (capped at 1) of each resource the node has into `out`;
    /// returns how many were written.
    fn fractions(&self, pod: &PodInfo<'_>, node: &NodeInfo, out: &mut [f64]) -> usize {
        let mut n = 0;
        for resource in &self.resources {
            let pod_request = resource.pod_request(pod, true);
            let (allocatable, requested) =
                resource.allocatable_and_requested(node, pod_request, true);
            if allocatable == 0 {
                continue;
            }
            out[n] = (requested as f64 / allocatable as f64).min(1.0);
            n += 1;
        }
        n
    }
}

/// Upstream's `balancedResourceScorer`: `(1 - std) * 100` over the fractions.
fn balanced_resource_score(fractions: &[f64]) -> i64 {
    let std = match fractions {
        [a, b] => ((a - b) / 2.0).abs(),
        list if list.len() > 2 => {
            let mean = list.iter().sum::<f64>() / list.len() as f64;
            (list.iter().map(|f| (f - mean) * (f - mean)).sum::<f64>() / list.len() as f64).sqrt()
        }
        _ => 0.0,
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn requesting(cpu: &str, memory: &str) -> Pod {
        pod(
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}),
        )
    }

    #[test]
    fn even_use_scores_highest() {
        let plugin = NodeResourcesBalancedAllocation::default();
        let n = node("a", json!({}));
        // cpu 1/4, memory 2/8: perfectly balanced.
        assert_eq!(
            plugin.score(&PodInfo::new(&requesting("1", "2Gi")), &n),
            100
        );
        // cpu 2/4 = 0.5, memory 1/8 = 0.125: std = 0.1875 → 81.
        assert_eq!(plugin.score(&PodInfo::new(&requesting("2", "1Gi")), &n), 81);
    }

    #[test]
    fn best_effort_pods_skip_the_plugin() {
        let plugin = NodeResourcesBalancedAllocation::default();
        assert!(!plugin.pre_score(&PodInfo::new(&pod(json!({})))));
        assert!(plugin.pre_score(&PodInfo::new(&requesting("1", "0"))));
    }

    #[test]
    fn three_resources_use_the_standard_deviation() {
        let plugin = NodeResourcesBalancedAllocation::new(&["cpu", "memory", "ephemeral-storage"]);
        let n = node(
            "a",
            json!({"status": {"allocatable": {"ephemeral-storage": "10Gi"}}}),
        );
        let p = pod(
            json!({"containers": [{"name": "c", "resources": {"requests": {
                "cpu": "2", "memory": "4Gi", "ephemeral-storage": "5Gi",
            }}}]}),
        );
        assert_eq!(plugin.score(&PodInfo::new(&p), &n), 100);
    }
}
