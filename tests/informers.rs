//! The controller manager's shared informers: one watch of pods and one of nodes for every
//! controller (upstream's SharedInformerFactory), counted with the API server's
//! `apiserver_longrunning_requests` gauge.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use kybernetes::Cluster;

use crate::common::{deployment, until};

/// The open watches of core `resource`, summed over scopes, from `/metrics`.
async fn open_watches(c: &Cluster, resource: &str) -> u64 {
    let req = http::Request::builder()
        .uri("/metrics")
        .body(kube::client::Body::from(Vec::new()))
        .expect("request");
    let resp = c.client().send(req).await.expect("metrics");
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    let prefix = format!(
        r#"apiserver_longrunning_requests{{verb="WATCH",group="",version="v1",resource="{resource}",subresource="","#
    );
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn the_controllers_share_one_watch_of_pods_and_one_of_nodes() {
    // No nodes, so no node agent watches: what is left is the control plane's.
    let c = Cluster::builder().nodes(0).start().await.expect("start");
    // A Deployment that gets its ReplicaSet and pods proves the controllers have started and
    // read the shared pod cache.
    let deploys: Api<Deployment> = Api::default_namespaced(c.client());
    deploys
        .create(&PostParams::default(), &deployment("web", 2, "busybox"))
        .await
        .expect("create");
    until(
        "the deployment to count its pods",
        Duration::from_secs(60),
        || {
            let d = deploys.clone();
            async move {
                d.get("web")
                    .await
                    .ok()
                    .and_then(|d| d.status)
                    .and_then(|s| s.replicas)
                    == Some(2)
            }
        },
    )
    .await;

    // Pods: the controllers' shared informer, the scheduler's and the garbage collector's
    // metadata monitor. Nodes: the shared informer, the scheduler's and the garbage
    // collector's. Without sharing, every controller watched pods itself (thirteen watches).
    let want = (3, 3);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen = (
            open_watches(&c, "pods").await,
            open_watches(&c, "nodes").await,
        );
        if seen == want {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "open (pod, node) watches: {seen:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.shutdown().await.expect("shutdown");
}
