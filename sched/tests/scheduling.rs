//! The scheduling loop against the in-process API server: Node objects are created by the tests
//! (no node agent runs), pods are created through the API, and the scheduler binds them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kybernetes_sched::{
    FilterPlugin, Framework, NodeInfo, PodInfo, Rejection, SchedulerConfig, ScorePlugin,
};
use serde_json::{Value, json};

mod support;
use support::TestCluster;

#[tokio::test]
async fn pods_are_bound_and_spread_across_equal_nodes() -> anyhow::Result<()> {
    let cluster = TestCluster::start(Framework::default_plugins()).await?;
    for n in ["node-a", "node-b", "node-c"] {
        cluster.add_node(n, "4", json!({}), json!({})).await?;
    }
    for i in 0..6 {
        cluster
            .add_pod(&format!("web-{i}"), "100m", json!({}))
            .await?;
    }
    let mut per_node = BTreeMap::<String, usize>::new();
    for i in 0..6 {
        *per_node
            .entry(cluster.node_of(&format!("web-{i}")).await?)
            .or_default() += 1;
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "{per_node:?}"
    );

    let pod = cluster.pods().get("web-0").await?;
    let scheduled = pod.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(
        scheduled
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True")
    );
    let node = pod.spec.and_then(|s| s.node_name).unwrap_or_default();
    let (type_, message) = cluster.event("web-0", "Scheduled").await?;
    assert_eq!(type_, "Normal");
    assert_eq!(
        message,
        format!("Successfully assigned default/web-0 to {node}")
    );
    cluster.stop().await
}

#[tokio::test]
async fn a_pod_that_fits_no_node_waits_until_a_big_enough_node_joins() -> anyhow::Result<()> {
    let cluster = TestCluster::start(Framework::default_plugins()).await?;
    for n in ["small-1", "small-2", "small-3"] {
        cluster.add_node(n, "2", json!({}), json!({})).await?;
    }
    cluster.add_pod("big", "8", json!({})).await?;
    let (reason, message) = cluster.unschedulable_condition("big").await?;
    assert_eq!(reason, "Unschedulable");
    assert_eq!(
        message,
        "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.."
    );
    let (type_, event_message) = cluster.event("big", "FailedScheduling").await?;
    assert_eq!(
        (type_.as_str(), event_message.as_str()),
        ("Warning", message.as_str())
    );

    cluster
        .add_node("large", "16", json!({}), json!({}))
        .await?;
    assert_eq!(cluster.node_of("big").await?, "large");
    cluster.stop().await
}

#[tokio::test]
async fn a_deleted_pod_makes_room_for_a_waiting_one() -> anyhow::Result<()> {
    let cluster = TestCluster::start(Framework::default_plugins()).await?;
    cluster.add_node("only", "2", json!({}), json!({})).await?;
    cluster.add_pod("first", "1500m", json!({})).await?;
    assert_eq!(cluster.node_of("first").await?, "only");
    cluster.add_pod("second", "1", json!({})).await?;
    let (_, message) = cluster.unschedulable_condition("second").await?;
    assert_eq!(
        message,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.."
    );

    cluster
        .pods()
        .delete("first", &DeleteParams::default().grace_period(0))
        .await?;
    assert_eq!(cluster.node_of("second").await?, "only");
    cluster.stop().await
}

#[tokio::test]
async fn taints_repel_pods_that_do_not_tolerate_them() -> anyhow::Result<()> {
    let cluster = TestCluster::start(Framework::default_plugins()).await?;
    let taint = json!({"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]});
    cluster.add_node("db", "4", json!({}), taint).await?;
    cluster
        .add_node("general", "4", json!({}), json!({}))
        .await?;
    for i in 0..4 {
        cluster
            .add_pod(&format!("app-{i}"), "100m", json!({}))
            .await?;
    }
    for i in 0..4 {
        assert_eq!(cluster.node_of(&format!("app-{i}")).await?, "general");
    }

    let on_db = json!({"kubernetes.io/hostname": "db"});
    cluster
        .add_pod(
            "tolerant",
            "100m",
            json!({
                "nodeSelector": on_db,
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}],
            }),
        )
        .await?;
    assert_eq!(cluster.node_of("tolerant").await?, "db");

    cluster
        .add_pod("intolerant", "100m", json!({"nodeSelector": on_db}))
        .await?;
    let (_, message) = cluster.unschedulable_condition("intolerant").await?;
    assert_eq!(
        message,
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
         1 node(s) had untolerated taint {dedicated: db}. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.."
    );
    cluster.stop().await
}

#[tokio::test]
async fn node_selector_is_honoured() -> anyhow::Result<()> {
    let cluster = TestCluster::start(Framework::default_plugins()).await?;
    cluster
        .add_node("ssd", "4", json!({"disk": "ssd"}), json!({}))
        .await?;
    cluster
        .add_node("hdd-1", "4", json!({"disk": "hdd"}), json!({}))
        .await?;
    cluster
        .add_node("hdd-2", "4", json!({"disk": "hdd"}), json!({}))
        .await?;
    for i in 0..4 {
        cluster
            .add_pod(
                &format!("db-{i}"),
                "100m",
                json!({"nodeSelector": {"disk": "ssd"}}),
            )
            .await?;
    }
    for i in 0..4 {
        assert_eq!(cluster.node_of(&format!("db-{i}")).await?, "ssd");
    }
    cluster
        .add_pod("nvme", "100m", json!({"nodeSelector": {"disk": "nvme"}}))
        .await?;
    let (_, message) = cluster.unschedulable_condition("nvme").await?;
    assert_eq!(
        message,
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.."
    );
    cluster.stop().await
}

fn required_affinity(expressions: Value) -> Value {
    json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": expressions}],
    }}}})
}

#[tokio::test]
async fn required_node_affinity_is_honoured() -> anyhow::Result<()> {
    let cluster = TestCluster::start(Framework::default_plugins()).await?;
    cluster
        .add_node(
            "cores-4",
            "4",
            json!({"cores": "4", "zone": "a"}),
            json!({}),
        )
        .await?;
    cluster
        .add_node(
            "cores-8",
            "4",
            json!({"cores": "8", "zone": "b"}),
            json!({}),
        )
        .await?;
    cluster
        .add_node(
            "cores-16",
            "4",
            json!({"cores": "16", "zone": "a", "gpu": "true"}),
            json!({}),
        )
        .await?;

    let between = required_affinity(json!([
        {"key": "cores", "operator": "Gt", "values": ["4"]},
        {"key": "cores", "operator": "Lt", "values": ["16"]},
    ]));
    let zone_a_without_gpu = required_affinity(json!([
        {"key": "zone", "operator": "In", "values": ["a"]},
        {"key": "gpu", "operator": "DoesNotExist"},
    ]));
    let not_zone_a_with_cores = required_affinity(json!([
        {"key": "zone", "operator": "NotIn", "values": ["a"]},
        {"key": "cores", "operator": "Exists"},
    ]));
    for i in 0..3 {
        cluster
            .add_pod(&format!("between-{i}"), "100m", between.clone())
            .await?;
        cluster
            .add_pod(&format!("zone-a-{i}"), "100m", zone_a_without_gpu.clone())
            .await?;
        cluster
            .add_pod(&format!("not-a-{i}"), "100m", not_zone_a_with_cores.clone())
            .await?;
    }
    for i in 0..3 {
        assert_eq!(cluster.node_of(&format!("between-{i}")).await?, "cores-8");
        assert_eq!(cluster.node_of(&format!("zone-a-{i}")).await?, "cores-4");
        assert_eq!(cluster.node_of(&format!("not-a-{i}")).await?, "cores-8");
    }
    cluster
        .add_pod(
            "impossible",
            "100m",
            required_affinity(json!([{"key": "cores", "operator": "Gt", "values": ["16"]}])),
        )
        .await?;
    cluster.unschedulable_condition("impossible").await?;
    cluster.stop().await
}

#[tokio::test]
async fn preferred_node_affinity_wins_among_feasible_nodes() -> anyhow::Result<()> {
    let cluster = TestCluster::start(Framework::default_plugins()).await?;
    for zone in ["a", "b", "c"] {
        cluster
            .add_node(
                &format!("zone-{zone}"),
                "4",
                json!({"zone": zone}),
                json!({}),
            )
            .await?;
    }
    let prefers_b = json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["c"]}]}},
        {"weight": 50, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}},
    ]}}});
    for i in 0..4 {
        cluster
            .add_pod(&format!("pref-{i}"), "100m", prefers_b.clone())
            .await?;
    }
    for i in 0..4 {
        assert_eq!(cluster.node_of(&format!("pref-{i}")).await?, "zone-b");
    }
    cluster.stop().await
}

#[tokio::test]
async fn cordoned_nodes_are_skipped_unless_tolerated() -> anyhow::Result<()> {
    let cluster = TestCluster::start(Framework::default_plugins()).await?;
    cluster
        .add_node("cordoned", "4", json!({}), json!({"unschedulable": true}))
        .await?;
    cluster.add_node("open", "4", json!({}), json!({})).await?;
    for i in 0..4 {
        cluster
            .add_pod(&format!("p-{i}"), "100m", json!({}))
            .await?;
    }
    for i in 0..4 {
        assert_eq!(cluster.node_of(&format!("p-{i}")).await?, "open");
    }
    let tolerant = json!({
        "nodeSelector": {"kubernetes.io/hostname": "cordoned"},
        "tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}],
    });
    cluster.add_pod("daemon", "100m", tolerant).await?;
    assert_eq!(cluster.node_of("daemon").await?, "cordoned");

    cluster
        .add_pod(
            "stuck",
            "100m",
            json!({"nodeSelector": {"kubernetes.io/hostname": "cordoned"}}),
        )
        .await?;
    let (_, message) = cluster.unschedulable_condition("stuck").await?;
    assert_eq!(
        message,
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) were unschedulable. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.."
    );
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    nodes
        .patch(
            "cordoned",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"unschedulable": false}})),
        )
        .await?;
    assert_eq!(cluster.node_of("stuck").await?, "cordoned");
    cluster.stop().await
}

/// Keeps pods off nodes labelled `maintenance`.
struct NoMaintenance;

impl FilterPlugin for NoMaintenance {
    fn name(&self) -> &str {
        "NoMaintenance"
    }

    fn filter(&self, _pod: &PodInfo<'_>, node: &NodeInfo) -> Result<(), Rejection> {
        if node.labels().contains_key("maintenance") {
            Err("node(s) were in maintenance".into())
        } else {
            Ok(())
        }
    }
}

/// Strongly prefers nodes labelled `fast`.
struct PreferFast;

impl ScorePlugin for PreferFast {
    fn name(&self) -> &str {
        "PreferFast"
    }

    fn score(&self, _pod: &PodInfo<'_>, node: &NodeInfo) -> i64 {
        if node.labels().contains_key("fast") {
            100
        } else {
            0
        }
    }

    fn weight(&self) -> i64 {
        10
    }
}

#[tokio::test]
async fn custom_user_plugins_filter_and_score() -> anyhow::Result<()> {
    let framework = Framework::default_plugins()
        .with_filter(NoMaintenance)
        .with_score(PreferFast);
    let cluster = TestCluster::start(framework).await?;
    cluster
        .add_node(
            "fast-but-down",
            "4",
            json!({"fast": "yes", "maintenance": "yes"}),
            json!({}),
        )
        .await?;
    cluster
        .add_node("fast", "4", json!({"fast": "yes"}), json!({}))
        .await?;
    cluster.add_node("slow", "4", json!({}), json!({})).await?;
    for i in 0..3 {
        cluster
            .add_pod(&format!("p-{i}"), "100m", json!({}))
            .await?;
    }
    for i in 0..3 {
        assert_eq!(cluster.node_of(&format!("p-{i}")).await?, "fast");
    }
    cluster.add_pod("huge", "6", json!({})).await?;
    let (_, message) = cluster.unschedulable_condition("huge").await?;
    // User filters run after the built-in ones, and each node reports its first rejection.
    assert_eq!(
        message,
        "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.."
    );
    cluster
        .add_pod(
            "tiny",
            "100m",
            json!({"nodeSelector": {"kubernetes.io/hostname": "fast-but-down"}}),
        )
        .await?;
    let (_, message) = cluster.unschedulable_condition("tiny").await?;
    assert_eq!(
        message,
        "0/3 nodes are available: 1 node(s) were in maintenance, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.."
    );
    cluster.stop().await
}

/// Rejects every node until opened, without any cluster change.
struct Gate(Arc<AtomicBool>);

impl FilterPlugin for Gate {
    fn name(&self) -> &str {
        "Gate"
    }

    fn filter(&self, _pod: &PodInfo<'_>, _node: &NodeInfo) -> Result<(), Rejection> {
        if self.0.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("node(s) were closed".into())
        }
    }
}

#[tokio::test]
async fn unschedulable_pods_are_retried_periodically() -> anyhow::Result<()> {
    let open = Arc::new(AtomicBool::new(false));
    let config = SchedulerConfig {
        pod_max_in_unschedulable_duration: Duration::from_millis(300),
        unschedulable_flush_interval: Duration::from_millis(100),
        ..SchedulerConfig::default()
    };
    let cluster = TestCluster::start_with(
        Framework::default_plugins().with_filter(Gate(open.clone())),
        config,
    )
    .await?;
    cluster.add_node("n", "4", json!({}), json!({})).await?;
    cluster.add_pod("waiting", "100m", json!({})).await?;
    let (_, message) = cluster.unschedulable_condition("waiting").await?;
    assert_eq!(
        message,
        "0/1 nodes are available: 1 node(s) were closed. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.."
    );
    open.store(true, Ordering::Relaxed);
    assert_eq!(cluster.node_of("waiting").await?, "n");
    cluster.stop().await
}

#[tokio::test]
async fn pods_for_another_scheduler_are_left_alone() -> anyhow::Result<()> {
    let cluster = TestCluster::start(Framework::default_plugins()).await?;
    cluster.add_node("n", "4", json!({}), json!({})).await?;
    cluster
        .add_pod(
            "theirs",
            "100m",
            json!({"schedulerName": "other-scheduler"}),
        )
        .await?;
    cluster.add_pod("ours", "100m", json!({})).await?;
    assert_eq!(cluster.node_of("ours").await?, "n");
    cluster.assert_stays_pending("theirs").await?;
    cluster.stop().await
}

#[tokio::test]
async fn pods_wait_for_a_first_node() -> anyhow::Result<()> {
    let cluster = TestCluster::start(Framework::default_plugins()).await?;
    cluster.add_pod("early", "100m", json!({})).await?;
    let (reason, message) = cluster.unschedulable_condition("early").await?;
    assert_eq!(
        (reason.as_str(), message.as_str()),
        ("Unschedulable", "no nodes available to schedule pods")
    );
    cluster.add_node("late", "4", json!({}), json!({})).await?;
    assert_eq!(cluster.node_of("early").await?, "late");
    cluster.stop().await
}

#[tokio::test]
async fn gated_pods_wait_until_their_gates_are_removed() -> anyhow::Result<()> {
    let cluster = TestCluster::start(Framework::default_plugins()).await?;
    cluster.add_node("n", "4", json!({}), json!({})).await?;
    cluster
        .add_pod(
            "gated",
            "100m",
            json!({"schedulingGates": [{"name": "example.com/quota"}]}),
        )
        .await?;
    let (reason, message) = cluster.unschedulable_condition("gated").await?;
    assert_eq!(reason, "SchedulingGated");
    assert_eq!(
        message,
        "Scheduling is blocked due to non-empty scheduling gates"
    );
    cluster.assert_stays_pending("gated").await?;

    let ungate = json!({"spec": {"schedulingGates": null}});
    cluster
        .pods()
        .patch("gated", &PatchParams::default(), &Patch::Merge(&ungate))
        .await?;
    assert_eq!(cluster.node_of("gated").await?, "n");
    cluster.stop().await
}

/// Upstream's `AssignedPodAdd`/`AssignedPodUpdate` events: a pod waiting for an affinity
/// partner is retried as soon as one is bound or relabelled, not at the five-minute flush of
/// leftover unschedulable pods (the test's 20 s patience is far below it).
#[tokio::test]
async fn a_pod_waiting_for_an_affinity_partner_is_retried_when_one_lands_or_is_relabelled()
-> anyhow::Result<()> {
    let cluster = TestCluster::start(Framework::default_plugins()).await?;
    for n in ["node-a", "node-b"] {
        cluster.add_node(n, "4", json!({}), json!({})).await?;
    }
    let affinity_to = |app: &str| {
        json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"app": app}},
            "topologyKey": "kubernetes.io/hostname",
        }]}}})
    };
    cluster
        .add_pod("follower", "100m", affinity_to("leader"))
        .await?;
    let (_, message) = cluster.unschedulable_condition("follower").await?;
    assert!(
        message.contains("didn't match pod affinity rules"),
        "{message}"
    );
    // Bound by someone else (nodeName set at creation): the scheduler only sees it arrive.
    let leader: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "leader", "labels": {"app": "leader"}},
        "spec": {"nodeName": "node-b", "containers": [{"name": "c", "image": "busybox"}]},
    }))?;
    cluster
        .pods()
        .create(&PostParams::default(), &leader)
        .await?;
    assert_eq!(cluster.node_of("follower").await?, "node-b");

    cluster
        .add_pod("second", "100m", affinity_to("primary"))
        .await?;
    cluster.unschedulable_condition("second").await?;
    let relabel = json!({"metadata": {"labels": {"app": "primary"}}});
    cluster
        .pods()
        .patch("leader", &PatchParams::default(), &Patch::Merge(&relabel))
        .await?;
    assert_eq!(cluster.node_of("second").await?, "node-b");
    cluster.stop().await
}

/// Upstream's system default spreading: replicas selected by a ReplicaSet spread over nodes
/// even where resource scoring alone would stack them on the biggest node, and pods that
/// nothing selects are scored on resources alone.
#[tokio::test]
async fn replicas_spread_by_the_system_default_constraints() -> anyhow::Result<()> {
    let cluster = TestCluster::start(Framework::default_plugins()).await?;
    cluster.add_node("big", "64", json!({}), json!({})).await?;
    cluster.add_node("small", "4", json!({}), json!({})).await?;
    let rs: k8s_openapi::api::apps::v1::ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }))?;
    Api::<k8s_openapi::api::apps::v1::ReplicaSet>::namespaced(cluster.client.clone(), "default")
        .create(&PostParams::default(), &rs)
        .await?;
    let mut placed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (prefix, labelled) in [("web", true), ("lone", false)] {
        for i in 0..4 {
            let name = format!("{prefix}-{i}");
            let mut pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name},
                "spec": {"containers": [{"name": "c", "image": "busybox",
                         "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]},
            });
            if labelled {
                pod["metadata"]["labels"] = json!({"app": "web"});
            }
            cluster
                .pods()
                .create(&PostParams::default(), &serde_json::from_value(pod)?)
                .await?;
            // One at a time, so each decision sees the previous ones.
            let node = cluster.node_of(&name).await?;
            placed.entry(prefix.to_string()).or_default().push(node);
        }
    }
    let on = |prefix: &str, node: &str| placed[prefix].iter().filter(|n| *n == node).count();
    assert_eq!((on("web", "big"), on("web", "small")), (2, 2), "{placed:?}");
    assert_eq!(on("lone", "big"), 4, "{placed:?}");
    cluster.stop().await
}
