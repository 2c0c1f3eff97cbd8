//! NodeUnschedulable: cordoned nodes take no new pods.

use k8s_openapi::api::core::v1::Taint;

use crate::framework::FilterPlugin;
use crate::plugins::taint_toleration::tolerates;
use crate::pod_info::PodInfo;
use crate::snapshot::NodeInfo;
use crate::unschedulable::Rejection;

/// Upstream's NodeUnschedulable Filter plugin: a node with `spec.unschedulable` (cordoned)
/// rejects pods, unless they tolerate the `node.kubernetes.io/unschedulable:NoSchedule` taint.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeUnschedulable;

/// Upstream's `ErrReasonUnschedulable`.
const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";

/// The taint key the node lifecycle controller puts on cordoned nodes.
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &str {
        "NodeUnschedulable"
    }

    fn filter(&self, pod: &PodInfo<'_>, node: &NodeInfo) -> Result<(), Rejection> {
        if !node.unschedulable() {
            return Ok(());
        }
        let taint = Taint {
            key: TAINT_NODE_UNSCHEDULABLE.to_string(),
            effect: "NoSchedule".to_string(),
            ..Default::default()
        };
        if pod.tolerations().iter().any(|t| tolerates(t, &taint)) {
            Ok(())
        } else {
            Err(Rejection::unresolvable(ERR_REASON_UNSCHEDULABLE))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn cordoned_nodes_reject_pods() {
        let p = pod(json!({}));
        let info = PodInfo::new(&p);
        assert!(
            NodeUnschedulable
                .filter(&info, &node("a", json!({})))
                .is_ok()
        );
        let cordoned = node("a", json!({"spec": {"unschedulable": true}}));
        assert_eq!(
            NodeUnschedulable.filter(&info, &cordoned),
            Err(Rejection::unresolvable(ERR_REASON_UNSCHEDULABLE))
        );
    }

    #[test]
    fn the_unschedulable_toleration_lets_pods_onto_cordoned_nodes() {
        let cordoned = node("a", json!({"spec": {"unschedulable": true}}));
        let p = pod(json!({"tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
        ]}));
        assert!(
            NodeUnschedulable
                .filter(&PodInfo::new(&p), &cordoned)
                .is_ok()
        );
        let wrong_effect = pod(json!({"tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoExecute"},
        ]}));
        assert!(
            NodeUnschedulable
                .filter(&PodInfo::new(&wrong_effect), &cordoned)
                .is_err()
        );
    }
}
