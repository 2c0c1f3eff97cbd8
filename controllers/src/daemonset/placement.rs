//! Which nodes run a daemon pod (upstream's `NodeShouldRunDaemonPod`), and the tolerations and
//! node affinity every daemon pod gets (upstream's `AddOrUpdateDaemonPodTolerations` and
//! `ReplaceDaemonSetPodNodeNameNodeAffinity`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};

/// Whether a node should run the daemon pod, and whether a pod already there may stay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// A pod should be created on the node if it has none.
    pub should_run: bool,
    /// A pod already on the node keeps running (an untolerated `NoSchedule` taint does not
    /// evict it; an untolerated `NoExecute` taint does).
    pub should_continue_running: bool,
}

/// The tolerations the DaemonSet controller adds to every daemon pod, so that node conditions
/// do not evict it or keep it off a node: not-ready and unreachable (`NoExecute`), disk, memory
/// and PID pressure and unschedulable (`NoSchedule`), and network-unavailable for host-network
/// pods.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        tolerations
            .retain(|t| !(t.key.as_deref() == Some(key) && t.effect.as_deref() == Some(effect)));
        tolerations.push(Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        });
    }
}

/// Pins the pod to `node` with a required node affinity on `metadata.name`, replacing any
/// other required terms (the node was already checked against them); the scheduler binds it.
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
        match_expressions: None,
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
}

/// The node a daemon pod is for: its `spec.nodeName`, else the pinned `metadata.name`.
pub fn node_of_daemon_pod(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.iter().flatten().find_map(|r| {
            (r.key == "metadata.name" && r.operator == "In")
                .then(|| r.values.as_ref()?.first().cloned())
                .flatten()
        })
    })
}

/// Upstream's `NodeShouldRunDaemonPod` for a pod built from `template` (with the daemon
/// tolerations already added).
pub fn node_should_run_daemon_pod(node: &Node, template: &PodSpec) -> Placement {
    let never = Placement {
        should_run: false,
        should_continue_running: false,
    };
    let name = node.metadata.name.clone().unwrap_or_default();
    if let Some(want) = template.node_name.as_ref().filter(|n| !n.is_empty())
        && *want != name
    {
        return never;
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selector_ok = template
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    if !selector_ok || !required_affinity_matches(template, &name, &labels) {
        return never;
    }
    let tolerations = template.tolerations.as_deref().unwrap_or_default();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let untolerated = |effect: &str| {
        taints
            .iter()
            .filter(|t| t.effect == effect)
            .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
    };
    if untolerated("NoExecute") {
        return never;
    }
    Placement {
        should_run: !untolerated("NoSchedule"),
        should_continue_running: true,
    }
}

/// Whether a toleration tolerates a taint (upstream's `ToleratesTaint`).
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = tol.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    match tol.operator.as_deref().unwrap_or("Equal") {
        "Exists" => tol
            .key
            .as_deref()
            .is_none_or(|k| k.is_empty() || k == taint.key),
        _ => {
            tol.key.as_deref() == Some(taint.key.as_str())
                && tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

fn required_affinity_matches(
    spec: &PodSpec,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(selector) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    else {
        return true;
    };
    selector.node_selector_terms.iter().any(|term| {
        let exprs = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        (!exprs.is_empty() || !fields.is_empty())
            && exprs
                .iter()
                .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
            && fields
                .iter()
                .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(name)))
    })
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((value.and_then(number), values.first().and_then(|x| number(x))), (Some(a), Some(b)) if a > b)
        }
        "Lt" => {
            matches!((value.and_then(number), values.first().and_then(|x| number(x))), (Some(a), Some(b)) if a < b)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"taints": taints}}),
        )
        .expect("node")
    }

    #[test]
    fn untolerated_no_schedule_keeps_running_pods_and_no_execute_evicts() {
        let mut spec = PodSpec::default();
        add_daemon_tolerations(&mut spec);
        let n = node(json!({}), json!([{"key": "gpu", "effect": "NoSchedule"}]));
        assert_eq!(
            node_should_run_daemon_pod(&n, &spec),
            Placement {
                should_run: false,
                should_continue_running: true
            }
        );
        let n = node(json!({}), json!([{"key": "gone", "effect": "NoExecute"}]));
        assert!(!node_should_run_daemon_pod(&n, &spec).should_continue_running);
        let n = node(
            json!({}),
            json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
        );
        assert!(
            node_should_run_daemon_pod(&n, &spec).should_run,
            "daemon pods tolerate cordoned nodes"
        );
    }

    #[test]
    fn node_selector_and_required_affinity_choose_nodes() {
        let spec: PodSpec = serde_json::from_value(json!({
            "containers": [],
            "nodeSelector": {"disk": "ssd"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}
        }))
        .expect("spec");
        assert!(
            node_should_run_daemon_pod(
                &node(json!({"disk": "ssd", "zone": "a"}), json!([])),
                &spec
            )
            .should_run
        );
        assert!(
            !node_should_run_daemon_pod(
                &node(json!({"disk": "ssd", "zone": "b"}), json!([])),
                &spec
            )
            .should_run
        );
        assert!(
            !node_should_run_daemon_pod(&node(json!({"zone": "a"}), json!([])), &spec).should_run
        );
    }

    #[test]
    fn a_pinned_pod_names_its_node() {
        let mut spec = PodSpec::default();
        pin_to_node(&mut spec, "n7");
        let pod = Pod {
            spec: Some(spec),
            ..Default::default()
        };
        assert_eq!(node_of_daemon_pod(&pod).as_deref(), Some("n7"));
    }
}
