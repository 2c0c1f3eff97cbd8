//! P2: a Deployment of 1,000 replicas on 100 fake nodes, until every pod is Running.
//! Target ≤ 1 s (upstream is bound by QPS caps: tens of seconds).

mod common;

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kybernetes::Cluster;
use serde_json::json;

const NODES: usize = 100;
const REPLICAS: usize = 1000;

async fn wait_nodes(c: &Cluster) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(c.client());
    loop {
        let list = nodes.list(&ListParams::default()).await?.items;
        let ready = list.iter().filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        if ready.count() == NODES {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::print_conditions(
        "P2: Deployment of 1,000 replicas on 100 fake nodes until every pod is Running",
    );
    let runs = 5;
    let mut samples = Vec::new();
    for _ in 0..runs {
        let cluster = Cluster::builder().nodes(NODES).start().await?;
        wait_nodes(&cluster).await?;
        let deploys: Api<Deployment> = Api::default_namespaced(cluster.client());
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "big"},
            "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "big"}},
                     "template": {"metadata": {"labels": {"app": "big"}},
                                  "spec": {"containers": [{"name": "main", "image": "app:1"}]}}}
        }))?;
        let pods: Api<Pod> = Api::default_namespaced(cluster.client());
        // Follow the pods through one watch (as a client would), rather than re-listing 1,000
        // pods in a loop, so the measurement does not load the cluster it measures.
        let rv = pods
            .list(&ListParams::default().limit(1))
            .await?
            .metadata
            .resource_version
            .unwrap_or_default();
        let stream = pods
            .watch(&WatchParams::default().labels("app=big"), &rv)
            .await?;
        let mut stream = std::pin::pin!(stream);
        let mut running = std::collections::HashSet::new();
        let t0 = Instant::now();
        deploys.create(&PostParams::default(), &d).await?;
        while running.len() < REPLICAS {
            let next = tokio::time::timeout(Duration::from_secs(120), stream.next()).await;
            let Ok(Some(ev)) = next else {
                anyhow::bail!(
                    "only {} of {REPLICAS} pods Running after 120 s",
                    running.len()
                )
            };
            if let WatchEvent::Added(p) | WatchEvent::Modified(p) = ev?
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            {
                running.insert(p.metadata.name.unwrap_or_default());
            }
        }
        samples.push(t0.elapsed());
        cluster.shutdown().await?;
    }
    println!(
        "P2 create-to-1000-Running on 100 nodes: {}  (target: <= 1000 ms)",
        common::summary(samples)
    );
    Ok(())
}
