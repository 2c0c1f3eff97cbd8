//! Workloads on fake backends, through `kube::Api` on `cluster.client()` only.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kybernetes::Cluster;
use kybernetes::core::ipam::Cidr;

use crate::common;
use common::{PodView, deployment, until, wait_available};
use serde_json::json;

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_runs_ready_pods_spread_across_nodes_with_ips_in_their_node_cidr() {
    let c = Cluster::builder().nodes(3).start().await.expect("start");
    let deploys: Api<Deployment> = Api::default_namespaced(c.client());
    deploys
        .create(&PostParams::default(), &deployment("web", 3, "nginx:1.27"))
        .await
        .expect("create");
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    until("3 ready pods", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default().labels("app=web"))
                .await
                .is_ok_and(|l| l.items.len() == 3 && l.items.iter().all(ready))
        }
    })
    .await;
    let nodes: Api<Node> = Api::all(c.client());
    let nodes = nodes
        .list(&ListParams::default())
        .await
        .expect("nodes")
        .items;
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("pods")
        .items;
    let mut used = BTreeSet::new();
    for p in &list {
        let node_name = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .expect("scheduled");
        used.insert(node_name.clone());
        let node = nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(node_name.as_str()))
            .expect("node exists");
        let cidr: Cidr = node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.clone())
            .expect("podCIDR")
            .parse()
            .expect("cidr");
        let ip: std::net::IpAddr = p
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .expect("pod IP")
            .parse()
            .expect("ip");
        assert!(cidr.contains(ip), "{ip} inside {cidr}");
    }
    assert_eq!(used.len(), 3, "one pod per node: {used:?}");
    wait_available(&deploys, "web", 3, Duration::from_secs(30)).await;
    c.shutdown().await.expect("shutdown");
}

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};

fn revision(rs: &ReplicaSet) -> Option<String> {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("deployment.kubernetes.io/revision").cloned())
}

fn image_of(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_image_rolls_out_as_revision_2_and_rollback_reuses_revision_1_as_revision_3() {
    let c = Cluster::builder().nodes(3).start().await.expect("start");
    let deploys: Api<Deployment> = Api::default_namespaced(c.client());
    deploys
        .create(&PostParams::default(), &deployment("roll", 20, "app:1"))
        .await
        .expect("create");
    wait_available(&deploys, "roll", 20, Duration::from_secs(60)).await;
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "app:2"}]}}}});
    deploys
        .patch("roll", &PatchParams::default(), &Patch::Merge(image))
        .await
        .expect("new image");
    let rss: Api<ReplicaSet> = Api::default_namespaced(c.client());
    until(
        "the new ReplicaSet at 20 and the old at 0",
        Duration::from_secs(60),
        || {
            let (rss, d) = (rss.clone(), deploys.clone());
            async move {
                let Ok(list) = rss.list(&ListParams::default().labels("app=roll")).await else {
                    return false;
                };
                let done = d
                    .get("roll")
                    .await
                    .ok()
                    .and_then(|d| d.status)
                    .is_some_and(|s| {
                        s.updated_replicas == Some(20)
                            && s.available_replicas == Some(20)
                            && s.replicas == Some(20)
                    });
                done && list.items.len() == 2
                    && list.items.iter().any(|r| {
                        revision(r).as_deref() == Some("2")
                            && r.spec.as_ref().and_then(|s| s.replicas) == Some(20)
                    })
                    && list.items.iter().any(|r| {
                        revision(r).as_deref() == Some("1")
                            && r.spec.as_ref().and_then(|s| s.replicas) == Some(0)
                    })
            }
        },
    )
    .await;

    // Roll back: revision 1's template comes back as revision 3, reusing the first ReplicaSet.
    let old = rss
        .list(&ListParams::default().labels("app=roll"))
        .await
        .expect("list")
        .items
        .into_iter()
        .find(|r| revision(r).as_deref() == Some("1"))
        .expect("revision 1");
    let old_name = old.metadata.name.clone();
    let mut template = serde_json::to_value(old.spec.expect("spec").template).expect("template");
    if let Some(l) = template
        .pointer_mut("/metadata/labels")
        .and_then(|l| l.as_object_mut())
    {
        l.remove("pod-template-hash");
    }
    let undo: json_patch::Patch = serde_json::from_value(
        json!([{"op": "replace", "path": "/spec/template", "value": template}]),
    )
    .expect("patch");
    deploys
        .patch("roll", &PatchParams::default(), &Patch::<()>::Json(undo))
        .await
        .expect("undo");
    until(
        "the first ReplicaSet to be revision 3 with 20 replicas",
        Duration::from_secs(60),
        || {
            let (rss, old_name) = (rss.clone(), old_name.clone());
            async move {
                let Ok(list) = rss.list(&ListParams::default().labels("app=roll")).await else {
                    return false;
                };
                list.items.iter().any(|r| {
                    r.metadata.name == old_name
                        && revision(r).as_deref() == Some("3")
                        && r.status.as_ref().and_then(|s| s.available_replicas) == Some(20)
                })
            }
        },
    )
    .await;
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_of_20_never_drops_below_15_available_or_exceeds_25_pods() {
    let c = Cluster::builder().nodes(3).start().await.expect("start");
    let deploys: Api<Deployment> = Api::default_namespaced(c.client());
    deploys
        .create(&PostParams::default(), &deployment("bounds", 20, "app:1"))
        .await
        .expect("create");
    wait_available(&deploys, "bounds", 20, Duration::from_secs(60)).await;
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let mut view = PodView::start(&pods, "bounds").await;
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "app:2"}]}}}});
    deploys
        .patch("bounds", &PatchParams::default(), &Patch::Merge(image))
        .await
        .expect("new image");
    let mut min_available = usize::MAX;
    let mut max_total = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let live: Vec<&Pod> = view
            .pods
            .values()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let available = live.iter().filter(|p| ready(p)).count();
        min_available = min_available.min(available);
        max_total = max_total.max(live.len());
        if live.len() == 20 && available == 20 && live.iter().all(|p| image_of(p) == "app:2") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rollout did not finish"
        );
        view.next().await;
    }
    assert!(
        min_available >= 15,
        "never fewer than 15 available (maxUnavailable 25%), saw {min_available}"
    );
    assert!(
        max_total <= 25,
        "never more than 25 pods (maxSurge 25%), saw {max_total}"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_never_runs_old_and_new_pods_together() {
    let c = Cluster::builder().nodes(2).start().await.expect("start");
    let deploys: Api<Deployment> = Api::default_namespaced(c.client());
    let mut d = deployment("rec", 4, "app:1");
    if let Some(spec) = d.spec.as_mut() {
        spec.strategy =
            Some(serde_json::from_value(json!({"type": "Recreate"})).expect("strategy"));
    }
    deploys
        .create(&PostParams::default(), &d)
        .await
        .expect("create");
    wait_available(&deploys, "rec", 4, Duration::from_secs(60)).await;
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let mut view = PodView::start(&pods, "rec").await;
    deploys
        .patch("rec", &PatchParams::default(), &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "app:2"}]}}}})))
        .await
        .expect("new image");
    loop {
        let images: BTreeSet<String> = view.pods.values().map(image_of).collect();
        assert!(
            !(images.contains("app:1") && images.contains("app:2")),
            "old and new pods coexisted: {images:?}"
        );
        let done = view.pods.len() == 4
            && view
                .pods
                .values()
                .all(|p| image_of(p) == "app:2" && ready(p));
        if done {
            break;
        }
        view.next().await;
    }
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_deployment_follows_the_propagation_policy() {
    let c = Cluster::builder().nodes(2).start().await.expect("start");
    let deploys: Api<Deployment> = Api::default_namespaced(c.client());
    let rss: Api<ReplicaSet> = Api::default_namespaced(c.client());
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    for name in ["bg", "fg", "orphan"] {
        deploys
            .create(&PostParams::default(), &deployment(name, 2, "app:1"))
            .await
            .expect("create");
    }
    for name in ["bg", "fg", "orphan"] {
        wait_available(&deploys, name, 2, Duration::from_secs(60)).await;
    }
    let count = |api: Api<Pod>, app: &'static str| async move {
        api.list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .map(|l| l.items.len())
            .unwrap_or(usize::MAX)
    };

    deploys
        .delete("bg", &DeleteParams::background())
        .await
        .expect("delete background");
    until(
        "background: ReplicaSets and pods gone",
        Duration::from_secs(60),
        || {
            let (rss, pods) = (rss.clone(), pods.clone());
            async move {
                rss.list(&ListParams::default().labels("app=bg"))
                    .await
                    .is_ok_and(|l| l.items.is_empty())
                    && count(pods, "bg").await == 0
            }
        },
    )
    .await;

    deploys
        .delete("fg", &DeleteParams::foreground())
        .await
        .expect("delete foreground");
    let held = deploys.get_opt("fg").await.expect("get");
    assert!(
        held.is_some_and(|d| d.metadata.deletion_timestamp.is_some()),
        "foreground keeps the owner while dependents exist"
    );
    until(
        "foreground: dependents then the Deployment gone",
        Duration::from_secs(60),
        || {
            let (d, rss) = (deploys.clone(), rss.clone());
            async move {
                d.get_opt("fg").await.is_ok_and(|d| d.is_none())
                    && rss
                        .list(&ListParams::default().labels("app=fg"))
                        .await
                        .is_ok_and(|l| l.items.is_empty())
            }
        },
    )
    .await;

    deploys
        .delete(
            "orphan",
            &DeleteParams {
                propagation_policy: Some(PropagationPolicy::Orphan),
                ..Default::default()
            },
        )
        .await
        .expect("orphan");
    until(
        "orphan: the Deployment gone",
        Duration::from_secs(60),
        || {
            let d = deploys.clone();
            async move { d.get_opt("orphan").await.is_ok_and(|d| d.is_none()) }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left = rss
        .list(&ListParams::default().labels("app=orphan"))
        .await
        .expect("list")
        .items;
    assert_eq!(left.len(), 1, "the ReplicaSet stays");
    assert!(
        left[0]
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(|o| o.is_empty()),
        "and no longer has an owner"
    );
    assert_eq!(count(pods.clone(), "orphan").await, 2, "its pods stay");
    c.shutdown().await.expect("shutdown");
}
