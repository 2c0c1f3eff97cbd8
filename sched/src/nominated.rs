//! Nominated pods: pending pods that preempted others and wait for their victims to go
//! (`status.nominatedNodeName`). Filters count them on their nominated node for every pod of
//! equal or lower priority, so the room a preemption made is not taken by a less important pod
//! (upstream's `nominator` and `RunFilterPluginsWithNominatedPods`).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::snapshot::pod_key;

/// A pod's `spec.priority` (0 when unset, as upstream's `PodPriority`).
pub fn pod_priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// The pending pods nominated to each node.
#[derive(Clone, Debug, Default)]
pub struct Nominator {
    by_node: HashMap<String, Vec<(String, Arc<Pod>)>>,
    node_of: HashMap<String, String>,
}

impl Nominator {
    /// Records (or moves) the nomination of the pod known by `key`.
    pub fn nominate(&mut self, key: String, pod: Arc<Pod>, node: String) {
        self.remove(&key);
        self.by_node
            .entry(node.clone())
            .or_default()
            .push((key.clone(), pod));
        self.node_of.insert(key, node);
    }

    /// Drops the nomination of the pod known by `key`, if any.
    pub fn remove(&mut self, key: &str) {
        let Some(node) = self.node_of.remove(key) else {
            return;
        };
        if let Some(list) = self.by_node.get_mut(&node) {
            list.retain(|(k, _)| k != key);
            if list.is_empty() {
                self.by_node.remove(&node);
            }
        }
    }

    /// The node the pod known by `key` is nominated to.
    pub fn node_of(&self, key: &str) -> Option<&str> {
        self.node_of.get(key).map(String::as_str)
    }

    /// The pods nominated to `node`.
    pub fn on_node(&self, node: &str) -> &[(String, Arc<Pod>)] {
        self.by_node
            .get(node)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Whether no pod is nominated anywhere (the fast path of every filter run).
    pub fn is_empty(&self) -> bool {
        self.by_node.is_empty()
    }
}

/// The pods nominated to `node` that a filter run for `pod` must count: those of priority at
/// least `pod`'s, other than `pod` itself (upstream's `addGENominatedPods`).
pub(crate) fn nominated_for<'n>(
    nominator: &'n Nominator,
    pod: &Pod,
    node: &str,
) -> Vec<&'n Arc<Pod>> {
    if nominator.is_empty() {
        return Vec::new();
    }
    let priority = pod_priority(pod);
    let own = pod_key(pod);
    nominator
        .on_node(node)
        .iter()
        .filter(|(key, nominated)| *key != own && pod_priority(nominated) >= priority)
        .map(|(_, p)| p)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing;
    use crate::snapshot::NodeInfo;
    use serde_json::json;

    fn pending(name: &str, priority: i32, cpu: &str) -> Arc<Pod> {
        let mut p = testing::pod(
            json!({"priority": priority, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}),
        );
        p.metadata.name = Some(name.into());
        p.metadata.uid = Some(name.into());
        Arc::new(p)
    }

    /// Whether `pod` fits `node`'s CPU with the nominated pods it must count.
    fn fits(n: &Nominator, pod: &Pod, node: &NodeInfo) -> bool {
        let cpu = |p: &Pod| crate::resources::PodRequests::of(p).requests.milli_cpu;
        let nominated: i64 = nominated_for(n, pod, node.name())
            .into_iter()
            .map(|p| cpu(p))
            .sum();
        node.requested().milli_cpu + nominated + cpu(pod) <= node.allocatable().milli_cpu
    }

    #[test]
    fn nominated_pods_of_equal_or_higher_priority_hold_their_room() {
        let node = testing::node("a", json!({}));
        let mut n = Nominator::default();
        n.nominate("big".into(), pending("big", 10, "3"), "a".into());
        let low = pending("low", 5, "2");
        assert!(!fits(&n, &low, &node));
        let high = pending("high", 20, "2");
        assert!(fits(&n, &high, &node));
        // The nominated pod itself does not count twice.
        assert!(fits(&n, &pending("big", 10, "3"), &node));
        n.remove("big");
        assert!(n.is_empty());
        assert!(fits(&n, &low, &node));
    }
}
