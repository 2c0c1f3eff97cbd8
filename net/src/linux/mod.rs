//! [`LinuxNetwork`]: pod networks in Linux network namespaces, over netlink.
//!
//! The whole topology lives in network namespaces the network creates itself, all named
//! `<prefix>_…` under `/run/netns` (so `ip netns` lists them):
//!
//! ```text
//!                       <prefix>_cluster: bridge kyb0
//!                  ┌──────────┴───────────┐
//!       node1-2 (port)                  node1-3 (port)
//!            │ veth                          │ veth
//!   <prefix>_node_node-1             <prefix>_node_node-2
//!   eth0 172.18.0.2/16               eth0 172.18.0.3/16
//!   cbr0 10.244.0.1/24               cbr0 10.244.1.1/24
//!   route 10.244.1.0/24 via .0.3     route 10.244.0.0/24 via .0.2
//!      │ veth0-2                        │ veth1-2
//!   <prefix>_pod_<uid>               <prefix>_pod_<uid>
//!   eth0 10.244.0.2/24               eth0 10.244.1.2/24
//!   default via 10.244.0.1           default via 10.244.1.1
//! ```
//!
//! Pods on one node talk over the node's bridge; across nodes, each node routes the
//! others' pod CIDRs to their node addresses over the cluster bridge, so a packet keeps
//! its pod source address all the way (no NAT), as the Kubernetes network model requires.
//! Nothing is configured in the machine's own namespace: the network only creates and
//! removes namespaces there.
//!
//! Services are in the kernel datapath: every node namespace holds the nftables table
//! `ip kybernetes` (ClusterIP and NodePort DNAT to ready endpoints, chosen at random or by
//! session affinity, only local ones under a `Local` traffic policy; a reject for a service
//! with none), which
//! [`Network::sync_service`] updates in one `nft -f -` transaction per service and node
//! teardown deletes (see `service_rules.rs`).
//!
//! Cluster DNS is served inside every node namespace: the cluster DNS address (the tenth
//! of the service CIDR, `10.96.0.10`, which the node agent writes into every pod's
//! `resolv.conf`) sits on the node's loopback, with a [`DnsServer`] on UDP and TCP port 53
//! of it (see `node_dns.rs`). A pod's query goes to its node over its default route
//! and never leaves the node.
//!
//! Addresses and the service catalog come from an inner [`LocalNetwork`], so IPAM and DNS
//! answers are the same as in memory.
//!
//! [`DnsServer`]: crate::DnsServer

mod dialer;
mod links;
mod netns;
mod node;
mod node_dns;
mod pod;
mod service_rules;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use kybernetes_core::ClusterConfig;
use kybernetes_core::ipam::Cidr;

use self::dialer::Dialer;
use self::node::{ClusterNamespace, NodeNamespace};
use self::pod::PodNamespace;
use crate::{
    DnsServer, Error, LocalNetwork, Network, NodeNetwork, PodNetwork, PodNetworkRequest,
    PreviousNodeNetwork, Result, ServiceEntry,
};

/// The default namespace prefix (`kyb_cluster`, `kyb_node_node-1`, …).
pub const DEFAULT_PREFIX: &str = "kyb";

/// Pod networking in Linux network namespaces (see the [module docs](self)). Needs root
/// (`CAP_SYS_ADMIN` and `CAP_NET_ADMIN`).
///
/// [`LinuxNetwork::start`] first removes every namespace with its prefix that a crashed run
/// left behind; [`Network::shutdown`] (which [`Cluster::shutdown`] calls) and dropping the
/// network remove every namespace it made.
///
/// [`Cluster::shutdown`]: https://docs.rs/kybernetes
pub struct LinuxNetwork {
    /// Shared with every node's DNS server, which answers from its catalog.
    local: Arc<LocalNetwork>,
    prefix: String,
    /// The cluster DNS address and domain every node namespace serves (`None`: a service
    /// CIDR with no IPv4 tenth address).
    cluster_dns: Option<(Ipv4Addr, String)>,
    cluster: ClusterNamespace,
    /// Serializes node set-up and removal, so every pair of nodes gets its routes once.
    topology: tokio::sync::Mutex<()>,
    state: Mutex<State>,
    /// Every service whose rules are in the node namespaces, as last written; the lock
    /// serializes rule updates, so each node sees them in one order, and is held while a
    /// node is added, so no update misses a node that is being set up.
    service_rules: tokio::sync::Mutex<ServiceTable>,
}

/// Services by `(namespace, name)`.
type ServiceTable = BTreeMap<(String, String), ServiceEntry>;

#[derive(Default)]
struct State {
    nodes: BTreeMap<String, NodeNamespace>,
    /// Pod namespaces by pod UID.
    pods: HashMap<String, PodNamespace>,
    /// The cluster DNS server in each node namespace, by node.
    dns: BTreeMap<String, DnsServer>,
    /// Makes the sockets of [`Network::connect`] inside one node's namespace; started by
    /// the first connection, gone with its node.
    dialer: Option<Arc<Dialer>>,
}

impl std::fmt::Debug for LinuxNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinuxNetwork")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl LinuxNetwork {
    /// Removes what an earlier run with the same `prefix` left behind, then creates the
    /// cluster namespace and bridge. `prefix` (letters, digits and `-`, at most 32) names
    /// every namespace this network creates; give each cluster on a machine its own.
    pub async fn start(config: ClusterConfig, prefix: &str) -> Result<Self> {
        validate_prefix(prefix)?;
        let cluster_dns = match config.cluster_dns_ip() {
            Some(IpAddr::V4(ip)) => Some((ip, config.cluster_domain.clone())),
            other => {
                tracing::warn!(service_cidr = %config.service_cidr, dns = ?other, "no IPv4 cluster DNS address in the service CIDR: node namespaces serve no DNS");
                None
            }
        };
        let local = Arc::new(LocalNetwork::new(config)?);
        let removed = remove_namespaces(prefix);
        if removed > 0 {
            tracing::info!(
                prefix,
                removed,
                "removed network namespaces a previous run left behind"
            );
        }
        let cluster = node::set_up_cluster(&format!("{prefix}_cluster")).await?;
        tracing::info!(prefix, "linux pod network started");
        Ok(LinuxNetwork {
            local,
            prefix: prefix.to_string(),
            cluster_dns,
            cluster,
            topology: tokio::sync::Mutex::new(()),
            state: Mutex::new(State::default()),
            service_rules: tokio::sync::Mutex::new(BTreeMap::new()),
        })
    }

    /// The prefix of every namespace this network creates.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The in-memory network behind it: addresses and the service catalog.
    pub fn local(&self) -> &LocalNetwork {
        &self.local
    }

    /// The address every node namespace serves cluster DNS on, port 53 (the tenth of the
    /// service CIDR: `10.96.0.10` by default).
    pub fn cluster_dns_ip(&self) -> Option<Ipv4Addr> {
        self.cluster_dns.as_ref().map(|(ip, _)| *ip)
    }

    /// The network namespace of node `node`, if it is registered.
    pub fn node_netns(&self, node: &str) -> Option<PathBuf> {
        self.state().nodes.get(node).map(|n| n.path.clone())
    }

    /// The network namespace of a pod, by pod UID.
    pub fn pod_netns(&self, pod_uid: &str) -> Option<PathBuf> {
        self.state().pods.get(pod_uid).map(|p| p.path.clone())
    }

    /// The namespaces under `/run/netns` that belong to a network with `prefix` (what
    /// teardown must leave empty).
    pub fn namespaces(prefix: &str) -> Vec<PathBuf> {
        netns::list(&format!("{prefix}_"))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the maps consistent, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn node_namespace_name(&self, node: &str) -> Result<String> {
        if node.is_empty() || node.contains(['/', '\0']) || node.starts_with('.') {
            return Err(Error::Config(format!(
                "node name {node:?} cannot name a network namespace"
            )));
        }
        Ok(format!("{}_node_{node}", self.prefix))
    }

    fn pod_namespace_name(&self, uid: &str) -> Result<String> {
        if uid.is_empty() || !uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(Error::Config(format!(
                "pod UID {uid:?} cannot name a network namespace"
            )));
        }
        Ok(format!("{}_pod_{uid}", self.prefix))
    }

    /// Sets up a registered node's namespace, with the rules of every service in `services`,
    /// its cluster DNS server, and the routes between it and every other node.
    async fn set_up_node(
        &self,
        node: &str,
        net: &NodeNetwork,
        services: &ServiceTable,
    ) -> Result<(NodeNamespace, Option<DnsServer>)> {
        let ns_name = self.node_namespace_name(node)?;
        let started = std::time::Instant::now();
        let ns = node::set_up(&self.cluster, &ns_name, net).await?;
        let dns = match self.write_service_table(node, &ns, services).await {
            Ok(()) => self.set_up_node_dns(&ns).await,
            Err(e) => Err(e),
        };
        let dns = match dns {
            Ok(dns) => dns,
            Err(e) => {
                if let Err(undo) = node::tear_down(&self.cluster, &ns).await {
                    tracing::warn!(error = %undo, "undoing a node namespace failed");
                }
                return Err(e);
            }
        };
        let peers: Vec<NodeNamespace> = self.state().nodes.values().cloned().collect();
        for peer in &peers {
            if let Err(e) = node::add_routes_between(&ns, peer).await {
                for p in &peers {
                    if let Err(undo) = node::delete_route_to(p, &ns).await {
                        tracing::warn!(error = %undo, "undoing a route failed");
                    }
                }
                if let Some(dns) = dns {
                    node_dns::tear_down(dns).await;
                }
                if let Err(undo) = node::tear_down(&self.cluster, &ns).await {
                    tracing::warn!(error = %undo, "undoing a node namespace failed");
                }
                return Err(e);
            }
        }
        tracing::debug!(node, netns = %ns.path.display(), peers = peers.len(), elapsed = ?started.elapsed(), "node network set up");
        Ok((ns, dns))
    }

    /// The node's cluster DNS server, answering from the shared catalog.
    async fn set_up_node_dns(&self, ns: &NodeNamespace) -> Result<Option<DnsServer>> {
        let Some((ip, domain)) = &self.cluster_dns else {
            return Ok(None);
        };
        let catalog: Arc<dyn Network> = self.local.clone();
        node_dns::set_up(ns, *ip, catalog, domain).await.map(Some)
    }
}

impl LinuxNetwork {
    /// The dialer of [`Network::connect`], started in the first node's namespace when
    /// none runs.
    async fn dialer(&self) -> Result<Arc<Dialer>> {
        let first = {
            let st = self.state();
            if let Some(dialer) = &st.dialer {
                return Ok(dialer.clone());
            }
            st.nodes
                .iter()
                .next()
                .map(|(node, ns)| (node.clone(), ns.path.clone()))
        };
        let Some((node, path)) = first else {
            return Err(Error::Config(
                "no node yet: pod addresses are reachable only from a node's network namespace"
                    .into(),
            ));
        };
        let dialer = Arc::new(Dialer::start(&node, &path).await?);
        let mut st = self.state();
        if !st.nodes.contains_key(&node) {
            return Err(Error::UnknownNode(node));
        }
        Ok(st.dialer.get_or_insert(dialer).clone())
    }
}

impl LinuxNetwork {
    /// The node's service table with every service in `services` (a new node, or one
    /// whose table must be rewritten whole).
    async fn write_service_table(
        &self,
        node: &str,
        ns: &NodeNamespace,
        services: &ServiceTable,
    ) -> Result<()> {
        let mut script = service_rules::base_script(ns.node_ip, ns.subnet, self.cluster_dns_ip());
        let none = service_rules::ServiceRules::default();
        let at = self.rules_node(node);
        for service in services.values() {
            script.push_str(&service_rules::update_script(
                &none,
                &service_rules::rules_for(service, &at),
            ));
        }
        service_rules::apply(&ns.path, script).await
    }

    fn rules_node<'a>(&self, node: &'a str) -> service_rules::RulesNode<'a> {
        service_rules::RulesNode {
            name: node,
            cluster_cidr: self.local.cluster_cidr(),
        }
    }

    /// Moves one service's rules in every node namespace from what they were to `new`
    /// (`None`: the service is gone).
    async fn update_service_rules(
        &self,
        key: (String, String),
        new: Option<ServiceEntry>,
    ) -> Result<()> {
        let mut services = self.service_rules.lock().await;
        let old = services.get(&key);
        let nodes: Vec<(String, NodeNamespace)> = self
            .state()
            .nodes
            .iter()
            .map(|(name, ns)| (name.clone(), ns.clone()))
            .collect();
        let started = std::time::Instant::now();
        let mut first_error = None;
        for (name, ns) in &nodes {
            let at = self.rules_node(name);
            let rules = |entry: Option<&ServiceEntry>| {
                entry.map_or_else(service_rules::ServiceRules::default, |e| {
                    service_rules::rules_for(e, &at)
                })
            };
            let script = service_rules::update_script(&rules(old), &rules(new.as_ref()));
            if let Err(e) = service_rules::apply(&ns.path, script).await {
                first_error.get_or_insert(e);
            }
        }
        if first_error.is_none() {
            match new {
                Some(entry) => services.insert(key.clone(), entry),
                None => services.remove(&key),
            };
        }
        tracing::debug!(namespace = %key.0, service = %key.1, nodes = nodes.len(), elapsed = ?started.elapsed(), "service rules written");
        first_error.map_or(Ok(()), Err)
    }
}

fn validate_prefix(prefix: &str) -> Result<()> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 32
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "network namespace prefix {prefix:?} must be 1 to 32 letters, digits or '-'"
        )))
    }
}

/// Removes every namespace named `<prefix>_…`; returns how many there were.
fn remove_namespaces(prefix: &str) -> usize {
    let found = LinuxNetwork::namespaces(prefix);
    for path in &found {
        netns::remove(path);
    }
    found.len()
}

/// The IPv4 address of `ip` (the pod network is IPv4 only for now).
fn ipv4(ip: IpAddr) -> Result<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Ok(v4),
        IpAddr::V6(v6) => Err(Error::Config(format!(
            "{v6}: LinuxNetwork supports IPv4 pod and node addresses only"
        ))),
    }
}

/// The gateway of a pod subnet: its first address, which IPAM never hands to a pod.
fn gateway(subnet: Cidr) -> Result<Ipv4Addr> {
    subnet
        .nth(1)
        .ok_or_else(|| Error::Config(format!("pod subnet {subnet} has no gateway address")))
}

#[async_trait]
impl Network for LinuxNetwork {
    async fn add_node(&self, node: &str) -> Result<NodeNetwork> {
        self.rejoin_node(node, &PreviousNodeNetwork::default())
            .await
    }

    async fn rejoin_node(&self, node: &str, previous: &PreviousNodeNetwork) -> Result<NodeNetwork> {
        let _topology = self.topology.lock().await;
        if let Some(ns) = self.state().nodes.get(node) {
            let mut net = self
                .local
                .node(node)
                .ok_or_else(|| Error::UnknownNode(node.to_string()))?;
            net.netns = Some(ns.path.clone());
            return Ok(net);
        }
        let mut net = self.local.rejoin_node(node, previous).await?;
        // Held until the node is in `state`: a service update waits, then sees the node.
        let services = self.service_rules.lock().await;
        match self.set_up_node(node, &net, &services).await {
            Ok((ns, dns)) => {
                net.netns = Some(ns.path.clone());
                let mut st = self.state();
                st.nodes.insert(node.to_string(), ns);
                if let Some(dns) = dns {
                    st.dns.insert(node.to_string(), dns);
                }
                Ok(net)
            }
            Err(e) => {
                self.local.remove_node(node).await?;
                Err(e)
            }
        }
    }

    async fn remove_node(&self, node: &str) -> Result<()> {
        let _topology = self.topology.lock().await;
        let removed = {
            let mut st = self.state();
            st.nodes.remove(node).map(|gone| {
                let uids: Vec<String> = st
                    .pods
                    .iter()
                    .filter(|(_, p)| p.node == node)
                    .map(|(uid, _)| uid.clone())
                    .collect();
                let pods: Vec<PodNamespace> =
                    uids.iter().filter_map(|u| st.pods.remove(u)).collect();
                let dns = st.dns.remove(node);
                if st.dialer.as_ref().is_some_and(|d| d.node == node) {
                    // Connections it made keep working until the namespace goes; the next
                    // one starts a dialer in another node.
                    st.dialer = None;
                }
                (
                    gone,
                    st.nodes.values().cloned().collect::<Vec<_>>(),
                    pods,
                    dns,
                )
            })
        };
        let Some((gone, peers, pods, dns)) = removed else {
            return self.local.remove_node(node).await;
        };
        let mut first_error = None;
        for pod in &pods {
            if let Err(e) = pod::tear_down(&gone, pod).await {
                first_error.get_or_insert(e);
            }
        }
        // The set-up steps backwards: routes, DNS, service rules, then the namespace.
        for peer in &peers {
            if let Err(e) = node::delete_route_to(peer, &gone).await {
                first_error.get_or_insert(e);
            }
        }
        if let Some(dns) = dns {
            node_dns::tear_down(dns).await;
        }
        if let Err(e) = service_rules::apply(&gone.path, service_rules::delete_script()).await {
            first_error.get_or_insert(e);
        }
        if let Err(e) = node::tear_down(&self.cluster, &gone).await {
            first_error.get_or_insert(e);
        }
        self.local.remove_node(node).await?;
        tracing::debug!(node, pods = pods.len(), "node network removed");
        first_error.map_or(Ok(()), Err)
    }

    async fn setup_pod(&self, node: &str, pod: &PodNetworkRequest) -> Result<PodNetwork> {
        if let Some(existing) = self.state().pods.get(&pod.uid) {
            if existing.node != node {
                return Err(Error::PodOnOtherNode {
                    uid: pod.uid.clone(),
                    node: existing.node.clone(),
                });
            }
            return Ok(PodNetwork {
                ip: existing.ip.into(),
                netns: Some(existing.path.clone()),
            });
        }
        let ns_name = self.pod_namespace_name(&pod.uid)?;
        let node_ns = self
            .state()
            .nodes
            .get(node)
            .cloned()
            .ok_or_else(|| Error::UnknownNode(node.to_string()))?;
        let started = std::time::Instant::now();
        let lease = self.local.setup_pod(node, pod).await?;
        let set_up = match ipv4(lease.ip) {
            Ok(ip) => pod::set_up(node, &node_ns, &ns_name, ip).await,
            Err(e) => Err(e),
        };
        let ns = match set_up {
            Ok(ns) => ns,
            Err(e) => {
                self.local.teardown_pod(node, &pod.uid).await?;
                return Err(e);
            }
        };
        let net = PodNetwork {
            ip: lease.ip,
            netns: Some(ns.path.clone()),
        };
        self.state().pods.insert(pod.uid.clone(), ns);
        tracing::debug!(node, namespace = %pod.namespace, pod = %pod.name, ip = %net.ip, elapsed = ?started.elapsed(), "pod network set up");
        Ok(net)
    }

    async fn teardown_pod(&self, node: &str, pod_uid: &str) -> Result<()> {
        let removed = {
            let mut st = self.state();
            st.pods.remove(pod_uid).map(|pod| {
                let node_ns = st.nodes.get(&pod.node).cloned();
                (pod, node_ns)
            })
        };
        let Some((pod, node_ns)) = removed else {
            return self.local.teardown_pod(node, pod_uid).await;
        };
        let result = match &node_ns {
            Some(node_ns) => pod::tear_down(node_ns, &pod).await,
            None => {
                netns::remove(&pod.path);
                Ok(())
            }
        };
        self.local.teardown_pod(node, pod_uid).await?;
        result
    }

    async fn sync_service(&self, service: ServiceEntry) -> Result<()> {
        let key = (service.namespace.clone(), service.name.clone());
        self.local.sync_service(service.clone()).await?;
        self.update_service_rules(key, Some(service)).await
    }

    async fn remove_service(&self, namespace: &str, name: &str) -> Result<()> {
        self.local.remove_service(namespace, name).await?;
        let key = (namespace.to_string(), name.to_string());
        self.update_service_rules(key, None).await
    }

    fn resolve(&self, name: &str, from_namespace: &str) -> Vec<IpAddr> {
        self.local.resolve(name, from_namespace)
    }

    fn dns_records(&self, fqdn: &str) -> Option<Vec<crate::DnsRecord>> {
        self.local.dns_records(fqdn)
    }

    async fn connect(&self, addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
        self.dialer()
            .await
            .map_err(std::io::Error::other)?
            .connect(addr)
            .await
    }

    async fn shutdown(&self) -> Result<()> {
        let (pods, nodes): (Vec<(String, String)>, Vec<String>) = {
            let st = self.state();
            (
                st.pods
                    .iter()
                    .map(|(uid, p)| (p.node.clone(), uid.clone()))
                    .collect(),
                st.nodes.keys().rev().cloned().collect(),
            )
        };
        let mut first_error = None;
        for (node, uid) in &pods {
            if let Err(e) = self.teardown_pod(node, uid).await {
                first_error.get_or_insert(e);
            }
        }
        for node in &nodes {
            if let Err(e) = self.remove_node(node).await {
                first_error.get_or_insert(e);
            }
        }
        netns::remove(&self.cluster.path);
        tracing::info!(prefix = %self.prefix, pods = pods.len(), nodes = nodes.len(), "linux pod network removed");
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for LinuxNetwork {
    /// Whatever shutdown did not remove (a cluster dropped without `shutdown`, a test that
    /// panicked) goes now: removing the namespaces removes every interface in them.
    fn drop(&mut self) {
        remove_namespaces(&self.prefix);
    }
}
