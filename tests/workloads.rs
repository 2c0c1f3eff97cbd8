//! Workloads on fake backends, through `kube::Api` on `cluster.client()` only.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kybernetes::Cluster;
use kybernetes::core::ipam::Cidr;
use serde_json::json;

pub fn deployment(name: &str, replicas: i32, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "main", "image": image}]}}}
    }))
    .expect("deployment")
}

async fn until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn ready(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_runs_ready_pods_spread_across_nodes_with_ips_in_their_node_cidr() {
    let c = Cluster::builder().nodes(3).start().await.expect("start");
    let deploys: Api<Deployment> = Api::default_namespaced(c.client());
    deploys.create(&PostParams::default(), &deployment("web", 3, "nginx:1.27")).await.expect("create");
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    until("3 ready pods", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move { pods.list(&ListParams::default().labels("app=web")).await.is_ok_and(|l| l.items.len() == 3 && l.items.iter().all(ready)) }
    })
    .await;
    let nodes: Api<Node> = Api::all(c.client());
    let nodes = nodes.list(&ListParams::default()).await.expect("nodes").items;
    let list = pods.list(&ListParams::default().labels("app=web")).await.expect("pods").items;
    let mut used = BTreeSet::new();
    for p in &list {
        let node_name = p.spec.as_ref().and_then(|s| s.node_name.clone()).expect("scheduled");
        used.insert(node_name.clone());
        let node = nodes.iter().find(|n| n.metadata.name.as_deref() == Some(node_name.as_str())).expect("node exists");
        let cidr: Cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.clone()).expect("podCIDR").parse().expect("cidr");
        let ip: std::net::IpAddr = p.status.as_ref().and_then(|s| s.pod_ip.clone()).expect("pod IP").parse().expect("ip");
        assert!(cidr.contains(ip), "{ip} inside {cidr}");
    }
    assert_eq!(used.len(), 3, "one pod per node: {used:?}");
    until("the deployment to report 3 available", Duration::from_secs(30), || {
        let d = deploys.clone();
        async move { d.get("web").await.ok().and_then(|d| d.status).and_then(|s| s.available_replicas) == Some(3) }
    })
    .await;
    c.shutdown().await.expect("shutdown");
}
