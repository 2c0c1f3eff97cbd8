//! P2: a Deployment of 1,000 replicas on 100 fake nodes, until every pod is Running.
//! Target ≤ 1 s (upstream is bound by QPS caps: tens of seconds).

mod common;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kybernetes::Cluster;
use serde_json::json;

const NODES: usize = 100;
const REPLICAS: usize = 1000;

async fn wait_nodes(c: &Cluster) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(c.client());
    loop {
        let list = nodes.list(&ListParams::default()).await?.items;
        let ready = list.iter().filter(|n| {
            n.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        if ready.count() == NODES {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::print_conditions("P2: Deployment of 1,000 replicas on 100 fake nodes until every pod is Running");
    let runs = 3;
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
        let t0 = Instant::now();
        deploys.create(&PostParams::default(), &d).await?;
        let verbose = std::env::var("KYB_BENCH_VERBOSE").is_ok();
        loop {
            let list = pods.list(&ListParams::default().labels("app=big")).await?.items;
            let running = list.iter().filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")).count();
            if verbose {
                let bound = list.iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()).count();
                println!("  t={:>6.0}ms created={} bound={} running={}", t0.elapsed().as_secs_f64() * 1000.0, list.len(), bound, running);
            }
            if running >= REPLICAS {
                break;
            }
            if t0.elapsed() > Duration::from_secs(120) {
                anyhow::bail!("only {running} of {REPLICAS} pods Running after 120 s");
            }
            tokio::time::sleep(Duration::from_millis(if verbose { 50 } else { 10 })).await;
        }
        samples.push(t0.elapsed());
        cluster.shutdown().await?;
    }
    println!("P2 create-to-1000-Running on 100 nodes: {}  (target: <= 1000 ms)", common::summary(samples));
    Ok(())
}
