//! A HorizontalPodAutoscaler on an in-process cluster, under tokio's paused clock: a
//! Deployment whose fake containers use twice their CPU request scales from 1 to 10 replicas,
//! then, once the CPU drops, back to 1 after the 300 s scale-down stabilization window, in a
//! few seconds of real time.
//!
//! Run with `cargo run --example autoscaling`.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::Api;
use kybernetes::Cluster;
use kybernetes::core::Clock;
use kybernetes::runtime::FakeRuntime;
use kybernetes::runtime::fake::ContainerScript;

const MANIFESTS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: web:1
        resources: {requests: {cpu: 100m}}
---
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 10
  targetCPUUtilizationPercentage: 50
"#;

fn main() -> anyhow::Result<()> {
    // A paused clock: virtual time jumps ahead whenever every task is waiting.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let clock = Clock::new();
    let fake = FakeRuntime::new(clock.clone());
    // 200m of a 100m request for ten minutes, then 10m.
    let drop_at = clock.now() + chrono::Duration::minutes(10);
    fake.script_image(
        "web:1",
        ContainerScript::new()
            .cpu_millicores(200)
            .cpu_millicores_from(drop_at, 10),
    );
    let cluster = Cluster::builder()
        .clock(clock.clone())
        .nodes(2)
        .runtime(fake.clone())
        .start()
        .await?;
    cluster.apply_yaml(MANIFESTS).await?;

    let deploys: Api<Deployment> = Api::default_namespaced(cluster.client());
    let hpas: Api<HorizontalPodAutoscaler> = Api::default_namespaced(cluster.client());
    let start = clock.now();
    let mut last = 0;
    while clock.now() < drop_at + chrono::Duration::minutes(12) {
        let replicas = deploys
            .get("web")
            .await?
            .spec
            .and_then(|s| s.replicas)
            .unwrap_or(0);
        if replicas != last {
            let status = hpas.get("web").await?.status.unwrap_or_default();
            let cpu = status
                .current_metrics
                .iter()
                .flatten()
                .find_map(|m| m.resource.as_ref()?.current.average_utilization);
            println!(
                "t+{:>4} s: {replicas:>2} replicas (CPU at {} of request)",
                (clock.now() - start).num_seconds(),
                cpu.map_or("?".into(), |c| format!("{c}%")),
            );
            last = replicas;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    cluster.shutdown().await?;
    Ok(())
}
