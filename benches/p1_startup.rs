//! P1: an in-process 3-node cluster, from `start()` until every node is Ready.
//! Target ≤ 20 ms (envtest 7–15 s with no nodes; kind 33 s; k3d 20 s).

mod common;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kybernetes::Cluster;

fn all_ready(nodes: &[Node], want: usize) -> bool {
    nodes.len() == want
        && nodes.iter().all(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::print_conditions("P1: start() until 3 nodes are Ready");
    let runs = 30;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        let cluster = Cluster::builder().nodes(3).start().await?;
        let nodes: Api<Node> = Api::all(cluster.client());
        loop {
            if all_ready(&nodes.list(&ListParams::default()).await?.items, 3) {
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        samples.push(t0.elapsed());
        cluster.shutdown().await?;
    }
    println!(
        "P1 start-to-3-nodes-Ready: {}  (target: <= 20 ms)",
        common::summary(samples)
    );
    Ok(())
}
