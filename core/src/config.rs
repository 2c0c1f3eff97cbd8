//! Cluster-wide settings shared by components, with upstream defaults.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Cluster-wide configuration. The defaults follow upstream Kubernetes.
///
/// ```
/// let c = kybernetes_core::ClusterConfig::default();
/// assert_eq!(c.cluster_domain, "cluster.local");
/// assert_eq!(c.pod_cidr, "10.244.0.0/16");
/// assert_eq!(c.node_cidr_mask_size, 24);
/// ```
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Pod network (upstream's `--cluster-cidr`); each node gets a
    /// `/`[`node_cidr_mask_size`](Self::node_cidr_mask_size) from it.
    pub pod_cidr: String,
    /// Prefix length of each node's pod CIDR (upstream's `--node-cidr-mask-size`). The pod
    /// CIDR holds `2^(node_cidr_mask_size - prefix)` nodes: 256 for the defaults. A node
    /// beyond that registers without a pod CIDR.
    pub node_cidr_mask_size: u8,
    /// Service ClusterIP range.
    pub service_cidr: String,
    /// DNS domain of the cluster.
    pub cluster_domain: String,
    /// Inclusive NodePort range.
    pub node_port_range: (u16, u16),
    /// Default pod termination grace period.
    pub termination_grace_period: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            pod_cidr: "10.244.0.0/16".into(),
            node_cidr_mask_size: 24,
            service_cidr: "10.96.0.0/12".into(),
            cluster_domain: "cluster.local".into(),
            node_port_range: (30000, 32767),
            termination_grace_period: Duration::from_secs(30),
        }
    }
}

impl ClusterConfig {
    /// The cluster DNS Service's address: the tenth of the service CIDR, as kubeadm and k3s
    /// configure their kubelets. `None` if the CIDR does not parse or has no tenth address.
    ///
    /// ```
    /// let c = kybernetes_core::ClusterConfig::default();
    /// assert_eq!(c.cluster_dns_ip(), Some("10.96.0.10".parse().unwrap()));
    /// ```
    pub fn cluster_dns_ip(&self) -> Option<IpAddr> {
        let (base, _) = self.service_cidr.split_once('/')?;
        match base.parse::<IpAddr>().ok()? {
            IpAddr::V4(v4) => Some(Ipv4Addr::from(u32::from(v4).checked_add(10)?).into()),
            IpAddr::V6(v6) => Some(Ipv6Addr::from(u128::from(v6).checked_add(10)?).into()),
        }
    }
}
