//! Upstream's scheduler_perf SchedulingBasic shape, shared by P3 (plain pods) and P4 (pods
//! with inter-pod constraints): nodes that are API objects without agents, some pods already
//! bound, then pods created and scheduled end to end through the API.
//!
//! A directory module, so Cargo does not take it for a benchmark of its own.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kybernetes::Cluster;
use serde_json::{Value, json};

/// The zone label every node carries (10 zones).
pub const ZONE: &str = "topology.kubernetes.io/zone";

/// Tolerates the lifecycle controller's taints on these agentless nodes.
fn tolerations() -> Value {
    json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists"},
           {"key": "node.kubernetes.io/unreachable", "operator": "Exists"},
           {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists"}])
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

/// A pod of upstream's test shape (100m CPU, 100Mi), with `labels` and the spec fields in
/// `extra` merged in.
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

/// One run: `nodes` nodes, `placed` pods bound round-robin, then `pods` pods created (their
/// labels (which must include `app=measured`) and extra spec fields from `shape(i)`) and
/// scheduled. Returns the time from the first create to the last pod seen bound.
pub async fn run(
    nodes: usize,
    placed: usize,
    pods: usize,
    shape: impl Fn(usize) -> (Value, Value),
) -> anyhow::Result<Duration> {
    let cluster = Cluster::builder()
        // Room for a pod CIDR per node: 10.0.0.0/8 holds 65,536 nodes of a /24.
        .cluster_cidr("10.0.0.0/8")
        .nodes(0)
        .start()
        .await?;
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
            let (labels, extra) = shape(i);
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
