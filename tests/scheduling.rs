//! Scheduling and node failure through the whole cluster.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kybernetes::controllers::NodeLifecycleConfig;
use kybernetes::node::{NodeAgentConfig, NodeCapacity};
use kybernetes::{Cluster, ControlPlaneConfig};
use serde_json::json;

use crate::common;
use common::until;

fn pod(name: &str, spec_extra: serde_json::Value) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), spec_extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("pod")
}

async fn node_of(pods: &Api<Pod>, name: &str) -> Option<String> {
    pods.get(name).await.ok()?.spec?.node_name
}

async fn wait_bound(pods: &Api<Pod>, name: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(n) = node_of(pods, name).await {
            return n;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} was never scheduled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn labelled(name: &str, labels: &[(&str, &str)]) -> NodeAgentConfig {
    labels
        .iter()
        .fold(NodeAgentConfig::new(name), |c, (k, v)| c.label(*k, *v))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_fits_no_node_waits_unschedulable_until_a_big_node_joins() {
    let c = Cluster::builder().nodes(2).start().await.expect("start");
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let big = pod(
        "big",
        json!({"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "32", "memory": "1Gi"}}}]}),
    );
    pods.create(&PostParams::default(), &big)
        .await
        .expect("create");
    until(
        "PodScheduled=False, reason Unschedulable, message Insufficient cpu",
        Duration::from_secs(30),
        || {
            let pods = pods.clone();
            async move {
                pods.get("big")
                    .await
                    .ok()
                    .and_then(|p| p.status)
                    .and_then(|s| s.conditions)
                    .is_some_and(|cs| {
                        cs.iter().any(|c| {
                            c.type_ == "PodScheduled"
                                && c.status == "False"
                                && c.reason.as_deref() == Some("Unschedulable")
                                && c.message
                                    .as_deref()
                                    .is_some_and(|m| m.contains("Insufficient cpu"))
                        })
                    })
            }
        },
    )
    .await;
    let p = pods.get("big").await.expect("pod");
    assert!(p.spec.and_then(|s| s.node_name).is_none(), "still pending");
    let message = p
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find_map(|c| c.message)
        .unwrap_or_default();
    assert!(
        message.contains("Insufficient cpu"),
        "the reason says why: {message}"
    );

    let capacity = NodeCapacity {
        cpu: "64".into(),
        memory: "256Gi".into(),
        ..NodeCapacity::default()
    };
    c.add_node_with(NodeAgentConfig::new("huge").capacity(capacity))
        .expect("add node");
    assert_eq!(wait_bound(&pods, "big").await, "huge");
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taints_keep_pods_away_unless_tolerated() {
    let c = Cluster::builder().nodes(0).start().await.expect("start");
    let taint =
        serde_json::from_value(json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}))
            .expect("taint");
    c.add_node_with(NodeAgentConfig::new("gpu").taint(taint))
        .expect("gpu node");
    c.add_node_with(NodeAgentConfig::new("plain"))
        .expect("plain node");
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    for i in 0..4 {
        pods.create(
            &PostParams::default(),
            &pod(&format!("plain-{i}"), json!({})),
        )
        .await
        .expect("create");
    }
    let tolerating = pod(
        "tolerant",
        json!({
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
            "nodeSelector": {"kubernetes.io/hostname": "gpu"}
        }),
    );
    pods.create(&PostParams::default(), &tolerating)
        .await
        .expect("create");
    for i in 0..4 {
        assert_eq!(
            wait_bound(&pods, &format!("plain-{i}")).await,
            "plain",
            "untolerated pods avoid the tainted node"
        );
    }
    assert_eq!(
        wait_bound(&pods, "tolerant").await,
        "gpu",
        "a tolerating pod may use it"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selector_picks_matching_nodes() {
    let c = Cluster::builder().nodes(0).start().await.expect("start");
    c.add_node_with(labelled("ssd-1", &[("disk", "ssd")]))
        .expect("node");
    c.add_node_with(labelled("hdd-1", &[("disk", "hdd")]))
        .expect("node");
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    for i in 0..3 {
        pods.create(
            &PostParams::default(),
            &pod(
                &format!("fast-{i}"),
                json!({"nodeSelector": {"disk": "ssd"}}),
            ),
        )
        .await
        .expect("create");
    }
    for i in 0..3 {
        assert_eq!(wait_bound(&pods, &format!("fast-{i}")).await, "ssd-1");
    }
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_node_affinity_is_honoured() {
    let c = Cluster::builder().nodes(0).start().await.expect("start");
    c.add_node_with(labelled("zone-a", &[("zone", "a"), ("gen", "3")]))
        .expect("node");
    c.add_node_with(labelled("zone-b", &[("zone", "b"), ("gen", "5")]))
        .expect("node");
    c.add_node_with(labelled("zone-c", &[("zone", "c"), ("gen", "7")]))
        .expect("node");
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let affinity = |exprs: serde_json::Value| json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": exprs}]}}}});
    pods.create(
        &PostParams::default(),
        &pod(
            "not-a",
            affinity(json!([{"key": "zone", "operator": "NotIn", "values": ["a", "c"]}])),
        ),
    )
    .await
    .expect("create");
    pods.create(
        &PostParams::default(),
        &pod(
            "newer",
            affinity(json!([{"key": "gen", "operator": "Gt", "values": ["6"]}])),
        ),
    )
    .await
    .expect("create");
    pods.create(
        &PostParams::default(),
        &pod(
            "nowhere",
            affinity(json!([{"key": "gpu", "operator": "Exists"}])),
        ),
    )
    .await
    .expect("create");
    assert_eq!(wait_bound(&pods, "not-a").await, "zone-b");
    assert_eq!(wait_bound(&pods, "newer").await, "zone-c");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        node_of(&pods, "nowhere").await.is_none(),
        "no node satisfies Exists gpu"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_stopped_node_are_replaced_on_healthy_nodes() {
    let control_plane = ControlPlaneConfig {
        node_lifecycle: NodeLifecycleConfig {
            node_monitor_period: Duration::from_millis(200),
            node_monitor_grace_period: Duration::from_secs(2),
            default_toleration_seconds: 2,
            ..NodeLifecycleConfig::default()
        },
        ..ControlPlaneConfig::default()
    };
    let mut node = NodeAgentConfig::new("template");
    node.lease_duration = Duration::from_secs(2);
    node.renew_interval = Duration::from_millis(300);
    node.status_update_interval = Duration::from_millis(300);
    let c = Cluster::builder()
        .nodes(3)
        .node_template(node)
        .control_plane(control_plane)
        .start()
        .await
        .expect("start");
    let deploys: Api<Deployment> = Api::default_namespaced(c.client());
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    }))
    .expect("deployment");
    deploys
        .create(&PostParams::default(), &d)
        .await
        .expect("create");
    let available = |want: i32| {
        let d = deploys.clone();
        move || {
            let d = d.clone();
            async move {
                d.get("web")
                    .await
                    .ok()
                    .and_then(|d| d.status)
                    .and_then(|s| s.available_replicas)
                    == Some(want)
            }
        }
    };
    until("6 available", Duration::from_secs(30), available(6)).await;
    c.stop_node("node-2").await.expect("stop node");
    let nodes: Api<Node> = Api::all(c.client());
    until("node-2 NotReady (Unknown)", Duration::from_secs(30), || {
        let nodes = nodes.clone();
        async move {
            nodes
                .get("node-2")
                .await
                .ok()
                .and_then(|n| n.status)
                .and_then(|s| s.conditions)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Ready" && c.status == "Unknown")
                })
        }
    })
    .await;
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    until(
        "every pod off node-2 and 6 available again",
        Duration::from_secs(60),
        || {
            let (pods, ok) = (pods.clone(), available(6));
            async move {
                let off = pods
                    .list(&ListParams::default().labels("app=web"))
                    .await
                    .is_ok_and(|l| {
                        l.items.len() == 6
                            && l.items.iter().all(|p| {
                                p.spec.as_ref().and_then(|s| s.node_name.as_deref())
                                    != Some("node-2")
                            })
                    });
                off && ok().await
            }
        },
    )
    .await;
    c.shutdown().await.expect("shutdown");
}
