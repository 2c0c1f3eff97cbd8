//! ReplicationControllers: a map selector keeps `replicas` pods, and the scale subresource
//! (`kubectl scale rc`) changes the count.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kybernetes::Cluster;
use serde_json::json;

use crate::common;
use common::until;

async fn live_pods(pods: &Api<Pod>) -> Vec<Pod> {
    pods.list(&ListParams::default().labels("app=wordpress-db"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_controller_keeps_its_replicas_and_scales_through_the_scale_subresource() {
    let c = Cluster::builder().nodes(2).start().await.expect("start");
    let rcs: Api<ReplicationController> = Api::default_namespaced(c.client());
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let rc: ReplicationController = serde_json::from_value(json!({
        "metadata": {"name": "wordpress-db"},
        "spec": {"replicas": 3, "selector": {"app": "wordpress-db"},
                 "template": {"metadata": {"labels": {"app": "wordpress-db"}},
                              "spec": {"containers": [{"name": "mysql", "image": "mysql:8"}]}}}
    }))
    .expect("rc");
    rcs.create(&PostParams::default(), &rc)
        .await
        .expect("create");
    until("three ready replicas", Duration::from_secs(60), || {
        let rcs = rcs.clone();
        async move {
            rcs.get("wordpress-db")
                .await
                .ok()
                .and_then(|r| r.status)
                .is_some_and(|s| s.replicas == 3 && s.ready_replicas == Some(3))
        }
    })
    .await;
    for p in live_pods(&pods).await {
        let owner = p
            .metadata
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|r| r.controller == Some(true))
            .expect("a controller");
        assert_eq!(
            (owner.api_version.as_str(), owner.kind.as_str()),
            ("v1", "ReplicationController")
        );
        assert_eq!(owner.name, "wordpress-db");
    }
    rcs.patch_scale(
        "wordpress-db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .expect("scale");
    until("one pod left", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move { live_pods(&pods).await.len() == 1 }
    })
    .await;
    c.shutdown().await.expect("shutdown");
}
