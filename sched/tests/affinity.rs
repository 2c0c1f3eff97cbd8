//! InterPodAffinity and PodTopologySpread through the default framework and a snapshot.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use kybernetes_sched::{Framework, Scheduler, Snapshot};
use serde_json::{Value, json};

fn node(name: &str, zone: &str) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone}},
        "status": {"allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"}},
    }))
    .expect("node")
}

fn pod(name: &str, labels: Value, spec: Value) -> Pod {
    let mut s = json!({"containers": [{"name": "c"}]});
    if let (Some(s), Some(e)) = (s.as_object_mut(), spec.as_object()) {
        s.extend(e.clone());
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": labels},
        "spec": s,
    }))
    .expect("pod")
}

fn term(labels: Value, key: &str) -> Value {
    json!({"labelSelector": {"matchLabels": labels}, "topologyKey": key})
}

const HOST: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";

fn schedule(fw: &Framework, snapshot: &mut Snapshot, p: &Pod) -> String {
    let node = fw.schedule(p, snapshot).expect("schedulable");
    snapshot.assume(p, &node).expect("assume");
    node
}

fn cluster(n: usize) -> Snapshot {
    Snapshot::new(
        (0..n)
            .map(|i| node(&format!("node-{i}"), &format!("zone-{}", i % 3)))
            .collect(),
        vec![],
    )
}

#[test]
fn required_affinity_lands_next_to_the_selected_pod() {
    let fw = Framework::default_plugins();
    let mut s = cluster(10);
    let first = pod("pod-affinity-1", json!({"security": "S1"}), json!({}));
    let at = schedule(&fw, &mut s, &first);
    let second = pod(
        "pod-affinity-2",
        json!({}),
        json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term(json!({"security": "S1"}), HOST)]}}}),
    );
    for _ in 0..5 {
        assert_eq!(fw.schedule(&second, &s).expect("fits"), at);
    }
}

#[test]
fn the_first_pod_of_a_self_affine_group_goes_anywhere_and_the_rest_follow() {
    let fw = Framework::default_plugins();
    let mut s = cluster(6);
    let spec = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term(json!({"app": "db"}), ZONE)]}}});
    let first = schedule(
        &fw,
        &mut s,
        &pod("db-0", json!({"app": "db"}), spec.clone()),
    );
    let zone = s.node(&first).expect("node").labels()[ZONE].clone();
    for i in 1..6 {
        let n = schedule(
            &fw,
            &mut s,
            &pod(&format!("db-{i}"), json!({"app": "db"}), spec.clone()),
        );
        assert_eq!(s.node(&n).expect("node").labels()[ZONE], zone);
    }
    // A pod selecting a group that does not exist (and not itself) fits nowhere.
    let lonely = pod(
        "lonely",
        json!({}),
        json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term(json!({"app": "none"}), ZONE)]}}}),
    );
    let err = fw.schedule(&lonely, &s).expect_err("no group");
    assert_eq!(
        err.to_string(),
        "0/6 nodes are available: 6 node(s) didn't match pod affinity rules."
    );
}

#[test]
fn required_anti_affinity_keeps_replicas_off_the_selected_pods_node() {
    let fw = Framework::default_plugins();
    let mut s = cluster(4);
    let first = pod("pod-affinity-1", json!({"security": "S1"}), json!({}));
    let at = schedule(&fw, &mut s, &first);
    for i in 0..3 {
        let p = pod(
            &format!("pod-affinity-3-{i}"),
            json!({"app": "three"}),
            json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term(json!({"security": "S1"}), HOST)]}}}),
        );
        assert_ne!(schedule(&fw, &mut s, &p), at);
    }
}

#[test]
fn existing_pods_anti_affinity_repels_the_incoming_pod() {
    let fw = Framework::default_plugins();
    let mut s = cluster(2);
    let loner = pod(
        "loner",
        json!({}),
        json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term(json!({"app": "web"}), ZONE)]}}}),
    );
    let at = schedule(&fw, &mut s, &loner);
    let web = pod("web", json!({"app": "web"}), json!({}));
    assert_ne!(fw.schedule(&web, &s).expect("fits"), at);
    s.forget(&loner);
    let mut s2 = Snapshot::new(vec![node("only", "z")], vec![]);
    schedule(&fw, &mut s2, &loner);
    let err = fw.schedule(&web, &s2).expect_err("repelled");
    assert_eq!(
        err.to_string(),
        "0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules."
    );
}

#[test]
fn anti_affinity_to_own_pods_fills_each_node_once() {
    let fw = Framework::default_plugins();
    let mut s = cluster(4);
    let spec = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term(json!({"app": "web"}), HOST)]}}});
    let mut nodes = std::collections::BTreeSet::new();
    for i in 0..4 {
        nodes.insert(schedule(
            &fw,
            &mut s,
            &pod(&format!("web-{i}"), json!({"app": "web"}), spec.clone()),
        ));
    }
    assert_eq!(nodes.len(), 4);
    let err = fw
        .schedule(&pod("web-4", json!({"app": "web"}), spec), &s)
        .expect_err("full");
    assert_eq!(
        err.to_string(),
        "0/4 nodes are available: 4 node(s) didn't match pod anti-affinity rules."
    );
}

#[test]
fn namespace_selector_uses_namespace_labels() {
    let fw = Framework::default_plugins();
    let mut s = cluster(3);
    s.upsert_namespace(
        "team-a",
        BTreeMap::from([("team".to_string(), "a".to_string())]),
    );
    let mut other = pod("cache", json!({"app": "cache"}), json!({}));
    other.metadata.namespace = Some("team-a".into());
    let at = schedule(&fw, &mut s, &other);
    let follower = pod(
        "follower",
        json!({}),
        json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": HOST,
            "namespaceSelector": {"matchLabels": {"team": "a"}}}]}}}),
    );
    assert_eq!(fw.schedule(&follower, &s).expect("fits"), at);
}

#[test]
fn preferred_affinity_scores_the_selected_pods_node_highest() {
    let fw = Framework::default_plugins();
    let mut s = cluster(5);
    let at = schedule(&fw, &mut s, &pod("anchor", json!({"app": "a"}), json!({})));
    let p = pod(
        "near",
        json!({}),
        json!({"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": term(json!({"app": "a"}), HOST)}]}}}),
    );
    for _ in 0..5 {
        assert_eq!(fw.schedule(&p, &s).expect("fits"), at);
    }
}

fn spread(max_skew: i32, when: &str) -> Value {
    json!({"topologySpreadConstraints": [{"maxSkew": max_skew, "topologyKey": ZONE,
        "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": "spread"}}}]})
}

fn zones_of(s: &Snapshot, placed: &[String]) -> BTreeMap<String, usize> {
    let mut zones = BTreeMap::new();
    for n in placed {
        *zones
            .entry(s.node(n).expect("node").labels()[ZONE].clone())
            .or_insert(0) += 1;
    }
    zones
}

#[test]
fn six_pods_over_three_zones_with_max_skew_1_end_two_each() {
    // Zone 0 has 4 nodes, the others 1 each: without the constraint the spread would follow
    // the nodes.
    let mut nodes: Vec<Node> = (0..4).map(|i| node(&format!("a-{i}"), "zone-0")).collect();
    nodes.push(node("b", "zone-1"));
    nodes.push(node("c", "zone-2"));
    let mut s = Snapshot::new(nodes, vec![]);
    let fw = Framework::default_plugins();
    let placed: Vec<String> = (0..6)
        .map(|i| {
            schedule(
                &fw,
                &mut s,
                &pod(
                    &format!("s-{i}"),
                    json!({"app": "spread"}),
                    spread(1, "DoNotSchedule"),
                ),
            )
        })
        .collect();
    let zones = zones_of(&s, &placed);
    assert_eq!(
        zones.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "{zones:?}"
    );
}

#[test]
fn a_node_without_the_topology_key_is_rejected_with_the_missing_label_message() {
    let bare: Node = serde_json::from_value(json!({
        "metadata": {"name": "bare"},
        "status": {"allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"}},
    }))
    .expect("node");
    let s = Snapshot::new(vec![bare], vec![]);
    let err = Framework::default_plugins()
        .schedule(
            &pod("s", json!({"app": "spread"}), spread(1, "DoNotSchedule")),
            &s,
        )
        .expect_err("no zone label");
    assert_eq!(
        err.to_string(),
        "0/1 nodes are available: 1 node(s) didn't match pod topology spread constraints (missing required label)."
    );
}

#[test]
fn skew_beyond_max_skew_is_rejected_and_min_domains_counts_missing_domains_as_zero() {
    let mut s = Snapshot::new(vec![node("a", "zone-0"), node("b", "zone-1")], vec![]);
    let fw = Framework::default_plugins();
    // Two pods already in zone-0.
    for i in 0..2 {
        s.assume(
            &pod(&format!("old-{i}"), json!({"app": "spread"}), json!({})),
            "a",
        )
        .expect("assume");
    }
    assert_eq!(
        fw.schedule(
            &pod("n", json!({"app": "spread"}), spread(1, "DoNotSchedule")),
            &s
        )
        .expect("fits"),
        "b"
    );
    // minDomains 3 with 2 zones: the global minimum is 0, so zone-1 (0 pods) still fits
    // with maxSkew 1 but zone-0 (2 pods) does not.
    let mut c = spread(1, "DoNotSchedule");
    c["topologySpreadConstraints"][0]["minDomains"] = json!(3);
    assert_eq!(
        fw.schedule(&pod("m", json!({"app": "spread"}), c), &s)
            .expect("fits"),
        "b"
    );
    s.assume(&pod("x", json!({"app": "spread"}), json!({})), "b")
        .expect("assume");
    s.assume(&pod("y", json!({"app": "spread"}), json!({})), "b")
        .expect("assume");
    let mut c = spread(1, "DoNotSchedule");
    c["topologySpreadConstraints"][0]["minDomains"] = json!(3);
    let err = fw
        .schedule(&pod("z", json!({"app": "spread"}), c), &s)
        .expect_err("skew");
    assert_eq!(
        err.to_string(),
        "0/2 nodes are available: 2 node(s) didn't match pod topology spread constraints."
    );
}

#[test]
fn schedule_anyway_prefers_the_emptier_zone() {
    let mut s = Snapshot::new(vec![node("a", "zone-0"), node("b", "zone-1")], vec![]);
    for i in 0..3 {
        s.assume(
            &pod(&format!("old-{i}"), json!({"app": "spread"}), json!({})),
            "a",
        )
        .expect("assume");
    }
    let fw = Framework::default_plugins();
    for _ in 0..5 {
        let p = pod("n", json!({"app": "spread"}), spread(1, "ScheduleAnyway"));
        assert_eq!(fw.schedule(&p, &s).expect("fits"), "b");
    }
}

#[test]
fn node_affinity_policy_honor_leaves_excluded_nodes_out_of_the_skew() {
    // Pods sit in zone-2, which the pod's node selector excludes: with the default Honor
    // policy zone-2 does not count, so zone-0 and zone-1 (both empty) are balanced.
    let mut s = cluster(3);
    for i in 0..3 {
        s.assume(
            &pod(&format!("old-{i}"), json!({"app": "spread"}), json!({})),
            "node-2",
        )
        .expect("assume");
    }
    let fw = Framework::default_plugins();
    let mut spec = spread(1, "DoNotSchedule");
    spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": ZONE, "operator": "NotIn", "values": ["zone-2"]}]}]}}});
    assert!(
        fw.schedule(&pod("n", json!({"app": "spread"}), spec.clone()), &s)
            .is_ok()
    );
    // With Ignore, zone-2's 3 pods count but the minimum is still 0: zone-0 is fine too.
    spec["topologySpreadConstraints"][0]["nodeAffinityPolicy"] = json!("Ignore");
    assert!(
        fw.schedule(&pod("n", json!({"app": "spread"}), spec), &s)
            .is_ok()
    );
}
