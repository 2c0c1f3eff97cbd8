mod fake_kubelet;
use fake_kubelet::{TestCluster, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_replicas() -> anyhow::Result<()> {
    let cluster = TestCluster::start(None).await?;
    let api: Api<Deployment> = Api::default_namespaced(cluster.client.clone());
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "big"},
        "spec": {"replicas": 1000, "selector": {"matchLabels": {"app": "big"}},
                 "template": {"metadata": {"labels": {"app": "big"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}
    }))?;
    let t = Instant::now();
    api.create(&PostParams::default(), &d).await?;
    wait_for("all available", Duration::from_secs(300), || async {
        let d = api.get("big").await?;
        Ok((d.status.as_ref().and_then(|s| s.available_replicas) == Some(1000)).then_some(()))
    }).await?;
    eprintln!("1000 replicas available in {:?}", t.elapsed());
    let t = Instant::now();
    api.patch("big", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "y"}]}}}}))).await?;
    wait_for("rolled", Duration::from_secs(300), || async {
        let d = api.get("big").await?;
        let s = d.status.clone().unwrap_or_default();
        Ok((s.observed_generation == d.metadata.generation && s.updated_replicas == Some(1000) && s.replicas == Some(1000) && s.available_replicas == Some(1000)).then_some(()))
    }).await?;
    eprintln!("1000 replicas rolled in {:?}", t.elapsed());
    cluster.stop().await;
    Ok(())
}
