//! P2: a Deployment reaching all Running on fake nodes, at 1,000 replicas / 100 nodes and at
//! 10,000 replicas / 1,000 nodes, and the ratio of the two times (issue 14: ≤ 300 ms, and the
//! larger run at most 12 times the smaller, i.e. near-linear cost).
//!
//! Scale knob: `P2_SCALE` divides both sizes (`P2_SCALE=10`: 100/10 and 1,000/100);
//! `P2_RUNS` sets the runs per size (default 5 for the small size, 2 for the large one).
//! Upstream is bound by QPS caps here: tens of seconds.

mod common;

use std::time::Duration;

use kybernetes::Cluster;

/// Time from creating a Deployment of `replicas` on `nodes` nodes to every pod Running.
async fn run_once(nodes: usize, replicas: usize) -> anyhow::Result<Duration> {
    // Every node gets a pod CIDR: 10.0.0.0/12 holds 4,096 nodes of a /24.
    let cluster = Cluster::builder()
        .cluster_cidr("10.0.0.0/12")
        .nodes(nodes)
        .start()
        .await?;
    common::wait_nodes_ready(&cluster, nodes).await?;
    let took = common::deployment_to_running(&cluster, "big", replicas).await?;
    cluster.shutdown().await?;
    Ok(took)
}

/// The median of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let scale = common::env_usize("P2_SCALE", 1)?.max(1);
    let sizes = [(100 / scale, 1000 / scale), (1000 / scale, 10_000 / scale)];
    common::print_conditions(&format!(
        "P2: Deployment of {} replicas on {} fake nodes, and of {} on {}, until every pod is Running (P2_SCALE={scale})",
        sizes[0].1, sizes[0].0, sizes[1].1, sizes[1].0
    ));
    let mut medians = Vec::new();
    for (i, &(nodes, replicas)) in sizes.iter().enumerate() {
        let runs = common::env_usize("P2_RUNS", if i == 0 { 5 } else { 2 })?.max(1);
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
