//! Pod anti-affinity through the whole cluster: a Deployment whose pods repel each other
//! per node fills each node once and leaves the rest Pending with upstream's message.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kybernetes::Cluster;
use serde_json::json;

use crate::common;
use common::until;

fn is_unschedulable_by_anti_affinity(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
                    && c.message.as_deref().is_some_and(|m| {
                        m.contains("0/4 nodes are available")
                            && m.contains("didn't match pod anti-affinity rules")
                    })
            })
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_with_hostname_anti_affinity_leaves_the_surplus_pending() {
    let c = Cluster::builder().nodes(4).start().await.expect("start");
    let deploys: Api<Deployment> = Api::default_namespaced(c.client());
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "spread"},
        "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "spread"}},
                 "template": {"metadata": {"labels": {"app": "spread"}},
                              "spec": {"containers": [{"name": "main", "image": "busybox"}],
                                       "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                                           {"labelSelector": {"matchLabels": {"app": "spread"}},
                                            "topologyKey": "kubernetes.io/hostname"}]}}}}}
    }))
    .expect("deployment");
    deploys
        .create(&PostParams::default(), &d)
        .await
        .expect("create");
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    until(
        "4 pods Running on 4 distinct nodes and 2 Pending with the anti-affinity message",
        Duration::from_secs(60),
        || {
            let pods = pods.clone();
            async move {
                let Ok(list) = pods.list(&ListParams::default().labels("app=spread")).await else {
                    return false;
                };
                let running: std::collections::BTreeSet<String> = list
                    .items
                    .iter()
                    .filter(|p| {
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    })
                    .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
                    .collect();
                let pending = list
                    .items
                    .iter()
                    .filter(|p| is_unschedulable_by_anti_affinity(p))
                    .count();
                let running_pods = list
                    .items
                    .iter()
                    .filter(|p| {
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    })
                    .count();
                running.len() == 4 && running_pods == 4 && pending == 2
            }
        },
    )
    .await;
    c.shutdown().await.expect("shutdown");
}
