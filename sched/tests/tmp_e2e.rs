use std::sync::Arc;
use std::time::{Duration, Instant};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kybernetes_sched::{Framework, SchedulerConfig, SchedulerLoop};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_throughput() -> anyhow::Result<()> {
    let store = Arc::new(kybernetes_store::MemoryStore::default());
    let api = kybernetes_apiserver::ApiServer::new(store, kybernetes_core::Clock::new()).await?;
    let client = kube::Client::new(api.router(), "default");
    let nodes: Api<Node> = Api::all(client.clone());
    let n_nodes = std::env::var("NODES").ok().and_then(|s| s.parse().ok()).unwrap_or(500usize);
    let n_pods = std::env::var("PODS").ok().and_then(|s| s.parse().ok()).unwrap_or(5000usize);
    for i in 0..n_nodes {
        let name = format!("node-{i}");
        nodes.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}}))?).await?;
        let r = json!({"cpu": "32", "memory": "128Gi", "pods": "110"});
        nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({"status": {"allocatable": r, "capacity": r}}))).await?;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..n_pods {
        pods.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": format!("p-{i}")},
            "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}))?).await?;
    }
    let events = std::env::var("EVENTS").is_ok();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let t = Instant::now();
    let h = SchedulerLoop::spawn(client.clone(), Arc::new(Framework::default_plugins()), SchedulerConfig { record_events: events, ..Default::default() }, shutdown.clone());
    loop {
        let list = pods.list(&ListParams::default().fields("spec.nodeName=")).await?;
        if list.items.is_empty() { break; }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let e = t.elapsed();
    println!("{n_pods} pods on {n_nodes} nodes bound in {e:?}: {:.0} pods/s (events: {events})", n_pods as f64 / e.as_secs_f64());
    shutdown.cancel();
    h.await?;
    Ok(())
}
