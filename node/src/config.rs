//! [`NodeAgentConfig`]: the node's identity, capacity and the agent's timings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;
use kybernetes_core::Clock;

/// Exponential back-off for restarting crashed containers and retrying image pulls
/// (upstream: 10 s doubling to 300 s, reset once a container ran for 10 minutes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
    /// After running (or staying healthy) this long, the delay starts over at `initial`.
    pub reset_after: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

/// A node's resources, as Kubernetes quantities (`"4"`, `"16Gi"`, `"110"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeCapacity {
    /// CPU cores.
    pub cpu: String,
    /// Memory.
    pub memory: String,
    /// How many pods the node runs at most.
    pub pods: String,
    /// Local ephemeral storage.
    pub ephemeral_storage: String,
}

impl Default for NodeCapacity {
    fn default() -> Self {
        NodeCapacity {
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: "110".into(),
            ephemeral_storage: "100Gi".into(),
        }
    }
}

/// Everything the node agent needs to know about its node.
///
/// ```
/// use kybernetes_node::NodeAgentConfig;
/// let config = NodeAgentConfig::new("node-1").label("topology.kubernetes.io/zone", "a");
/// assert_eq!(config.capacity.pods, "110");
/// assert_eq!(config.lease_duration.as_secs(), 40);
/// ```
#[derive(Clone, Debug)]
pub struct NodeAgentConfig {
    /// The node name (also the lease name and the `kubernetes.io/hostname` label).
    pub name: String,
    /// Capacity (allocatable is the same: nothing is reserved).
    pub capacity: NodeCapacity,
    /// Extra node labels (`kubernetes.io/hostname`, `kubernetes.io/os` and
    /// `kubernetes.io/arch` are always set).
    pub labels: BTreeMap<String, String>,
    /// Taints set when the node registers.
    pub taints: Vec<Taint>,
    /// `leaseDurationSeconds` of the node lease (upstream: 40 s).
    pub lease_duration: Duration,
    /// How often the lease is renewed (upstream: a quarter of the lease duration, 10 s).
    pub renew_interval: Duration,
    /// How often the node status is computed and written if it changed (upstream
    /// `nodeStatusUpdateFrequency`: 10 s).
    pub status_update_interval: Duration,
    /// How often the node status is written even if it did not change (upstream
    /// `nodeStatusReportFrequency`: 5 minutes).
    pub status_report_interval: Duration,
    /// Back-off for container restarts and image pulls.
    pub backoff: BackoffConfig,
    /// The cluster clock, the one source of wall time.
    pub clock: Clock,
    /// Where pod volumes live (upstream `--root-dir`, `/var/lib/kubelet`): `pods/<uid>/volumes`.
    /// `None` uses a temporary directory removed when the agent stops.
    pub root_dir: Option<PathBuf>,
    /// How often the files of `configMap`, `secret`, `downwardAPI` and `projected` volumes are
    /// refreshed from the API (upstream's `syncFrequency`: 1 minute).
    pub volume_resync_interval: Duration,
    /// The cluster DNS servers pods with `dnsPolicy: ClusterFirst` resolve through (upstream
    /// `clusterDNS`). Empty: such pods fall back to `Default`, with a `MissingClusterDNS`
    /// warning, as upstream's kubelet does. The `kybernetes` facade's `Cluster`
    /// sets the tenth address of the service CIDR, as kubeadm and k3s do.
    pub cluster_dns: Vec<std::net::IpAddr>,
    /// The cluster's DNS domain (upstream `clusterDomain`: `cluster.local`).
    pub cluster_domain: String,
    /// The resolver file `dnsPolicy: Default` pods inherit (upstream `resolvConf`:
    /// `/etc/resolv.conf`). `None`: no nameservers (upstream's empty `--resolv-conf`).
    pub resolv_conf: Option<PathBuf>,
}

impl NodeAgentConfig {
    /// A configuration with upstream defaults for node `name`. Must be called inside a tokio
    /// runtime (it creates a [`Clock`]); use [`clock`](Self::clock) to share the cluster's.
    pub fn new(name: impl Into<String>) -> Self {
        NodeAgentConfig {
            name: name.into(),
            capacity: NodeCapacity::default(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            lease_duration: Duration::from_secs(40),
            renew_interval: Duration::from_secs(10),
            status_update_interval: Duration::from_secs(10),
            status_report_interval: Duration::from_secs(300),
            backoff: BackoffConfig::default(),
            clock: Clock::new(),
            root_dir: None,
            volume_resync_interval: Duration::from_secs(60),
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".into(),
            resolv_conf: Some(PathBuf::from("/etc/resolv.conf")),
        }
    }

    /// Uses the cluster's clock.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Adds a node label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds a taint.
    pub fn taint(mut self, taint: Taint) -> Self {
        self.taints.push(taint);
        self
    }

    /// Sets the restart and image pull back-off.
    pub fn backoff(mut self, backoff: BackoffConfig) -> Self {
        self.backoff = backoff;
        self
    }

    /// Keeps pod volumes under `dir` (`<dir>/pods/<uid>/volumes/...`).
    pub fn root_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.root_dir = Some(dir.into());
        self
    }

    /// Sets how often API-data volumes are refreshed.
    pub fn volume_resync_interval(mut self, every: Duration) -> Self {
        self.volume_resync_interval = every;
        self
    }

    /// Sets the capacity.
    pub fn capacity(mut self, capacity: NodeCapacity) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets the cluster DNS servers (see [`cluster_dns`](Self::cluster_dns)).
    pub fn cluster_dns(mut self, servers: Vec<std::net::IpAddr>) -> Self {
        self.cluster_dns = servers;
        self
    }

    /// Sets the cluster DNS domain.
    pub fn cluster_domain(mut self, domain: impl Into<String>) -> Self {
        self.cluster_domain = domain.into();
        self
    }

    /// Sets the resolver file `dnsPolicy: Default` pods inherit (`None`: none).
    pub fn resolv_conf(mut self, path: Option<PathBuf>) -> Self {
        self.resolv_conf = path;
        self
    }
}
