//! [`LocalNetwork`]: the in-memory network. It allocates addresses and keeps the service
//! catalog, and touches nothing on the machine.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use kybernetes_core::ClusterConfig;
use kybernetes_core::ipam::{Cidr, IpAllocator, SubnetAllocator};

use crate::catalog::ServiceCatalog;
use crate::userspace_proxy::UserspaceProxy;
use crate::{
    DnsRecord, Error, Network, NodeNetwork, PodNetwork, PodNetworkRequest, PreviousNodeNetwork,
    Result, ServiceEntry,
};

/// The largest difference between the pod CIDR's prefix and the node mask size, as upstream's
/// `cidrset` allows: at most 65,536 node subnets.
const MAX_NODE_SUBNET_BITS: u8 = 16;

/// The longest node mask size: a `/30` still leaves two pod addresses beside the gateway.
const MAX_NODE_CIDR_MASK_SIZE: u8 = 30;

/// The range node addresses come from. They are never routed; nodes report them in
/// `status.addresses` and pods in `status.hostIP`. Like a container network, `.1` is the
/// gateway, so the first node is `172.18.0.2`.
pub const NODE_ADDRESS_CIDR: Cidr = match Cidr::from_octets([172, 18, 0, 0], 16) {
    Some(c) => c,
    None => panic!("172.18.0.0/16 is a valid CIDR"),
};

/// The in-memory [`Network`]: IPAM for nodes and pods, and the service catalog behind DNS.
///
/// - each node gets a `/24` (the configured `node_cidr_mask_size`) of the pod CIDR
///   (`10.244.0.0/24`, `10.244.1.0/24`, … in the order nodes are added) and an address from
///   [`NODE_ADDRESS_CIDR`]; once the pod CIDR is used up, a node is still added, without a pod
///   CIDR, as upstream's node IPAM controller leaves such a node (`CIDRNotAvailable`);
/// - each pod gets an address of its node's subnet (`.1` is the gateway and never handed out);
///   a released address goes to the back of the queue, so it is not reused at once;
/// - the service catalog answers [`Network::resolve`] as CoreDNS would, and
///   [`LocalNetwork::pick_endpoint`] picks endpoints round-robin for a service proxy.
///
/// No traffic flows to these addresses: they are bookkeeping, which is all fake runtimes need.
/// For pods that share the host's network (`ProcessRuntime` in host mode), the **userspace
/// proxy** ([`LocalNetworkBuilder::userspace_proxy`]) makes Services reachable: each ClusterIP
/// Service gets a loopback address in [`USERSPACE_PROXY_CIDR`](crate::USERSPACE_PROXY_CIDR)
/// (`10.96.0.57` → `127.96.0.57`) where the proxy forwards every TCP port to the ready
/// endpoints, dialling pod and node addresses at `127.0.0.1` on their target port, where
/// host-mode processes listen. DNS and [`Network::service_host`] answer that address instead
/// of the ClusterIP.
///
/// ```
/// use kybernetes_net::{LocalNetwork, Network, PodNetworkRequest};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), kybernetes_net::Error> {
/// let net = LocalNetwork::default();
/// let node = net.add_node("node-1").await?;
/// assert_eq!(node.pod_cidr.as_deref(), Some("10.244.0.0/24"));
///
/// let pod = PodNetworkRequest {
///     namespace: "default".into(),
///     name: "web-0".into(),
///     uid: "7f6c".into(),
///     hostname: "web-0".into(),
///     subdomain: None,
/// };
/// let first = net.setup_pod("node-1", &pod).await?;
/// assert_eq!(first.ip.to_string(), "10.244.0.2");
/// // Idempotent per UID: a retry gets the same address.
/// assert_eq!(net.setup_pod("node-1", &pod).await?, first);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct LocalNetwork {
    ipam: Mutex<Ipam>,
    catalog: RwLock<ServiceCatalog>,
    proxy: Option<UserspaceProxy>,
}

/// Builds a [`LocalNetwork`].
///
/// ```
/// use kybernetes_net::{LocalNetwork, Network, ServiceEntry, ServicePort};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), kybernetes_net::Error> {
/// let net = LocalNetwork::builder().userspace_proxy(true).build()?;
/// net.sync_service(
///     ServiceEntry::new("default", "web", Some("10.96.0.57".parse().unwrap()))
///         .with_ports(vec![ServicePort::tcp("http", 18080, 8080)]),
/// )
/// .await?;
/// // The proxy listens on 127.96.0.57:18080 (or another loopback address if that is taken),
/// // and DNS answers with it.
/// let address = net.proxy_address("default", "web").unwrap();
/// assert_eq!(net.resolve("web", "default"), vec![std::net::IpAddr::V4(address)]);
/// net.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
#[must_use]
pub struct LocalNetworkBuilder {
    config: ClusterConfig,
    userspace_proxy: bool,
}

impl LocalNetworkBuilder {
    /// The pod CIDR, node mask size and cluster domain (default: upstream's).
    pub fn config(mut self, config: ClusterConfig) -> Self {
        self.config = config;
        self
    }

    /// Serves ClusterIP Services through the userspace proxy on loopback addresses (default:
    /// off), for pods that share the host's network. `sync_service` then needs a tokio
    /// runtime.
    pub fn userspace_proxy(mut self, on: bool) -> Self {
        self.userspace_proxy = on;
        self
    }

    /// The network; fails as [`LocalNetwork::new`] does.
    pub fn build(self) -> Result<LocalNetwork> {
        let mut network = LocalNetwork::new(self.config)?;
        if self.userspace_proxy {
            let pod_cidr = network.cluster_cidr();
            network.proxy = Some(UserspaceProxy::new(vec![pod_cidr, NODE_ADDRESS_CIDR]));
        }
        Ok(network)
    }
}

/// Addresses handed out to nodes and pods.
#[derive(Debug)]
struct Ipam {
    subnets: SubnetAllocator,
    node_ips: IpAllocator,
    nodes: HashMap<String, NodeLease>,
    /// Pod address leases by pod UID.
    pods: HashMap<String, PodLease>,
}

#[derive(Debug)]
struct NodeLease {
    network: NodeNetwork,
    /// The node's pod subnet and its pod addresses; `None` while the pod CIDR has no subnet
    /// left for the node.
    pods: Option<(Cidr, IpAllocator)>,
}

#[derive(Debug)]
struct PodLease {
    node: String,
    ip: IpAddr,
    namespace: String,
    name: String,
}

impl LocalNetwork {
    /// A network for `config`'s pod CIDR, node mask size and cluster domain.
    ///
    /// Fails if the pod CIDR does not parse, or the node mask size is shorter than the pod
    /// CIDR's prefix, longer than `/30`, or splits the pod CIDR into more than 65,536 node
    /// subnets (upstream's limit).
    pub fn new(config: ClusterConfig) -> Result<Self> {
        let cluster: Cidr = config
            .pod_cidr
            .parse()
            .map_err(|e| Error::Config(format!("pod CIDR {:?}: {e}", config.pod_cidr)))?;
        let mask = config.node_cidr_mask_size;
        if mask > MAX_NODE_CIDR_MASK_SIZE
            || mask < cluster.prefix_len()
            || mask - cluster.prefix_len() > MAX_NODE_SUBNET_BITS
        {
            return Err(Error::Config(format!(
                "node CIDR mask size /{mask} does not fit pod CIDR {cluster}: it must be between \
                 /{} and /{}",
                cluster.prefix_len(),
                (cluster.prefix_len() + MAX_NODE_SUBNET_BITS).min(MAX_NODE_CIDR_MASK_SIZE)
            )));
        }
        let subnets = SubnetAllocator::new(cluster, mask)
            .map_err(|e| Error::Config(format!("pod CIDR {cluster} with /{mask} nodes: {e}")))?;
        Ok(LocalNetwork {
            ipam: Mutex::new(Ipam {
                subnets,
                node_ips: IpAllocator::for_pod_subnet(NODE_ADDRESS_CIDR),
                nodes: HashMap::new(),
                pods: HashMap::new(),
            }),
            catalog: RwLock::new(ServiceCatalog::new(&config.cluster_domain)),
            proxy: None,
        })
    }

    /// A builder, for the userspace proxy.
    pub fn builder() -> LocalNetworkBuilder {
        LocalNetworkBuilder::default()
    }

    /// Whether the userspace proxy serves Services.
    pub fn has_userspace_proxy(&self) -> bool {
        self.proxy.is_some()
    }

    /// The loopback address where the userspace proxy serves `namespace/name`, once synced.
    pub fn proxy_address(&self, namespace: &str, name: &str) -> Option<Ipv4Addr> {
        self.proxy.as_ref()?.service_address(namespace, name)
    }

    /// `ip`, or the proxy's address for it if it is a ClusterIP the proxy serves.
    fn client_address(&self, ip: IpAddr) -> IpAddr {
        match &self.proxy {
            Some(proxy) => proxy.address(ip).map_or(ip, IpAddr::V4),
            None => ip,
        }
    }

    /// How many nodes can get a pod CIDR: the pod CIDR's node subnets (256 for
    /// `10.244.0.0/16` with a `/24` per node).
    pub fn node_cidr_capacity(&self) -> u64 {
        self.ipam().subnets.capacity()
    }

    /// The pod CIDR node subnets come from.
    pub fn cluster_cidr(&self) -> Cidr {
        self.ipam().subnets.cluster_cidr()
    }

    /// The cluster domain DNS answers for (`cluster.local`).
    pub fn cluster_domain(&self) -> String {
        self.catalog().domain().to_string()
    }

    /// A registered node's network.
    pub fn node(&self, node: &str) -> Option<NodeNetwork> {
        self.ipam().nodes.get(node).map(|n| n.network.clone())
    }

    /// The address a pod holds, by pod UID.
    pub fn pod_ip(&self, pod_uid: &str) -> Option<IpAddr> {
        self.ipam().pods.get(pod_uid).map(|p| p.ip)
    }

    /// How many pods hold an address.
    pub fn pod_count(&self) -> usize {
        self.ipam().pods.len()
    }

    /// The latest synced entry of a service.
    pub fn service(&self, namespace: &str, name: &str) -> Option<ServiceEntry> {
        self.catalog().get(namespace, name).cloned()
    }

    /// Every synced service entry, sorted by namespace and name.
    pub fn services(&self) -> Vec<ServiceEntry> {
        let mut all: Vec<_> = self.catalog().entries().cloned().collect();
        all.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        all
    }

    /// The next ready endpoint of a service for its service port `port`, round-robin, as
    /// `(endpoint IP, target port)`. `None` if the service, the port or any ready endpoint is
    /// missing. A userspace service proxy calls this per connection.
    ///
    /// ```
    /// use kybernetes_net::{Endpoint, LocalNetwork, Network, ServiceEntry, ServicePort};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), kybernetes_net::Error> {
    /// let net = LocalNetwork::default();
    /// net.sync_service(
    ///     ServiceEntry::new("default", "web", Some("10.96.0.20".parse().unwrap()))
    ///         .with_ports(vec![ServicePort::tcp("http", 80, 8080)])
    ///         .with_endpoints(vec![
    ///             Endpoint::new("10.244.0.2".parse().unwrap()),
    ///             Endpoint::new("10.244.1.2".parse().unwrap()),
    ///         ]),
    /// )
    /// .await?;
    /// let a = net.pick_endpoint("default", "web", 80).unwrap();
    /// let b = net.pick_endpoint("default", "web", 80).unwrap();
    /// assert_ne!(a.0, b.0);
    /// assert_eq!(a.1, 8080);
    /// assert_eq!(net.pick_endpoint("default", "web", 80), Some(a));
    /// # Ok(())
    /// # }
    /// ```
    pub fn pick_endpoint(
        &self,
        namespace: &str,
        service: &str,
        port: u16,
    ) -> Option<(IpAddr, u16)> {
        self.catalog().pick_endpoint(namespace, service, port)
    }

    fn ipam(&self) -> MutexGuard<'_, Ipam> {
        // Every critical section leaves the state consistent, so a poisoned lock is usable.
        self.ipam.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn catalog(&self) -> RwLockReadGuard<'_, ServiceCatalog> {
        self.catalog.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn catalog_mut(&self) -> RwLockWriteGuard<'_, ServiceCatalog> {
        self.catalog.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for LocalNetwork {
    /// A network with upstream defaults: pod CIDR `10.244.0.0/16`, domain `cluster.local`.
    fn default() -> Self {
        LocalNetwork::new(ClusterConfig::default())
            .expect("the default cluster configuration is valid")
    }
}

impl Ipam {
    fn add_node(&mut self, node: &str) -> Result<NodeNetwork> {
        self.rejoin_node(node, &PreviousNodeNetwork::default())
    }

    /// Adds `node`, taking back the pod CIDR and address of `previous` where they are free.
    fn rejoin_node(&mut self, node: &str, previous: &PreviousNodeNetwork) -> Result<NodeNetwork> {
        if let Some(lease) = self.nodes.get_mut(node) {
            // A node left without a pod CIDR gets one once a subnet is free again, as
            // upstream's allocator retries such a node.
            if lease.pods.is_none()
                && let Some(subnet) = self.subnets.allocate()
            {
                lease.pods = Some((subnet, IpAllocator::for_pod_subnet(subnet)));
                lease.network.pod_cidr = Some(subnet.to_string());
                tracing::info!(node, pod_cidr = %subnet, "node got a pod CIDR");
            }
            return Ok(lease.network.clone());
        }
        let previous_ip = previous
            .node_ip
            .filter(|ip| self.node_ips.allocate_specific(*ip).is_ok());
        let Some(node_ip) = previous_ip.or_else(|| self.node_ips.allocate()) else {
            return Err(Error::Exhausted(format!(
                "node address range {NODE_ADDRESS_CIDR}"
            )));
        };
        let previous_subnet = previous.pod_cidr.as_deref().and_then(|cidr| {
            match cidr.parse::<Cidr>().map(|c| (self.subnets.allocate_specific(c), c)) {
                Ok((Ok(()), c)) => Some(c),
                Ok((Err(e), _)) => {
                    tracing::warn!(node, pod_cidr = cidr, error = %e,
                        "the node's pod CIDR is not free; it gets another, and its spec.podCIDR no longer matches its pods");
                    None
                }
                Err(e) => {
                    tracing::warn!(node, pod_cidr = cidr, error = %e, "the node's pod CIDR does not parse");
                    None
                }
            }
        });
        let subnet = previous_subnet.or_else(|| self.subnets.allocate());
        match subnet {
            Some(subnet) => {
                tracing::debug!(node, pod_cidr = %subnet, %node_ip, "node added to the pod network");
            }
            None => tracing::debug!(
                node,
                pod_cidr = %self.subnets.cluster_cidr(),
                node_cidr_mask_size = self.subnets.subnet_prefix(),
                "pod CIDR has no subnet left: node added without a pod CIDR"
            ),
        }
        let network = NodeNetwork {
            pod_cidr: subnet.map(|s| s.to_string()),
            node_ip,
            netns: None,
        };
        self.nodes.insert(
            node.to_string(),
            NodeLease {
                network: network.clone(),
                pods: subnet.map(|s| (s, IpAllocator::for_pod_subnet(s))),
            },
        );
        Ok(network)
    }

    fn remove_node(&mut self, node: &str) {
        let Some(lease) = self.nodes.remove(node) else {
            return;
        };
        if let Some((subnet, _)) = lease.pods {
            self.subnets.release(subnet);
        }
        self.node_ips.release(lease.network.node_ip);
        let before = self.pods.len();
        self.pods.retain(|_, p| p.node != node);
        tracing::debug!(
            node,
            pods_released = before - self.pods.len(),
            "node removed from the pod network"
        );
    }

    fn setup_pod(&mut self, node: &str, pod: &PodNetworkRequest) -> Result<PodNetwork> {
        if let Some(lease) = self.pods.get(&pod.uid) {
            if lease.node != node {
                return Err(Error::PodOnOtherNode {
                    uid: pod.uid.clone(),
                    node: lease.node.clone(),
                });
            }
            return Ok(PodNetwork {
                ip: lease.ip,
                netns: None,
            });
        }
        let node_lease = self
            .nodes
            .get_mut(node)
            .ok_or_else(|| Error::UnknownNode(node.to_string()))?;
        let (subnet, pod_ips) = node_lease
            .pods
            .as_mut()
            .ok_or_else(|| Error::NoPodCidr(node.to_string()))?;
        let ip = pod_ips
            .allocate()
            .ok_or_else(|| Error::Exhausted(format!("pod CIDR {subnet} of node {node}")))?;
        self.pods.insert(
            pod.uid.clone(),
            PodLease {
                node: node.to_string(),
                ip,
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
            },
        );
        tracing::debug!(node, namespace = %pod.namespace, pod = %pod.name, uid = %pod.uid, %ip, "pod network set up");
        Ok(PodNetwork { ip, netns: None })
    }

    fn teardown_pod(&mut self, pod_uid: &str) {
        let Some(lease) = self.pods.remove(pod_uid) else {
            return;
        };
        if let Some((_, pod_ips)) = self
            .nodes
            .get_mut(&lease.node)
            .and_then(|n| n.pods.as_mut())
        {
            pod_ips.release(lease.ip);
        }
        tracing::debug!(
            node = %lease.node, namespace = %lease.namespace, pod = %lease.name, uid = pod_uid, ip = %lease.ip,
            "pod network torn down"
        );
    }
}

#[async_trait]
impl Network for LocalNetwork {
    async fn add_node(&self, node: &str) -> Result<NodeNetwork> {
        self.ipam().add_node(node)
    }

    async fn rejoin_node(&self, node: &str, previous: &PreviousNodeNetwork) -> Result<NodeNetwork> {
        self.ipam().rejoin_node(node, previous)
    }

    async fn remove_node(&self, node: &str) -> Result<()> {
        self.ipam().remove_node(node);
        Ok(())
    }

    async fn setup_pod(&self, node: &str, pod: &PodNetworkRequest) -> Result<PodNetwork> {
        self.ipam().setup_pod(node, pod)
    }

    async fn teardown_pod(&self, _node: &str, pod_uid: &str) -> Result<()> {
        // The UID alone identifies the lease; the node is only a hint for real backends.
        self.ipam().teardown_pod(pod_uid);
        Ok(())
    }

    async fn sync_service(&self, service: ServiceEntry) -> Result<()> {
        tracing::trace!(
            namespace = %service.namespace,
            service = %service.name,
            endpoints = service.endpoints.len(),
            "service synced"
        );
        // The proxy first, so that DNS never answers an address nothing listens on yet. The
        // catalog takes the entry even if the proxy failed: DNS still names the Service.
        let proxied = match &self.proxy {
            Some(proxy) => proxy.sync(&service).await,
            None => Ok(()),
        };
        self.catalog_mut().sync(service);
        proxied
    }

    async fn remove_service(&self, namespace: &str, name: &str) -> Result<()> {
        if self.catalog_mut().remove(namespace, name) {
            tracing::trace!(namespace, service = name, "service removed");
        }
        match &self.proxy {
            Some(proxy) => proxy.remove(namespace, name).await,
            None => Ok(()),
        }
    }

    fn resolve(&self, name: &str, from_namespace: &str) -> Vec<IpAddr> {
        let ips = self.catalog().resolve(name, from_namespace);
        ips.into_iter().map(|ip| self.client_address(ip)).collect()
    }

    fn dns_records(&self, fqdn: &str) -> Option<Vec<DnsRecord>> {
        let records = self.catalog().lookup(fqdn)?;
        Some(
            records
                .into_iter()
                .map(|r| match r {
                    DnsRecord::Address(ip) => DnsRecord::Address(self.client_address(ip)),
                    other => other,
                })
                .collect(),
        )
    }

    fn service_host(&self, cluster_ip: IpAddr) -> IpAddr {
        match &self.proxy {
            Some(proxy) => proxy
                .planned_address(cluster_ip)
                .map_or(cluster_ip, IpAddr::V4),
            None => cluster_ip,
        }
    }

    async fn shutdown(&self) -> Result<()> {
        if let Some(proxy) = &self.proxy {
            proxy.shutdown().await;
        }
        Ok(())
    }
}
