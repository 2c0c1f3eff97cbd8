//! NodeName: a pod that names its node only fits that node.

use crate::framework::FilterPlugin;
use crate::pod_info::PodInfo;
use crate::snapshot::NodeInfo;
use crate::unschedulable::Rejection;

/// Upstream's NodeName Filter plugin: when `spec.nodeName` is set, only that node fits.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeName;

/// Upstream's `ErrReason`.
const ERR_REASON: &str = "node(s) didn't match the requested node name";

impl FilterPlugin for NodeName {
    fn name(&self) -> &str {
        "NodeName"
    }

    fn pre_filter(&self, pod: &PodInfo<'_>) -> bool {
        pod.node_name().is_some()
    }

    fn filter(&self, pod: &PodInfo<'_>, node: &NodeInfo) -> Result<(), Rejection> {
        match pod.node_name() {
            Some(name) if name != node.name() => Err(Rejection::unresolvable(ERR_REASON)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn only_the_named_node_fits() {
        let p = pod(json!({"nodeName": "a"}));
        let info = PodInfo::new(&p);
        assert!(NodeName.pre_filter(&info));
        assert!(NodeName.filter(&info, &node("a", json!({}))).is_ok());
        assert_eq!(
            NodeName.filter(&info, &node("b", json!({}))),
            Err(Rejection::unresolvable(ERR_REASON))
        );
    }

    #[test]
    fn pods_without_a_node_name_skip_the_plugin() {
        let p = pod(json!({}));
        assert!(!NodeName.pre_filter(&PodInfo::new(&p)));
    }
}
