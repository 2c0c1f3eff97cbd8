//! NodeAffinity: `spec.nodeSelector` and node affinity, required and preferred.

use crate::framework::{FilterPlugin, MAX_NODE_SCORE, ScorePlugin, default_normalize_score};
use crate::pod_info::PodInfo;
use crate::snapshot::NodeInfo;
use crate::unschedulable::Rejection;

/// Upstream's NodeAffinity plugin.
///
/// Filter: the node must match `spec.nodeSelector` and one of the required node selector terms
/// (`In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt` on labels; `In`/`NotIn` on
/// `metadata.name`). Score: the sum of the weights of the preferred terms the node matches,
/// scaled so the best node scores 100 (default weight 2).
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeAffinity;

/// Upstream's `ErrReasonPod`.
const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &str {
        "NodeAffinity"
    }

    fn pre_filter(&self, pod: &PodInfo<'_>) -> bool {
        !pod.required_affinity().is_empty()
    }

    fn filter(&self, pod: &PodInfo<'_>, node: &NodeInfo) -> Result<(), Rejection> {
        if pod.required_affinity().matches(node) {
            Ok(())
        } else {
            Err(Rejection::unresolvable(ERR_REASON_POD))
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &str {
        "NodeAffinity"
    }

    fn pre_score(&self, pod: &PodInfo<'_>) -> bool {
        !pod.preferred_affinity().is_empty()
    }

    fn score(&self, pod: &PodInfo<'_>, node: &NodeInfo) -> i64 {
        pod.preferred_affinity().score(node)
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize_score(MAX_NODE_SCORE, false, scores);
    }

    fn weight(&self) -> i64 {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};
    use serde_json::{Value, json};

    fn labelled(name: &str, labels: Value) -> NodeInfo {
        node(name, json!({"metadata": {"labels": labels}}))
    }

    fn required(exprs: Value) -> k8s_openapi::api::core::v1::Pod {
        pod(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": exprs}],
            }}}}),
        )
    }

    fn fits(p: &k8s_openapi::api::core::v1::Pod, n: &NodeInfo) -> bool {
        NodeAffinity.filter(&PodInfo::new(p), n).is_ok()
    }

    #[test]
    fn node_selector_must_match_every_label() {
        let p = pod(json!({"nodeSelector": {"disk": "ssd", "zone": "a"}}));
        assert!(fits(
            &p,
            &labelled("n", json!({"disk": "ssd", "zone": "a", "x": "y"}))
        ));
        assert!(!fits(&p, &labelled("n", json!({"disk": "ssd"}))));
        assert_eq!(
            NodeAffinity.filter(&PodInfo::new(&p), &labelled("n", json!({}))),
            Err(Rejection::unresolvable(ERR_REASON_POD))
        );
    }

    #[test]
    fn required_affinity_operators() {
        let n = labelled("n", json!({"zone": "a", "cores": "8"}));
        assert!(fits(
            &required(json!([{"key": "zone", "operator": "In", "values": ["a", "b"]}])),
            &n
        ));
        assert!(!fits(
            &required(json!([{"key": "zone", "operator": "NotIn", "values": ["a"]}])),
            &n
        ));
        assert!(fits(
            &required(json!([{"key": "zone", "operator": "Exists"}])),
            &n
        ));
        assert!(!fits(
            &required(json!([{"key": "zone", "operator": "DoesNotExist"}])),
            &n
        ));
        assert!(fits(
            &required(json!([{"key": "gpu", "operator": "DoesNotExist"}])),
            &n
        ));
        assert!(fits(
            &required(json!([{"key": "cores", "operator": "Gt", "values": ["4"]}])),
            &n
        ));
        assert!(!fits(
            &required(json!([{"key": "cores", "operator": "Gt", "values": ["8"]}])),
            &n
        ));
        assert!(fits(
            &required(json!([{"key": "cores", "operator": "Lt", "values": ["16"]}])),
            &n
        ));
        assert!(!fits(
            &required(json!([{"key": "zone", "operator": "Lt", "values": ["16"]}])),
            &n
        ));
        assert!(!fits(
            &required(json!([{"key": "cores", "operator": "Gt", "values": ["x"]}])),
            &n
        ));
    }

    #[test]
    fn terms_are_ored_and_empty_terms_match_nothing() {
        let n = labelled("n", json!({"zone": "b"}));
        let p = pod(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                ],
            }}}}),
        );
        assert!(fits(&p, &n));
        let empty = pod(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{}],
            }}}}),
        );
        assert!(!fits(&empty, &n));
    }

    #[test]
    fn match_fields_select_by_node_name() {
        let p = pod(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}],
            }}}}),
        );
        assert!(fits(&p, &labelled("n1", json!({}))));
        assert!(!fits(&p, &labelled("n2", json!({}))));
    }

    #[test]
    fn preferred_terms_add_their_weights_and_normalize_to_100() {
        let p = pod(
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
                {"weight": 30, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}},
                {"weight": 0, "preference": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}},
            ]}}}),
        );
        let info = PodInfo::new(&p);
        assert!(NodeAffinity.pre_score(&info));
        let nodes = [
            labelled("a", json!({"zone": "a"})),
            labelled("b", json!({"zone": "a", "disk": "ssd"})),
            labelled("c", json!({})),
        ];
        let mut scores: Vec<i64> = nodes.iter().map(|n| NodeAffinity.score(&info, n)).collect();
        assert_eq!(scores, [10, 40, 0]);
        NodeAffinity.normalize(&mut scores);
        assert_eq!(scores, [25, 100, 0]);
        let plain = pod(json!({}));
        assert!(!NodeAffinity.pre_score(&PodInfo::new(&plain)));
        assert!(!NodeAffinity.pre_filter(&PodInfo::new(&plain)));
    }
}
