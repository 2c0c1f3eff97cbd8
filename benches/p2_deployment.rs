//! P2: a Deployment reaching all Running on fake nodes, at 1,000 replicas / 100 nodes and at
//! 10,000 replicas / 1,000 nodes, and the ratio of the two times (issue 14: ≤ 300 ms, and the
//! larger run at most 12 times the smaller, i.e. near-linear cost).
//!
//! Scale knob: `P2_SCALE` divides both sizes (`P2_SCALE=10`: 100/10 and 1,000/100);
//! `P2_RUNS` sets the runs per size (default 5 for the small size, 2 for the large one).
//! Upstream is bound by QPS caps here: tens of seconds.

mod common;

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kybernetes::Cluster;
use serde_json::json;

async fn wait_nodes(c: &Cluster, want: usize) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(c.client());
    loop {
        let list = nodes.list(&ListParams::default()).await?.items;
        let ready = list.iter().filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        if ready.count() == want {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Time from creating a Deployment of `replicas` on `nodes` nodes to every pod Running.
async fn run_once(nodes: usize, replicas: usize) -> anyhow::Result<Duration> {
    // Every node gets a pod CIDR: 10.0.0.0/12 holds 4,096 nodes of a /24.
    let cluster = Cluster::builder()
        .cluster_cidr("10.0.0.0/12")
        .nodes(nodes)
        .start()
        .await?;
    wait_nodes(&cluster, nodes).await?;
    let deploys: Api<Deployment> = Api::default_namespaced(cluster.client());
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "big"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "big"}},
                 "template": {"metadata": {"labels": {"app": "big"}},
                              "spec": {"containers": [{"name": "main", "image": "app:1"}]}}}
    }))?;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    // Follow the pods through one watch (as a client would), rather than re-listing them in
    // a loop, so the measurement does not load the cluster it measures.
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
    let limit = Duration::from_secs(600);
    while running.len() < replicas {
        let next = tokio::time::timeout(limit, stream.next()).await;
        let Ok(Some(ev)) = next else {
            anyhow::bail!(
                "only {} of {replicas} pods Running after {limit:?}",
                running.len()
            )
        };
        if let WatchEvent::Added(p) | WatchEvent::Modified(p) = ev?
            && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        {
            running.insert(p.metadata.name.unwrap_or_default());
        }
    }
    let took = t0.elapsed();
    cluster.shutdown().await?;
    Ok(took)
}

fn env_usize(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|e| anyhow::anyhow!("{name}={v:?}: {e}")),
        Err(_) => Ok(default),
    }
}

/// The median of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let scale = env_usize("P2_SCALE", 1)?.max(1);
    let sizes = [(100 / scale, 1000 / scale), (1000 / scale, 10_000 / scale)];
    common::print_conditions(&format!(
        "P2: Deployment of {} replicas on {} fake nodes, and of {} on {}, until every pod is Running (P2_SCALE={scale})",
        sizes[0].1, sizes[0].0, sizes[1].1, sizes[1].0
    ));
    let mut medians = Vec::new();
    for (i, &(nodes, replicas)) in sizes.iter().enumerate() {
        let runs = env_usize("P2_RUNS", if i == 0 { 5 } else { 2 })?.max(1);
        let mut samples = Vec::new();
        for _ in 0..runs {
            samples.push(run_once(nodes.max(1), replicas.max(1)).await?);
        }
        medians.push(median(samples.clone()));
        println!(
            "P2 create-to-{replicas}-Running on {nodes} nodes: {}",
            common::summary(samples)
        );
    }
    println!(
        "P2 ratio {}-replica / {}-replica median: {:.1}x for {}x the work  (targets: small <= 300 ms at P2_SCALE=1, ratio <= 12x)",
        sizes[1].1,
        sizes[0].1,
        medians[1].as_secs_f64() / medians[0].as_secs_f64(),
        sizes[1].1 / sizes[0].1.max(1)
    );
    Ok(())
}
