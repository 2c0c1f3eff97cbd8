//! P4: upstream's SchedulingBasic shape with inter-pod constraints, end to end through the
//! API: 5,000 nodes (API objects, no agents), 1,000 pods already bound, then 10,000 pods
//! created and scheduled. Two runs: required pod anti-affinity on `kubernetes.io/hostname`
//! (4 groups of 2,500, each repelling its own group) and a `maxSkew: 1` `DoNotSchedule`
//! topology spread constraint over 10 zones. Target ≥ 5,000 pods/s each (release).
//!
//! `KYB_P4_SCALE` (default 1) scales the node and pod counts, e.g. 0.1 for a quick run.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kybernetes::Cluster;
use serde_json::{Value, json};

const ZONE: &str = "topology.kubernetes.io/zone";

/// Tolerates the lifecycle controller's taints on these agentless nodes.
fn tolerations() -> Value {
    json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists"},
           {"key": "node.kubernetes.io/unreachable", "operator": "Exists"}])
}

fn node(i: usize) -> anyhow::Result<Node> {
    let name = format!("node-{i}");
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, ZONE: format!("zone-{}", i % 10)}},
        "status": {"allocatable": {"cpu": "32", "memory": "64Gi", "pods": "110"},
                   "capacity": {"cpu": "32", "memory": "64Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }))?)
}

fn pod(name: &str, labels: Value, extra: Value) -> anyhow::Result<Pod> {
    let mut spec = json!({"containers": [{"name": "c", "image": "app:1",
        "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}}], "tolerations": tolerations()});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    Ok(serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "spec": spec}),
    )?)
}

async fn create_all<T>(api: &Api<T>, objs: Vec<T>) -> anyhow::Result<()>
where
    T: Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    futures::stream::iter(objs)
        .map(|o| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &o).await.map(|_| ()) }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// One run: returns how long the measured pods took from the first create to all bound.
async fn run(nodes: usize, placed: usize, pods: usize, shape: &str) -> anyhow::Result<Duration> {
    let cluster = Cluster::builder().nodes(0).start().await?;
    let client = cluster.client();
    let node_api: Api<Node> = Api::all(client.clone());
    create_all(
        &node_api,
        (0..nodes).map(node).collect::<anyhow::Result<_>>()?,
    )
    .await?;
    let pod_api: Api<Pod> = Api::default_namespaced(client.clone());
    let initial = (0..placed)
        .map(|i| {
            pod(
                &format!("placed-{i}"),
                json!({"app": "placed"}),
                json!({"nodeName": format!("node-{}", i % nodes)}),
            )
        })
        .collect::<anyhow::Result<_>>()?;
    create_all(&pod_api, initial).await?;
    let measured: Vec<Pod> = (0..pods)
        .map(|i| {
            let (labels, extra) = match shape {
                "anti-affinity" => {
                    let group = format!("g{}", i % 4);
                    (
                        json!({"app": "measured", "group": group}),
                        json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                            {"labelSelector": {"matchLabels": {"group": group}}, "topologyKey": "kubernetes.io/hostname"}]}}}),
                    )
                }
                _ => (
                    json!({"app": "measured"}),
                    json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": ZONE,
                        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "measured"}}}]}),
                ),
            };
            pod(&format!("m-{i}"), labels, extra)
        })
        .collect::<anyhow::Result<_>>()?;
    let rv = pod_api
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let stream = pod_api
        .watch(&WatchParams::default().labels("app=measured"), &rv)
        .await?;
    let mut stream = std::pin::pin!(stream);
    let t0 = Instant::now();
    let creating = tokio::spawn({
        let pod_api = pod_api.clone();
        async move { create_all(&pod_api, measured).await }
    });
    let mut bound = HashSet::new();
    while bound.len() < pods {
        let next = tokio::time::timeout(Duration::from_secs(300), stream.next()).await;
        let Ok(Some(ev)) = next else {
            anyhow::bail!("only {} of {pods} pods bound after 300 s", bound.len())
        };
        if let WatchEvent::Added(p) | WatchEvent::Modified(p) = ev?
            && p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some()
        {
            bound.insert(p.metadata.name.unwrap_or_default());
        }
    }
    let elapsed = t0.elapsed();
    creating.await??;
    cluster.shutdown().await?;
    Ok(elapsed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let scale: f64 = std::env::var("KYB_P4_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let n = |base: f64| ((base * scale).round() as usize).max(1);
    let (nodes, placed, pods) = (n(5000.0), n(1000.0), n(10_000.0));
    common::print_conditions(&format!(
        "P4: {nodes} nodes (API objects), {placed} pods bound, {pods} pods created and scheduled through the API (KYB_P4_SCALE={scale})"
    ));
    for shape in ["anti-affinity", "topology-spread"] {
        let elapsed = run(nodes, placed, pods, shape).await?;
        println!(
            "P4 {shape}: {pods} pods bound in {} ms = {:.0} pods/s  (target: >= 5000 pods/s)",
            elapsed.as_millis(),
            pods as f64 / elapsed.as_secs_f64()
        );
    }
    Ok(())
}
