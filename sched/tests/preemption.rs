//! DefaultPreemption and the NodePorts filter through the public framework: which victims, on
//! which node, and why not.

use k8s_openapi::api::core::v1::{Node, Pod};
use kybernetes_sched::{Framework, PostFilter, Scheduler, Snapshot};
use serde_json::{Value, json};

fn node(name: &str, cpu: &str) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}},
    }))
    .expect("node")
}

fn pod(name: &str, node: Option<&str>, priority: i32, cpu: &str, extra: Value) -> Pod {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "uid": name, "labels": {"app": name}},
        "spec": {"nodeName": node, "priority": priority,
                 "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
    });
    if let (Some(spec), Some(e)) = (v["spec"].as_object_mut(), extra.as_object()) {
        spec.extend(e.clone());
    }
    serde_json::from_value(v).expect("pod")
}

fn preempt(snapshot: &Snapshot, preemptor: &Pod) -> PostFilter {
    let fw = Framework::default_plugins();
    let failure = fw.schedule(preemptor, snapshot).expect_err("fits nowhere");
    fw.post_filter(preemptor, snapshot, &failure)
}

fn nominated(result: PostFilter) -> (String, Vec<String>) {
    match result {
        PostFilter::Nominated(p) => (
            p.node,
            p.victims
                .iter()
                .map(|v| v.metadata.name.clone().unwrap_or_default())
                .collect(),
        ),
        other => panic!("expected a nomination, got {other:?}"),
    }
}

#[test]
fn the_fewest_lowest_priority_pods_are_preempted() {
    let snapshot = Snapshot::new(
        vec![node("a", "4")],
        vec![
            pod("low", Some("a"), 1, "2", json!({})),
            pod("mid", Some("a"), 5, "2", json!({})),
        ],
    );
    let high = pod("high", None, 10, "2", json!({}));
    // Removing both fits; putting `mid` back (more important) still fits, so only `low` goes.
    assert_eq!(
        nominated(preempt(&snapshot, &high)),
        ("a".into(), vec!["low".into()])
    );
}

#[test]
fn pods_of_equal_or_higher_priority_are_never_victims() {
    let snapshot = Snapshot::new(
        vec![node("a", "2")],
        vec![pod("peer", Some("a"), 10, "2", json!({}))],
    );
    let p = pod("p", None, 10, "2", json!({}));
    match preempt(&snapshot, &p) {
        PostFilter::Unresolved {
            message,
            clear_nomination,
        } => {
            assert_eq!(
                message,
                "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
            );
            assert!(clear_nomination);
        }
        other => panic!("expected no preemption, got {other:?}"),
    }
}

#[test]
fn a_budget_protected_pod_is_spared_while_another_victim_will_do() {
    let mut snapshot = Snapshot::new(
        vec![node("a", "4"), node("b", "4")],
        vec![
            pod("guarded", Some("a"), 1, "3", json!({})),
            pod("free", Some("b"), 5, "3", json!({})),
        ],
    );
    snapshot.upsert_pdb(
        serde_json::from_value(json!({
            "metadata": {"name": "guard", "namespace": "default"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}},
            "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1},
        }))
        .expect("pdb"),
    );
    let high = pod("high", None, 10, "2", json!({}));
    // `guarded` has the lower priority, but evicting it would violate its budget.
    assert_eq!(
        nominated(preempt(&snapshot, &high)),
        ("b".into(), vec!["free".into()])
    );
}

#[test]
fn the_node_with_the_lowest_priority_victims_is_chosen() {
    let snapshot = Snapshot::new(
        vec![node("a", "2"), node("b", "2"), node("c", "2")],
        vec![
            pod("a1", Some("a"), 5, "2", json!({})),
            pod("b1", Some("b"), 2, "1", json!({})),
            pod("b2", Some("b"), 2, "1", json!({})),
            pod("c1", Some("c"), 3, "2", json!({})),
        ],
    );
    let high = pod("high", None, 10, "2", json!({}));
    let (node, mut victims) = nominated(preempt(&snapshot, &high));
    victims.sort();
    assert_eq!(
        (node.as_str(), victims),
        ("b", vec!["b1".to_string(), "b2".to_string()])
    );
}

#[test]
fn preemption_policy_never_does_not_preempt() {
    let snapshot = Snapshot::new(
        vec![node("a", "2")],
        vec![pod("low", Some("a"), 1, "2", json!({}))],
    );
    let p = pod(
        "polite",
        None,
        10,
        "2",
        json!({"preemptionPolicy": "Never"}),
    );
    let fw = Framework::default_plugins();
    let mut failure = fw.schedule(&p, &snapshot).expect_err("fits nowhere");
    match fw.post_filter(&p, &snapshot, &failure) {
        PostFilter::Unresolved {
            message,
            clear_nomination,
        } => {
            assert!(!clear_nomination);
            failure.set_post_filter_message(message);
            assert_eq!(
                failure.to_string(),
                "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.."
            );
        }
        other => panic!("expected no preemption, got {other:?}"),
    }
}

#[test]
fn unresolvable_nodes_are_not_preemption_candidates() {
    let mut tainted = node("a", "2");
    tainted.spec = Some(
        serde_json::from_value(
            json!({"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}),
        )
        .expect("spec"),
    );
    let snapshot = Snapshot::new(
        vec![tainted],
        vec![pod("low", Some("a"), 1, "2", json!({}))],
    );
    match preempt(&snapshot, &pod("high", None, 10, "1", json!({}))) {
        PostFilter::Unresolved { message, .. } => assert_eq!(
            message,
            "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        ),
        other => panic!("expected no preemption, got {other:?}"),
    }
}

#[test]
fn a_nominated_pod_keeps_its_room_from_lower_priority_pods() {
    let mut snapshot = Snapshot::new(vec![node("a", "4")], vec![]);
    let nominee = std::sync::Arc::new(pod("nominee", None, 10, "3", json!({})));
    snapshot
        .nominated_mut()
        .nominate("nominee".into(), nominee, "a".into());
    let fw = Framework::default_plugins();
    let err = fw
        .schedule(&pod("low", None, 1, "2", json!({})), &snapshot)
        .expect_err("the room is held");
    assert_eq!(
        err.to_string(),
        "0/1 nodes are available: 1 Insufficient cpu."
    );
    assert!(
        fw.schedule(&pod("higher", None, 20, "2", json!({})), &snapshot)
            .is_ok()
    );
}

#[test]
fn a_taken_host_port_keeps_a_second_pod_off_the_node() {
    let ports =
        json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]});
    let snapshot = Snapshot::new(
        vec![node("a", "4")],
        vec![pod("first", Some("a"), 0, "1", ports.clone())],
    );
    let err = Framework::default_plugins()
        .without("DefaultPreemption")
        .schedule(&pod("second", None, 0, "1", ports), &snapshot)
        .expect_err("port taken");
    assert_eq!(
        err.to_string(),
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."
    );
}

/// A node with plenty of room, labelled with its hostname (the topology key below).
fn roomy_node(name: &str) -> Node {
    let mut n = node(name, "8");
    n.metadata.labels = Some([("kubernetes.io/hostname".to_string(), name.to_string())].into());
    n
}

fn anti_affinity_to(app: &str) -> Value {
    json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"},
    ]}}})
}

#[test]
fn a_pod_preempts_the_lower_priority_pod_its_anti_affinity_rejects() {
    let mut low = pod("low", Some("a"), 1, "100m", json!({}));
    let mut peer = pod("peer", Some("b"), 100, "100m", json!({}));
    for p in [&mut low, &mut peer] {
        p.metadata.labels = Some([("app".to_string(), "blocker".to_string())].into());
    }
    let snapshot = Snapshot::new(vec![roomy_node("a"), roomy_node("b")], vec![low, peer]);
    let high = pod("high", None, 10, "100m", anti_affinity_to("blocker"));
    // Only the anti-affinity keeps `high` off both nodes; removing `low` clears node a (the
    // dry run updates InterPodAffinity's counts), while `peer` outranks it.
    assert_eq!(
        nominated(preempt(&snapshot, &high)),
        ("a".into(), vec!["low".into()])
    );
}

#[test]
fn a_lower_priority_pod_whose_anti_affinity_rejects_the_preemptor_is_preempted() {
    let snapshot = Snapshot::new(
        vec![roomy_node("a")],
        vec![
            pod("other", Some("a"), 1, "100m", json!({})),
            pod("picky", Some("a"), 1, "100m", anti_affinity_to("high")),
        ],
    );
    let high = pod("high", None, 10, "100m", json!({}));
    // Both are below `high`; putting `other` back still fits, `picky` must go.
    assert_eq!(
        nominated(preempt(&snapshot, &high)),
        ("a".into(), vec!["picky".into()])
    );
}

#[test]
fn a_missing_affinity_match_is_not_resolved_by_preemption() {
    let snapshot = Snapshot::new(
        vec![roomy_node("a")],
        vec![pod("low", Some("a"), 1, "100m", json!({}))],
    );
    let affine = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "absent"}}, "topologyKey": "kubernetes.io/hostname"},
    ]}}});
    let high = pod("high", None, 10, "100m", affine);
    match preempt(&snapshot, &high) {
        PostFilter::Unresolved { message, .. } => assert_eq!(
            message,
            "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        ),
        other => panic!("expected no preemption, got {other:?}"),
    }
}

#[test]
fn a_pod_preempts_one_of_the_pods_that_skew_its_spread() {
    let mut full = node("b", "1");
    full.metadata.labels = roomy_node("b").metadata.labels;
    let web = |name: &str, node: &str, priority: i32, cpu: &str| {
        let mut p = pod(name, Some(node), priority, cpu, json!({}));
        p.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        p
    };
    let snapshot = Snapshot::new(
        vec![roomy_node("a"), full],
        vec![
            web("low1", "a", 1, "100m"),
            web("low2", "a", 1, "100m"),
            web("peer", "b", 100, "1"),
        ],
    );
    let mut high = pod(
        "high",
        None,
        10,
        "100m",
        json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]}),
    );
    high.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
    // Node a holds 2 of the pods against b's 1: one of its two must go (PodTopologySpread's
    // counts follow the dry run); node b is full with a pod that outranks `high`.
    let (node, victims) = nominated(preempt(&snapshot, &high));
    assert_eq!(node, "a");
    assert_eq!(victims.len(), 1, "{victims:?}");
}
