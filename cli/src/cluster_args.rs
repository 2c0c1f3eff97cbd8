//! The flags every subcommand shares: the store, the nodes, the pod network and the
//! container runtime.

use std::path::{Path, PathBuf};

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
    /// The container runtime of the nodes: `fake` (scripted containers, no processes),
    /// `process` (each container a local process sharing the host network; logs under the
    /// data directory's `processes/` if there is one), `process-isolated` (each container
    /// under runc in its own namespaces, the pod's network namespace and a cgroup, on the
    /// host's files read-only; needs root and runc) or `containerd:SOCKET` (containers on
    /// the containerd daemon at SOCKET, in its `kybernetes` namespace; images come from
    /// `kybernetes image import`; needs a build with the `containerd` feature and root).
    #[arg(long, default_value = "fake", value_parser = parse_runtime, value_name = "RUNTIME")]
    pub runtime: Runtime,
    /// The containerd snapshotter images are unpacked into (`native` where overlayfs does
    /// not mount).
    #[arg(long, default_value = "overlayfs", value_name = "NAME")]
    pub containerd_snapshotter: String,
    /// A `KubeSchedulerConfiguration` (`kubescheduler.config.k8s.io/v1`, YAML or JSON), as
    /// kube-scheduler's `--config`: scheduler profiles by `schedulerName`, their plugins,
    /// weights and `percentageOfNodesToScore`.
    #[arg(long, value_name = "FILE")]
    pub scheduler_config: Option<PathBuf>,
    /// The pod network: `local` (addresses and DNS answers in memory; pods share the host's
    /// network) or `linux[:PREFIX]` (a network namespace per node and per pod, named
    /// `PREFIX_…` under /run/netns, default prefix `kyb`; nftables service rules and cluster
    /// DNS on 10.96.0.10 in every node; needs root, `nft`, and a runtime that joins the pod
    /// namespaces: `process` or `containerd:SOCKET`). Namespaces an earlier run with the same
    /// prefix left behind are removed at start.
    #[arg(long, default_value = "local", value_parser = parse_network, value_name = "NETWORK")]
    pub network: NetworkKind,
    /// Gives Services of type LoadBalancer addresses from this IPv4 CIDR
    /// (`status.loadBalancer.ingress`); without it they stay pending. With `--network linux`
    /// the addresses are served in every node namespace.
    #[arg(long, value_name = "CIDR")]
    pub load_balancer_pool: Option<String>,
}

/// A pod network the nodes can use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkKind {
    /// `LocalNetwork`: in memory.
    Local,
    /// `LinuxNetwork` with this namespace prefix.
    Linux(String),
}

/// Parses `local`, `linux` or `linux:PREFIX`.
pub fn parse_network(s: &str) -> Result<NetworkKind, String> {
    match s {
        "local" => Ok(NetworkKind::Local),
        "linux" => Ok(NetworkKind::Linux(
            kybernetes::net::DEFAULT_PREFIX.to_string(),
        )),
        other => match other.strip_prefix("linux:") {
            Some("") => Err("linux: needs a namespace prefix after the colon".into()),
            Some(prefix) => Ok(NetworkKind::Linux(prefix.to_string())),
            None => Err(format!(
                "unknown network {other:?}; the networks are: local, linux, linux:PREFIX"
            )),
        },
    }
}

/// A container runtime the nodes can drive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `FakeRuntime`: containers that run no processes.
    Fake,
    /// `ProcessRuntime` in host mode: each container a local process.
    Process,
    /// `ProcessRuntime` in isolated mode (root): each container under runc, in its own
    /// namespaces and cgroup.
    ProcessIsolated,
    /// `ContainerdRuntime` on the daemon at this socket.
    Containerd(PathBuf),
}

/// Parses `fake`, `process`, `process-isolated` or `containerd:SOCKET`.
pub fn parse_runtime(s: &str) -> Result<Runtime, String> {
    match s {
        "fake" => Ok(Runtime::Fake),
        "process" => Ok(Runtime::Process),
        "process-isolated" => Ok(Runtime::ProcessIsolated),
        "containerd" => Err(
            "the containerd runtime needs its socket: --runtime containerd:/run/containerd/containerd.sock"
                .into(),
        ),
        other => match other.strip_prefix("containerd:") {
            Some("") => Err("containerd: needs the daemon's socket after the colon".into()),
            Some(socket) if cfg!(feature = "containerd") => {
                Ok(Runtime::Containerd(PathBuf::from(socket)))
            }
            Some(_) => Err(
                "the containerd runtime is not available in this binary; build it with \
                 `cargo install --path cli --features containerd` (needs protoc)"
                    .into(),
            ),
            None => Err(format!(
                "unknown runtime {other:?}; the runtimes are: fake, process, process-isolated, containerd:SOCKET"
            )),
        },
    }
}

/// Connects to the containerd daemon at `socket`; the containers' logs go under `root`.
/// `recover`: adopt the sandboxes and containers an earlier `serve` left running (a cluster
/// does; a one-off image import does not).
#[cfg(feature = "containerd")]
pub async fn containerd(
    socket: &Path,
    snapshotter: &str,
    root: Option<&Path>,
    recover: bool,
) -> anyhow::Result<kybernetes::runtime::containerd::ContainerdRuntime> {
    let mut builder = kybernetes::runtime::containerd::ContainerdRuntime::builder()
        .snapshotter(snapshotter)
        .recover(recover);
    if let Some(root) = root {
        builder = builder.root(root);
    }
    builder
        .connect(socket)
        .await
        .with_context(|| format!("connecting to containerd at {}", socket.display()))
}

impl ClusterArgs {
    /// A builder with the store and nodes these flags ask for. With `data_dir` and no
    /// `--store`, the store is SQLite in that directory.
    pub async fn builder(&self, data_dir: Option<&Path>) -> anyhow::Result<ClusterBuilder> {
        let mut builder = Cluster::builder()
            .nodes(self.nodes)
            .cluster_cidr(&self.cluster_cidr)
            .node_cidr_mask_size(self.node_cidr_mask_size);
        if let Some(path) = &self.scheduler_config {
            builder = builder.scheduler_config(scheduler_config(path)?);
        }
        match &self.runtime {
            // The fake runtime is the builder's default.
            Runtime::Fake => {}
            Runtime::Process | Runtime::ProcessIsolated => {
                let isolated = self.runtime == Runtime::ProcessIsolated;
                let mut processes = kybernetes::runtime::ProcessRuntime::builder();
                if isolated {
                    processes = processes.isolated();
                }
                if let Some(dir) = data_dir {
                    let name = if isolated {
                        "processes-isolated"
                    } else {
                        "processes"
                    };
                    processes = processes.root(dir.join(name));
                }
                builder = builder.runtime(processes.build());
            }
            #[cfg(feature = "containerd")]
            Runtime::Containerd(socket) => {
                let root = data_dir.map(|d| d.join("containerd"));
                let runtime =
                    containerd(socket, &self.containerd_snapshotter, root.as_deref(), true).await?;
                builder = builder.runtime(runtime);
            }
            #[cfg(not(feature = "containerd"))]
            Runtime::Containerd(_) => bail!("the containerd runtime is not in this binary"),
        }
        if let NetworkKind::Linux(prefix) = &self.network {
            let config = kybernetes::core::ClusterConfig {
                pod_cidr: self.cluster_cidr.clone(),
                node_cidr_mask_size: self.node_cidr_mask_size,
                ..Default::default()
            };
            let network = kybernetes::net::LinuxNetwork::start(config, prefix)
                .await
                .with_context(|| {
                    format!("starting the linux pod network {prefix}_* (needs root)")
                })?;
            builder = builder.network(network);
        }
        if let Some(pool) = &self.load_balancer_pool {
            builder = builder.load_balancer_pool(pool);
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

/// Reads and checks a `KubeSchedulerConfiguration` file, so a bad one fails before anything
/// starts.
fn scheduler_config(path: &Path) -> anyhow::Result<kybernetes::sched::KubeSchedulerConfiguration> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the scheduler configuration {}", path.display()))?;
    let config = kybernetes::sched::KubeSchedulerConfiguration::from_yaml(&text)
        .with_context(|| format!("in {}", path.display()))?;
    config
        .build()
        .with_context(|| format!("in {}", path.display()))?;
    Ok(config)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_names_parse_to_their_backends_and_prefixes() {
        assert_eq!(parse_network("local"), Ok(NetworkKind::Local));
        assert_eq!(parse_network("linux"), Ok(NetworkKind::Linux("kyb".into())));
        assert_eq!(
            parse_network("linux:dev"),
            Ok(NetworkKind::Linux("dev".into()))
        );
        assert!(parse_network("linux:").is_err());
        assert!(parse_network("calico").is_err());
    }

    #[test]
    fn runtime_names_parse() {
        assert_eq!(parse_runtime("process"), Ok(Runtime::Process));
        assert_eq!(
            parse_runtime("process-isolated"),
            Ok(Runtime::ProcessIsolated)
        );
        assert!(parse_runtime("runc").is_err());
    }
}
