//! DaemonSets through the whole cluster on the fake runtime: one pod per eligible node, new
//! nodes, taints and tolerations, and rolling updates within `maxUnavailable`.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Pod, Taint};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kybernetes::Cluster;
use kybernetes::node::NodeAgentConfig;
use serde_json::json;

use crate::common;
use common::{PodView, until};

fn daemon_set(name: &str, image: &str, extra: serde_json::Value) -> DaemonSet {
    let mut ds = json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "agent", "image": image}]}
            }
        }
    });
    if let (Some(s), Some(extra)) = (ds["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(ds).expect("daemonset")
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref().and_then(|s| s.node_name.clone())
}

fn ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until the DaemonSet's pods are ready on exactly `want` nodes; returns those nodes.
async fn ready_nodes(pods: &Api<Pod>, app: &str, want: &[&str]) -> BTreeSet<String> {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let label = format!("app={app}");
    until(
        &format!("{app} ready on {want:?}"),
        Duration::from_secs(60),
        || {
            let (pods, want, label) = (pods.clone(), want.clone(), label.clone());
            async move {
                let Ok(list) = pods.list(&ListParams::default().labels(&label)).await else {
                    return false;
                };
                let live: Vec<&Pod> = list
                    .items
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .collect();
                let nodes: BTreeSet<String> = live
                    .iter()
                    .filter(|p| ready(p))
                    .filter_map(|p| node_of(p))
                    .collect();
                live.len() == want.len() && nodes == want
            }
        },
    )
    .await;
    want
}

/// Waits until the DaemonSet controller itself reports `n` available pods of the current
/// generation. A rollout test must start from here, not from the pods' readiness through the
/// API: the controller replaces an old pod it has not yet seen become available at once
/// (upstream does the same), so a rollout that starts before its informer caught up would
/// rightly exceed `maxSurge`/`maxUnavailable`.
async fn controller_sees_available(dss: &Api<DaemonSet>, name: &str, n: i32) {
    until(
        &format!("{name}: the controller reports {n} available"),
        Duration::from_secs(60),
        || {
            let dss = dss.clone();
            async move {
                let Ok(ds) = dss.get(name).await else {
                    return false;
                };
                let Some(st) = ds.status.as_ref() else {
                    return false;
                };
                st.observed_generation == ds.metadata.generation
                    && st.number_available == Some(n)
                    && st.updated_number_scheduled == Some(n)
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_set_runs_one_pod_per_node_and_on_a_node_added_later() {
    let c = Cluster::builder().nodes(3).start().await.expect("start");
    let dss: Api<DaemonSet> = Api::default_namespaced(c.client());
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    dss.create(
        &PostParams::default(),
        &daemon_set("logs", "fluentd:1", json!({})),
    )
    .await
    .expect("create");
    ready_nodes(&pods, "logs", &["node-1", "node-2", "node-3"]).await;
    c.add_node("node-4").expect("add node");
    ready_nodes(&pods, "logs", &["node-1", "node-2", "node-3", "node-4"]).await;
    until(
        "the status to count four nodes",
        Duration::from_secs(30),
        || {
            let dss = dss.clone();
            async move {
                dss.get("logs")
                    .await
                    .ok()
                    .and_then(|d| d.status)
                    .is_some_and(|s| {
                        s.desired_number_scheduled == 4
                            && s.current_number_scheduled == 4
                            && s.number_ready == 4
                            && s.number_available == Some(4)
                            && s.updated_number_scheduled == Some(4)
                            && s.number_misscheduled == 0
                            && s.observed_generation == Some(1)
                    })
            }
        },
    )
    .await;
    let list = pods
        .list(&ListParams::default().labels("app=logs"))
        .await
        .expect("pods");
    for p in &list.items {
        let tolerations = p
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
            "node.kubernetes.io/unschedulable",
        ] {
            assert!(
                tolerations.iter().any(|t| t.key.as_deref() == Some(key)),
                "daemon pods tolerate {key}"
            );
        }
        assert!(
            p.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key("controller-revision-hash"))
        );
    }
    let revisions: Api<ControllerRevision> = Api::default_namespaced(c.client());
    let revs = revisions
        .list(&ListParams::default())
        .await
        .expect("revisions");
    assert_eq!(
        revs.items
            .iter()
            .filter(|r| r
                .metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("logs-")))
            .count(),
        1
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tainted_node_is_skipped_unless_the_daemon_set_tolerates_the_taint() {
    let c = Cluster::builder().nodes(2).start().await.expect("start");
    let taint = Taint {
        key: "dedicated".into(),
        value: Some("infra".into()),
        effect: "NoSchedule".into(),
        time_added: None,
    };
    c.add_node_with(NodeAgentConfig::new("infra-1").taint(taint))
        .expect("add tainted node");
    let dss: Api<DaemonSet> = Api::default_namespaced(c.client());
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    dss.create(
        &PostParams::default(),
        &daemon_set("plain", "agent:1", json!({})),
    )
    .await
    .expect("create");
    let tolerating = json!({"template": {
        "metadata": {"labels": {"app": "tolerant"}},
        "spec": {"containers": [{"name": "agent", "image": "agent:1"}],
                 "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}]}
    }});
    dss.create(
        &PostParams::default(),
        &daemon_set("tolerant", "agent:1", tolerating),
    )
    .await
    .expect("create");
    ready_nodes(&pods, "plain", &["node-1", "node-2"]).await;
    ready_nodes(&pods, "tolerant", &["node-1", "node-2", "infra-1"]).await;
    until(
        "plain's status to skip the tainted node",
        Duration::from_secs(30),
        || {
            let dss = dss.clone();
            async move {
                dss.get("plain")
                    .await
                    .ok()
                    .and_then(|d| d.status)
                    .is_some_and(|s| s.desired_number_scheduled == 2 && s.number_ready == 2)
            }
        },
    )
    .await;
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_replaces_pods_one_node_at_a_time_within_max_unavailable() {
    let c = Cluster::builder().nodes(4).start().await.expect("start");
    let dss: Api<DaemonSet> = Api::default_namespaced(c.client());
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    dss.create(
        &PostParams::default(),
        &daemon_set("roll", "agent:1", json!({})),
    )
    .await
    .expect("create");
    let nodes = ["node-1", "node-2", "node-3", "node-4"];
    ready_nodes(&pods, "roll", &nodes).await;
    controller_sees_available(&dss, "roll", 4).await;
    let mut view = PodView::start(&pods, "roll").await;
    dss.patch(
        "roll",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "agent:2"}]}}}})),
    )
    .await
    .expect("update image");
    let image = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
    };
    loop {
        view.next().await;
        let ready_nodes: BTreeSet<String> = view
            .pods
            .values()
            .filter(|p| ready(p))
            .filter_map(node_of)
            .collect();
        assert!(
            ready_nodes.len() >= 3,
            "maxUnavailable 1: at least 3 of 4 nodes keep a ready pod, saw {ready_nodes:?}"
        );
        let updated: BTreeSet<String> = view
            .pods
            .values()
            .filter(|p| ready(p) && image(p).as_deref() == Some("agent:2"))
            .filter_map(node_of)
            .collect();
        let live = view
            .pods
            .values()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count();
        if updated.len() == 4 && live == 4 {
            break;
        }
    }
    let revisions: Api<ControllerRevision> = Api::default_namespaced(c.client());
    let revs = revisions
        .list(&ListParams::default())
        .await
        .expect("revisions");
    let mut numbers: Vec<i64> = revs
        .items
        .iter()
        .filter(|r| {
            r.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("roll-"))
        })
        .map(|r| r.revision)
        .collect();
    numbers.sort();
    assert_eq!(numbers, [1, 2], "one revision per template");
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_selector_that_does_not_match_the_template_is_rejected_with_422() {
    let c = Cluster::builder().start().await.expect("start");
    let dss: Api<DaemonSet> = Api::default_namespaced(c.client());
    let mut bad = daemon_set("bad", "agent:1", json!({}));
    if let Some(spec) = bad.spec.as_mut() {
        spec.selector.match_labels = Some([("app".to_string(), "other".to_string())].into());
    }
    let err = dss
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("invalid");
    let kube::Error::Api(status) = err else {
        panic!("an API error: {err:?}")
    };
    assert_eq!(status.code, 422);
    assert!(
        status
            .message
            .contains("`selector` does not match template `labels`"),
        "{}",
        status.message
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surge_update_starts_the_new_pod_before_deleting_the_old_one() {
    let c = Cluster::builder().nodes(3).start().await.expect("start");
    let dss: Api<DaemonSet> = Api::default_namespaced(c.client());
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let strategy = json!({"updateStrategy": {"type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}});
    dss.create(
        &PostParams::default(),
        &daemon_set("surge", "agent:1", strategy),
    )
    .await
    .expect("create");
    let nodes = ["node-1", "node-2", "node-3"];
    ready_nodes(&pods, "surge", &nodes).await;
    controller_sees_available(&dss, "surge", 3).await;
    let mut view = PodView::start(&pods, "surge").await;
    dss.patch(
        "surge",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "agent:2"}]}}}})),
    )
    .await
    .expect("update image");
    let image = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
    };
    let mut most_live = 0;
    loop {
        view.next().await;
        let ready_nodes: BTreeSet<String> = view
            .pods
            .values()
            .filter(|p| ready(p))
            .filter_map(node_of)
            .collect();
        assert_eq!(
            ready_nodes.len(),
            3,
            "maxUnavailable 0: every node keeps a ready pod"
        );
        let live = view
            .pods
            .values()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count();
        most_live = most_live.max(live);
        assert!(live <= 4, "maxSurge 1: at most one extra pod, saw {live}");
        let updated = view
            .pods
            .values()
            .filter(|p| ready(p) && image(p).as_deref() == Some("agent:2"))
            .count();
        if updated == 3 && live == 3 {
            break;
        }
    }
    assert_eq!(most_live, 4, "the new pod started next to the old one");
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_replaces_a_pod_with_the_new_template_only_when_it_is_deleted() {
    let c = Cluster::builder().nodes(2).start().await.expect("start");
    let dss: Api<DaemonSet> = Api::default_namespaced(c.client());
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    dss.create(
        &PostParams::default(),
        &daemon_set(
            "manual",
            "agent:1",
            json!({"updateStrategy": {"type": "OnDelete"}}),
        ),
    )
    .await
    .expect("create");
    ready_nodes(&pods, "manual", &["node-1", "node-2"]).await;
    dss.patch(
        "manual",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "agent:2"}]}}}})),
    )
    .await
    .expect("update image");
    until(
        "the status to see the new generation",
        Duration::from_secs(30),
        || {
            let dss = dss.clone();
            async move {
                dss.get("manual")
                    .await
                    .ok()
                    .and_then(|d| d.status)
                    .is_some_and(|s| {
                        s.observed_generation == Some(2)
                            && s.updated_number_scheduled.is_none()
                            && s.number_ready == 2
                    })
            }
        },
    )
    .await;
    let list = pods
        .list(&ListParams::default().labels("app=manual"))
        .await
        .expect("pods");
    let victim = list
        .items
        .iter()
        .find(|p| node_of(p).as_deref() == Some("node-1"))
        .and_then(|p| p.metadata.name.clone())
        .expect("a pod on node-1");
    pods.delete(&victim, &Default::default())
        .await
        .expect("delete");
    until(
        "node-1 to run the new template",
        Duration::from_secs(60),
        || {
            let pods = pods.clone();
            async move {
                let Ok(list) = pods.list(&ListParams::default().labels("app=manual")).await else {
                    return false;
                };
                let image_on = |node: &str| {
                    list.items
                        .iter()
                        .filter(|p| ready(p) && node_of(p).as_deref() == Some(node))
                        .filter_map(|p| p.spec.as_ref()?.containers.first()?.image.clone())
                        .collect::<Vec<_>>()
                };
                image_on("node-1") == ["agent:2"] && image_on("node-2") == ["agent:1"]
            }
        },
    )
    .await;
    c.shutdown().await.expect("shutdown");
}
