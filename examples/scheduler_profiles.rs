//! Scheduler profiles: one cluster, two `schedulerName`s. `default-scheduler` spreads pods
//! over the emptiest node; `bin-packer` (MostAllocated, BalancedAllocation off) fills the
//! busiest node first. A pod naming no profile is left Pending.
//!
//! Run with `cargo run --example scheduler_profiles`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kybernetes::Cluster;
use kybernetes::sched::KubeSchedulerConfiguration;
use serde_json::json;

/// The profiles; the file is shared with the sched crate's tests, which check that each
/// profile places pods as described above.
const CONFIG: &str = include_str!("../sched/testdata/bin-packer.yaml");

fn pod(name: &str, scheduler: Option<&str>) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "schedulerName": scheduler,
            "containers": [{"name": "c", "image": "busybox",
                            "resources": {"requests": {"cpu": "500m"}}}],
        },
    }))?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = KubeSchedulerConfiguration::from_yaml(CONFIG)?;
    let cluster = Cluster::builder()
        .nodes(3)
        .scheduler_config(config)
        .start()
        .await?;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    for i in 0..3 {
        pods.create(&PostParams::default(), &pod(&format!("spread-{i}"), None)?)
            .await?;
        pods.create(
            &PostParams::default(),
            &pod(&format!("packed-{i}"), Some("bin-packer"))?,
        )
        .await?;
    }
    pods.create(&PostParams::default(), &pod("stranger", Some("nobody"))?)
        .await?;
    let names = [
        "spread-0", "spread-1", "spread-2", "packed-0", "packed-1", "packed-2",
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut placed = Vec::new();
        for name in names {
            let node = pods.get(name).await?.spec.and_then(|s| s.node_name);
            placed.push((name, node));
        }
        if placed.iter().all(|(_, n)| n.is_some()) {
            for (name, node) in placed {
                println!("{name:9} -> {}", node.unwrap_or_default());
            }
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "pods were not scheduled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stranger = pods.get("stranger").await?;
    println!(
        "stranger  -> {:?} (phase {:?})",
        stranger.spec.and_then(|s| s.node_name),
        stranger.status.and_then(|s| s.phase)
    );
    cluster.shutdown().await?;
    Ok(())
}
