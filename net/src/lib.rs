//! kybernetes-net: the [`Network`] trait and [`LocalNetwork`], the in-memory implementation:
//! per-node pod CIDRs and pod IPs, the service → endpoints table a service proxy follows, and
//! the DNS catalog for `<svc>.<ns>.svc.cluster.local`.
//!
//! The node agent sees only this trait. On Linux, [`LinuxNetwork`] implements it for real: a
//! network namespace per node and per pod, bridges, veth pairs and routes over rtnetlink (see
//! `docs/networking.md`). [`spawn_service_sync`] is the kube-proxy of the cluster: it watches
//! Services and Endpoints and feeds any [`Network`].
//!
//! Address management itself (CIDRs, the ClusterIP, NodePort and per-node subnet allocators)
//! lives in [`kybernetes_core::ipam`], where the API server uses it too.
//!
//! # How to implement your own network
//!
//! Implement [`Network`]; [`LocalNetwork`] is the worked example. The rules:
//! - `add_node` is idempotent and returns the same CIDR for the same node name;
//! - `setup_pod` is idempotent per pod UID (the node agent may retry after a crash) and never
//!   hands out an IP that another live pod holds;
//! - `teardown_pod` releases the IP; tearing down an unknown pod is not an error;
//! - `sync_service` replaces everything known about a service; `resolve` answers from the
//!   latest sync;
//! - `service_host` says where clients reach a ClusterIP, if not at the ClusterIP itself (the
//!   node agent writes it into the Service environment variables).
//!
//! Walking through [`LocalNetwork`]:
//!
//! 1. **Nodes.** `add_node` takes the next `/24` of the pod CIDR from a
//!    [`SubnetAllocator`](kybernetes_core::ipam::SubnetAllocator) and a node address, and
//!    remembers both under the node name, so a second call returns the same
//!    [`NodeNetwork`]. A real backend would also create the node's bridge here.
//! 2. **Pods.** `setup_pod` first looks the UID up: a known UID gets its existing address back.
//!    Otherwise it takes the next free address of the node's
//!    [`IpAllocator::for_pod_subnet`](kybernetes_core::ipam::IpAllocator::for_pod_subnet)
//!    (which never hands out `.1`, the gateway) and records the lease under the UID. A real
//!    backend then creates the netns and veth pair and returns the netns path in
//!    [`PodNetwork::netns`]; a later step failing must undo the earlier ones.
//! 3. **Teardown** mirrors set-up in reverse and ignores what it does not know, because the
//!    node agent calls it again after a crash.
//! 4. **Services.** `sync_service` stores the whole [`ServiceEntry`]; a real proxy would
//!    rewrite its rules for that service. `remove_service` forgets it.
//! 5. **DNS.** `resolve` expands the name with a pod's search path
//!    (`<ns>.svc.cluster.local svc.cluster.local cluster.local`, `ndots:5`) and answers the
//!    first candidate that has records, as CoreDNS would. Pod `hostname`/`subdomain` records
//!    come from the hostnames the endpoints controller writes into Endpoints, as in CoreDNS,
//!    so [`PodNetworkRequest::subdomain`] is for backends that want it, not for DNS.
//!
//! All state sits behind short, synchronous locks: no lock is held across an `.await`.
//!
//! ```
//! use std::sync::Arc;
//! use kybernetes_net::{LocalNetwork, Network, ServiceEntry, ServicePort};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), kybernetes_net::Error> {
//! let network: Arc<dyn Network> = Arc::new(LocalNetwork::default());
//! network
//!     .sync_service(
//!         ServiceEntry::new("shop", "web", Some("10.96.0.20".parse().unwrap()))
//!             .with_ports(vec![ServicePort::tcp("http", 80, 8080)]),
//!     )
//!     .await?;
//! let ip: std::net::IpAddr = "10.96.0.20".parse().unwrap();
//! assert_eq!(network.resolve("web", "shop"), vec![ip]);
//! assert_eq!(network.resolve("web.shop.svc.cluster.local.", "default"), vec![ip]);
//! assert!(network.resolve("web", "default").is_empty());
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

mod catalog;
mod dns;
mod dns_server;
mod kube_dns;
#[cfg(target_os = "linux")]
mod linux;
mod local;
mod proxy_backends;
mod service_entry;
mod service_sync;
mod userspace_proxy;

pub use dns::DnsRecord;
pub use dns_server::DnsServer;
pub use kube_dns::{KUBE_DNS_NAMESPACE, KUBE_DNS_SERVICE, ensure_kube_dns_service};
#[cfg(target_os = "linux")]
pub use linux::{DEFAULT_PREFIX, LinuxNetwork};
pub use local::{LocalNetwork, LocalNetworkBuilder, NODE_ADDRESS_CIDR};
pub use service_sync::spawn_service_sync;
pub use userspace_proxy::USERSPACE_PROXY_CIDR;

/// Errors a network backend returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node is not registered with the network.
    #[error("node {0} is not registered with the network")]
    UnknownNode(String),
    /// The node has no pod CIDR (the cluster's pod CIDR had no subnet left for it), so pods
    /// on it get no address.
    #[error("node {0} has no pod CIDR: the cluster pod CIDR had no subnet left for it")]
    NoPodCidr(String),
    /// A range ran out of addresses or ports.
    #[error("{0} is exhausted")]
    Exhausted(String),
    /// The pod UID already has a network on another node.
    #[error("pod {uid} already has a network on node {node}")]
    PodOnOtherNode {
        /// The pod UID.
        uid: String,
        /// The node holding the pod's network.
        node: String,
    },
    /// A CIDR or address could not be parsed.
    #[error("invalid network configuration: {0}")]
    Config(String),
    /// The backend failed.
    #[error("network backend: {context}")]
    Backend {
        /// What the backend was doing.
        context: String,
        /// The cause.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// `Result` with the network's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A node's share of the pod network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeNetwork {
    /// The node's pod CIDR, e.g. `10.244.1.0/24`; `None` when the cluster's pod CIDR had no
    /// subnet left for the node (upstream: a Node without `spec.podCIDR`).
    pub pod_cidr: Option<String>,
    /// The node's own address (for `status.addresses` InternalIP and `hostIP`).
    pub node_ip: IpAddr,
    /// Path of the node's network namespace, which `hostNetwork` pods join (None when the
    /// node shares the host's network, as with [`LocalNetwork`]).
    pub netns: Option<PathBuf>,
}

/// What a rejoining node had, read from its Node object ([`Network::rejoin_node`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreviousNodeNetwork {
    /// `spec.podCIDR`.
    pub pod_cidr: Option<String>,
    /// The `InternalIP` of `status.addresses`.
    pub node_ip: Option<IpAddr>,
}

/// What the network needs to know about a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNetworkRequest {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod UID (the identity used for idempotence).
    pub uid: String,
    /// `spec.hostname` or the pod name.
    pub hostname: String,
    /// `spec.subdomain`, if any (pod DNS records under a headless service).
    pub subdomain: Option<String>,
}

/// A pod's network once set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNetwork {
    /// The pod IP.
    pub ip: IpAddr,
    /// Path of the pod's network namespace, for runtimes that join it (None in memory).
    pub netns: Option<PathBuf>,
}

/// One port of a service as the proxy serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// Port name (DNS SRV records exist for named ports only).
    pub name: String,
    /// Protocol (`TCP`, `UDP`, `SCTP`).
    pub protocol: String,
    /// The service port.
    pub port: u16,
    /// The NodePort, if any.
    pub node_port: Option<u16>,
    /// The port on an endpoint that lists no ports of its own ([`Endpoint::ports`] empty):
    /// a numeric `targetPort`, else the service port.
    pub target_port: u16,
}

impl ServicePort {
    /// A TCP port `port` served on the endpoints' `target_port`, with no NodePort.
    pub fn tcp(name: &str, port: u16, target_port: u16) -> Self {
        ServicePort {
            name: name.to_string(),
            protocol: "TCP".into(),
            port,
            node_port: None,
            target_port,
        }
    }
}

/// One ready endpoint of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The endpoint (pod) address.
    pub ip: IpAddr,
    /// Its DNS hostname under the service (`web-0` for `web-0.nginx.ns.svc.cluster.local`),
    /// set when the pod's `subdomain` names the service.
    pub hostname: Option<String>,
    /// The node the endpoint runs on (for `externalTrafficPolicy`/`internalTrafficPolicy:
    /// Local`).
    pub node_name: Option<String>,
    /// The endpoint's port for each service port name it serves, as the Endpoints object
    /// lists them (named target ports resolved per pod). A service port missing here is not
    /// served by this endpoint, as kube-proxy builds its endpoints per port; an empty map
    /// means every port, on [`ServicePort::target_port`].
    pub ports: BTreeMap<String, u16>,
}

impl Endpoint {
    /// An endpoint at `ip` serving every service port, with no hostname or node.
    pub fn new(ip: IpAddr) -> Self {
        Endpoint {
            ip,
            hostname: None,
            node_name: None,
            ports: BTreeMap::new(),
        }
    }

    /// The same endpoint with DNS hostname `hostname`.
    pub fn with_hostname(mut self, hostname: &str) -> Self {
        self.hostname = Some(hostname.to_string());
        self
    }

    /// The same endpoint, running on node `node`.
    pub fn on_node(mut self, node: &str) -> Self {
        self.node_name = Some(node.to_string());
        self
    }

    /// The port this endpoint serves `port` on, or `None` if it does not serve it.
    pub fn target_port(&self, port: &ServicePort) -> Option<u16> {
        if self.ports.is_empty() {
            Some(port.target_port)
        } else {
            self.ports.get(&port.name).copied()
        }
    }
}

/// A service and its ready endpoints, as the proxy and DNS need them.
///
/// Build one with [`ServiceEntry::new`] (or [`ServiceEntry::external_name`]) and set the
/// fields that differ from the defaults; new fields get a default there.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceEntry {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// ClusterIP, or `None` for a headless (or ExternalName) service.
    pub cluster_ip: Option<IpAddr>,
    /// `spec.externalName` of an `ExternalName` service: DNS answers a CNAME to it, and the
    /// proxy serves nothing.
    pub external_name: Option<String>,
    /// Ports.
    pub ports: Vec<ServicePort>,
    /// Ready endpoints, each once.
    pub endpoints: Vec<Endpoint>,
    /// `sessionAffinity: ClientIP`: how long a client stays on the endpoint it was sent to
    /// (`sessionAffinityConfig.clientIP.timeoutSeconds`, default 10800 s). `None`: no
    /// affinity.
    pub session_affinity: Option<Duration>,
    /// `externalTrafficPolicy: Local`: NodePort traffic from outside the cluster goes only
    /// to endpoints on the node it arrived at, and keeps its source address.
    pub external_traffic_local: bool,
    /// `internalTrafficPolicy: Local`: ClusterIP traffic goes only to endpoints on the
    /// client's node.
    pub internal_traffic_local: bool,
    /// The load-balancer ingress addresses (`status.loadBalancer.ingress[].ip`), served as
    /// external traffic, like the NodePort, as kube-proxy serves them.
    pub load_balancer_ips: Vec<IpAddr>,
}

impl ServiceEntry {
    /// A service `namespace/name` with ClusterIP `cluster_ip` (`None`: headless), no ports,
    /// no endpoints, and upstream's defaults for the rest.
    ///
    /// ```
    /// use kybernetes_net::{Endpoint, ServiceEntry, ServicePort};
    ///
    /// let mut web = ServiceEntry::new("shop", "web", Some("10.96.0.20".parse().unwrap()));
    /// web.ports = vec![ServicePort::tcp("http", 80, 8080)];
    /// web.endpoints = vec![Endpoint::new("10.244.0.2".parse().unwrap())];
    /// assert!(!web.internal_traffic_local);
    /// ```
    pub fn new(namespace: &str, name: &str, cluster_ip: Option<IpAddr>) -> Self {
        ServiceEntry {
            namespace: namespace.to_string(),
            name: name.to_string(),
            cluster_ip,
            external_name: None,
            ports: Vec::new(),
            endpoints: Vec::new(),
            session_affinity: None,
            external_traffic_local: false,
            internal_traffic_local: false,
            load_balancer_ips: Vec::new(),
        }
    }

    /// An `ExternalName` service: DNS answers `<name>.<namespace>.svc.<domain>` with a CNAME
    /// to `external_name`.
    pub fn external_name(namespace: &str, name: &str, external_name: &str) -> Self {
        let mut entry = ServiceEntry::new(namespace, name, None);
        entry.external_name = Some(external_name.to_string());
        entry
    }

    /// The same entry with `ports`.
    pub fn with_ports(mut self, ports: Vec<ServicePort>) -> Self {
        self.ports = ports;
        self
    }

    /// The same entry with ready `endpoints`.
    pub fn with_endpoints(mut self, endpoints: Vec<Endpoint>) -> Self {
        self.endpoints = endpoints;
        self
    }

    /// The endpoints serving `port`, each with the port to connect to on it.
    pub fn endpoints_for<'a>(
        &'a self,
        port: &'a ServicePort,
    ) -> impl Iterator<Item = (&'a Endpoint, u16)> + 'a {
        self.endpoints
            .iter()
            .filter_map(move |e| e.target_port(port).map(|t| (e, t)))
    }
}

/// Pod networking, the service proxy table and the DNS catalog.
#[async_trait]
pub trait Network: Send + Sync + 'static {
    /// Registers a node and returns its pod CIDR and address (idempotent). A node the pod
    /// CIDR has no room for is still registered, without a pod CIDR.
    async fn add_node(&self, node: &str) -> Result<NodeNetwork>;
    /// Registers a node that was in the cluster before (its Node object outlived a restart),
    /// giving it back the pod CIDR and address it had when they are free, so that its
    /// `spec.podCIDR`, immutable as upstream's, keeps matching its pods' addresses. What is
    /// no longer free is allocated afresh. The default forgets `previous` and calls
    /// [`Network::add_node`].
    async fn rejoin_node(
        &self,
        node: &str,
        _previous: &PreviousNodeNetwork,
    ) -> Result<NodeNetwork> {
        self.add_node(node).await
    }
    /// Forgets a node and releases its CIDR.
    async fn remove_node(&self, node: &str) -> Result<()>;
    /// Gives a pod on `node` its network (idempotent per pod UID).
    async fn setup_pod(&self, node: &str, pod: &PodNetworkRequest) -> Result<PodNetwork>;
    /// Releases a pod's network (unknown pods are not an error).
    async fn teardown_pod(&self, node: &str, pod_uid: &str) -> Result<()>;
    /// Replaces what the proxy and DNS know about one service.
    async fn sync_service(&self, service: ServiceEntry) -> Result<()>;
    /// Forgets a service.
    async fn remove_service(&self, namespace: &str, name: &str) -> Result<()>;
    /// Answers a DNS question for an A record name (`web`, `web.ns`,
    /// `web.ns.svc.cluster.local`, `pod-0.web.ns.svc.cluster.local`), relative names
    /// searched from `from_namespace` as a pod's resolv.conf would.
    fn resolve(&self, name: &str, from_namespace: &str) -> Vec<IpAddr>;
    /// Every record cluster DNS serves at the absolute name `fqdn` (lowercase, no trailing
    /// dot, under the cluster domain), or `None` if the name does not exist (NXDOMAIN). A
    /// name that exists with nothing of its own (a headless service with no ready endpoint,
    /// `<ns>.svc.cluster.local`) has `Some(vec![])`. The default serves the addresses
    /// [`Network::resolve`] gives the name, and nothing else.
    fn dns_records(&self, fqdn: &str) -> Option<Vec<DnsRecord>> {
        let ips = self.resolve(&format!("{fqdn}."), "default");
        (!ips.is_empty()).then(|| ips.into_iter().map(DnsRecord::Address).collect())
    }
    /// Where processes on this network reach the Service whose ClusterIP is `cluster_ip`:
    /// the node agent puts it in the Service environment variables (`WEB_SERVICE_HOST`). The
    /// default is the ClusterIP itself; [`LocalNetwork`]'s userspace proxy answers its
    /// loopback address.
    fn service_host(&self, cluster_ip: IpAddr) -> IpAddr {
        cluster_ip
    }
    /// Opens a TCP connection to `addr`, a pod or Service address, from where this network
    /// routes to it: components in this process that call pods themselves (the Ingress
    /// controller's proxy) dial through it. The default dials from the process's own
    /// network namespace, which reaches the addresses of [`LocalNetwork`]'s endpoints.
    async fn connect(&self, addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
        tokio::net::TcpStream::connect(addr).await
    }
    /// Removes everything the network made on the machine; the cluster calls it when it
    /// stops. The default has nothing to remove.
    async fn shutdown(&self) -> Result<()> {
        Ok(())
    }
}
