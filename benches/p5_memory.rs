//! P5: 150,000 pods on 5,000 nodes (upstream's largest supported cluster) held in one
//! process, every node with its node agent on the shared FakeRuntime; prints resident memory
//! (`VmRSS`) with the cluster idle, with the nodes Ready, and with every pod Running, and the
//! bytes per node and per pod (issue 14 target: ≤ 2 GiB resident at full scale).
//!
//! The pods come from Deployments of `KYB_P5_CHUNK` replicas (default 10,000), created one
//! after the other, so the whole path (controllers, scheduler, node agents) holds its state.
//! Scale knob: `KYB_P5_SCALE` (default 1) scales the node and pod counts, e.g. 0.1 for
//! 500 nodes and 15,000 pods. `KYB_P5_COMPACT_SECS` (default 300, upstream's interval) sets the
//! store's compaction interval; below 60 the result is taken three intervals after the last
//! write, when only the current versions are left. `KYB_P5_EXIT_LIVE=1` ends the process right
//! after the result without shutting the cluster down, so that a heap profiler (`heaptrack`)
//! reports everything the cluster holds as still allocated at exit, with the stack that
//! allocated it.

mod common;

use std::time::Instant;

use kybernetes::Cluster;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (scale, n) = common::scale("KYB_P5_SCALE")?;
    let (nodes, pods) = (n(5000.0), n(150_000.0));
    let chunk = common::env_usize("KYB_P5_CHUNK", 10_000)?.max(1);
    // The store keeps every version until the compactor drops history older than one interval
    // (upstream's 5 minutes); a shorter interval shows what the history costs.
    let compact = common::env_usize("KYB_P5_COMPACT_SECS", 300)?.max(1) as u64;
    common::print_conditions(&format!(
        "P5: {pods} pods on {nodes} nodes with node agents, in one process (KYB_P5_SCALE={scale}, KYB_P5_CHUNK={chunk}, KYB_P5_COMPACT_SECS={compact})"
    ));
    let (base, _) = common::resident_memory()?;
    let t0 = Instant::now();
    // 10.0.0.0/8 holds 65,536 nodes of a /24.
    let cluster = Cluster::builder()
        .cluster_cidr("10.0.0.0/8")
        .nodes(nodes)
        .compaction_interval(Some(std::time::Duration::from_secs(compact)))
        .start()
        .await?;
    common::wait_nodes_ready(&cluster, nodes).await?;
    let (with_nodes, _) = common::resident_memory()?;
    println!(
        "P5 {nodes} nodes Ready in {:.1} s: VmRSS {:.0} MiB ({:.0} MiB before the cluster), {:.0} KiB per node",
        t0.elapsed().as_secs_f64(),
        mib(with_nodes),
        mib(base),
        with_nodes.saturating_sub(base) as f64 / 1024.0 / nodes as f64
    );
    let mut created = 0;
    let mut i = 0;
    while created < pods {
        let replicas = chunk.min(pods - created);
        let took = common::deployment_to_running(&cluster, &format!("p5-{i}"), replicas).await?;
        created += replicas;
        i += 1;
        let (rss, _) = common::resident_memory()?;
        println!(
            "P5 {created} pods Running (+{replicas} in {:.1} s): VmRSS {:.0} MiB",
            took.as_secs_f64(),
            mib(rss)
        );
    }
    if compact < 60 {
        // Two intervals after the last write, everything but the current versions is gone.
        tokio::time::sleep(std::time::Duration::from_secs(3 * compact)).await;
    }
    let (rss, hwm) = common::resident_memory()?;
    println!(
        "P5 result: {pods} pods on {nodes} nodes: VmRSS {:.0} MiB = {:.2} GiB (peak {:.0} MiB), {:.0} bytes per pod beyond the Ready nodes  (target: <= 2 GiB at KYB_P5_SCALE=1)",
        mib(rss),
        rss as f64 / GIB,
        mib(hwm),
        rss.saturating_sub(with_nodes) as f64 / pods as f64
    );
    if std::env::var_os("KYB_P5_EXIT_LIVE").is_some() {
        // Exit before any destructor runs: what the cluster holds stays allocated at exit.
        std::process::exit(0);
    }
    cluster.shutdown().await?;
    Ok(())
}
