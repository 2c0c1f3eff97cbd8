//! The flags every subcommand shares: the store, the nodes and the container runtime.

use std::path::Path;

use anyhow::{Context, bail};
use clap::Args;
use kybernetes::{Cluster, ClusterBuilder};

/// Where the cluster keeps its state, how many nodes it has, and what runs their containers.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// The store: `memory`, `sqlite:PATH`, or `etcd:URL[,URL...]` (etcd needs a build with
    /// the `etcd` feature). Default: SQLite in the data directory if there is one, else memory.
    #[arg(long, value_name = "STORE")]
    pub store: Option<String>,
    /// How many node agents to start (named node-1, node-2, ...).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub nodes: usize,
    /// The pod network each node's pod CIDR comes from (nodes beyond its capacity register
    /// without one, with NetworkUnavailable).
    #[arg(long, default_value = "10.244.0.0/16", value_name = "CIDR")]
    pub cluster_cidr: String,
    /// The prefix length of each node's pod CIDR: `10.244.0.0/16` holds 256 nodes at 24,
    /// 1,024 at 26.
    #[arg(long, default_value_t = 24, value_name = "BITS", value_parser = clap::value_parser!(u8).range(1..=30))]
    pub node_cidr_mask_size: u8,
    /// The container runtime of the nodes: `fake` (scripted containers, no processes) or
    /// `process` (each container a local process sharing the host network; logs under the
    /// data directory's `processes/` if there is one). `containerd` comes later.
    #[arg(long, default_value = "fake", value_parser = parse_runtime, value_name = "RUNTIME")]
    pub runtime: Runtime,
}

/// A container runtime the nodes can drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `FakeRuntime`: containers that run no processes.
    Fake,
    /// `ProcessRuntime` in host mode: each container a local process.
    Process,
}

fn parse_runtime(s: &str) -> Result<Runtime, String> {
    match s {
        "fake" => Ok(Runtime::Fake),
        "process" => Ok(Runtime::Process),
        "containerd" => Err(format!(
            "the {s} runtime is not available in this version; use --runtime fake"
        )),
        other => Err(format!(
            "unknown runtime {other:?}; the runtimes are: fake, process"
        )),
    }
}

impl ClusterArgs {
    /// A builder with the store and nodes these flags ask for. With `data_dir` and no
    /// `--store`, the store is SQLite in that directory.
    pub async fn builder(&self, data_dir: Option<&Path>) -> anyhow::Result<ClusterBuilder> {
        let mut builder = Cluster::builder()
            .nodes(self.nodes)
            .cluster_cidr(&self.cluster_cidr)
            .node_cidr_mask_size(self.node_cidr_mask_size);
        // The fake runtime is the builder's default.
        if self.runtime == Runtime::Process {
            let mut processes = kybernetes::runtime::ProcessRuntime::builder();
            if let Some(dir) = data_dir {
                processes = processes.root(dir.join("processes"));
            }
            builder = builder.runtime(processes.build());
        }
        match (self.store.as_deref(), data_dir) {
            (None, Some(dir)) => builder
                .data_dir(dir)
                .with_context(|| format!("opening the data directory {}", dir.display())),
            (None | Some("memory"), _) => Ok(builder),
            (Some(store), _) => with_store(builder, store).await,
        }
    }
}

async fn with_store(builder: ClusterBuilder, store: &str) -> anyhow::Result<ClusterBuilder> {
    if let Some(path) = store.strip_prefix("sqlite:") {
        let s = kybernetes::store::SqliteStore::open(path)
            .with_context(|| format!("opening {path}"))?;
        return Ok(builder.store(s));
    }
    if let Some(urls) = store.strip_prefix("etcd:") {
        return etcd(builder, urls).await;
    }
    bail!("unknown store {store:?}: use memory, sqlite:PATH or etcd:URL[,URL...]")
}

#[cfg(feature = "etcd")]
async fn etcd(builder: ClusterBuilder, urls: &str) -> anyhow::Result<ClusterBuilder> {
    let endpoints: Vec<&str> = urls.split(',').filter(|s| !s.is_empty()).collect();
    let s = kybernetes::store::EtcdStore::connect(&endpoints)
        .await
        .with_context(|| format!("connecting to etcd at {urls}"))?;
    Ok(builder.store(s))
}

#[cfg(not(feature = "etcd"))]
async fn etcd(_: ClusterBuilder, urls: &str) -> anyhow::Result<ClusterBuilder> {
    bail!(
        "etcd:{urls}: this binary was built without etcd; install it with `cargo install --path cli --features etcd` (needs protoc)"
    )
}
