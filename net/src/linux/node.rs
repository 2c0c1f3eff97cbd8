//! A node's share of the topology: its namespace with the pod bridge, and its uplink to the
//! cluster bridge. The steps run top to bottom in the order the kernel needs them; teardown
//! is the same list backwards.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use kybernetes_core::ipam::Cidr;
use rtnetlink::Handle;

use super::{links, netns};
use crate::{NODE_ADDRESS_CIDR, NodeNetwork, Result};

/// The pod bridge in every node namespace (kubenet's name).
pub(crate) const POD_BRIDGE: &str = "cbr0";
/// A node's link to the cluster bridge, inside the node namespace.
pub(crate) const UPLINK: &str = "eth0";
/// The bridge in the cluster namespace that every node's uplink is a port of.
pub(crate) const CLUSTER_BRIDGE: &str = "kyb0";

/// The cluster namespace: the wire between the nodes.
pub(crate) struct ClusterNamespace {
    pub(crate) path: PathBuf,
    pub(crate) handle: Handle,
    pub(crate) bridge: u32,
}

/// A node namespace as set up.
#[derive(Clone)]
pub(crate) struct NodeNamespace {
    pub(crate) path: PathBuf,
    pub(crate) handle: Handle,
    pub(crate) node_ip: Ipv4Addr,
    pub(crate) subnet: Cidr,
    pub(crate) gateway: Ipv4Addr,
    pub(crate) bridge: u32,
}

/// Sets up the cluster namespace: loopback and the cluster bridge.
pub(crate) async fn set_up_cluster(name: &str) -> Result<ClusterNamespace> {
    let path = netns::create(name).await?;
    let built = async {
        let handle = netns::connect(&path).await?;
        loopback_up(&handle).await?;
        // No address on it, so nothing caches its MAC: the kernel's choice is fine.
        let bridge = links::add_bridge(&handle, CLUSTER_BRIDGE, None).await?;
        links::up(&handle, bridge).await?;
        Ok(ClusterNamespace {
            path: path.clone(),
            handle,
            bridge,
        })
    }
    .await;
    if built.is_err() {
        netns::remove(&path);
    }
    built
}

/// Sets up node `name`'s namespace `ns_name` for `net`. A step that fails removes the
/// namespace, and with it everything the earlier steps made.
pub(crate) async fn set_up(
    cluster: &ClusterNamespace,
    ns_name: &str,
    net: &NodeNetwork,
) -> Result<NodeNamespace> {
    let node_ip = super::ipv4(net.node_ip)?;
    // A node without a pod CIDR has no pod bridge to build: it stays unregistered here, and
    // the agent retries, until a subnet frees up.
    let cidr = net
        .pod_cidr
        .as_deref()
        .ok_or_else(|| crate::Error::NoPodCidr(ns_name.to_string()))?;
    let subnet: Cidr = cidr
        .parse()
        .map_err(|e| crate::Error::Config(format!("pod CIDR {cidr:?}: {e}")))?;
    let gateway = super::gateway(subnet)?;
    let path = netns::create(ns_name).await?;
    let built = async {
        let handle = netns::connect(&path).await?;
        loopback_up(&handle).await?;
        let bridge = create_bridge(&handle, gateway).await?;
        enable_forwarding(&path).await?;
        add_gateway(&handle, bridge, gateway, subnet.prefix_len()).await?;
        connect_uplink(&handle, cluster, node_ip).await?;
        Ok(NodeNamespace {
            path: path.clone(),
            handle,
            node_ip,
            subnet,
            gateway,
            bridge,
        })
    }
    .await;
    if built.is_err() {
        netns::remove(&path);
    }
    built
}

/// 1. Loopback, which every namespace starts with but down.
async fn loopback_up(handle: &Handle) -> Result<()> {
    let lo = links::index(handle, "lo").await?;
    links::up(handle, lo).await
}

/// 2. The bridge the node's pods are ports of, with the fixed MAC [`bridge_mac`]: the
///    gateway's MAC, which every pod caches in its neighbour table.
async fn create_bridge(handle: &Handle, gateway: Ipv4Addr) -> Result<u32> {
    links::add_bridge(handle, POD_BRIDGE, Some(bridge_mac(gateway))).await
}

/// The pod bridge's MAC: `0a:58:` and the gateway's four bytes, as the CNI bridge plugin
/// and kubenet set it. Left to the kernel, a bridge takes the lowest MAC of its ports and
/// changes it whenever a pod's veth with a lower one joins or leaves; the pods, which
/// keep the gateway's old MAC in their neighbour cache for tens of seconds, then send
/// every packet to an address nothing answers to (a rolling update's requests fail). `0a`
/// is a locally administered unicast prefix, and deriving the rest from the gateway keeps
/// it unique on the cluster wire and stable across restarts.
pub(crate) fn bridge_mac(gateway: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = gateway.octets();
    [0x0a, 0x58, a, b, c, d]
}

/// 3. Forwarding, so the node routes between its pods' bridge and its uplink.
async fn enable_forwarding(path: &std::path::Path) -> Result<()> {
    netns::write_sysctl(path, "net/ipv4/ip_forward", "1").await
}

/// 4. The pod CIDR's gateway address on the bridge, and the bridge up: every pod's default
///    route points here.
async fn add_gateway(handle: &Handle, bridge: u32, gateway: Ipv4Addr, prefix: u8) -> Result<()> {
    links::add_address(handle, bridge, gateway, prefix).await?;
    links::up(handle, bridge).await
}

/// 5. The uplink: a veth pair whose peer is a port of the cluster bridge, with the node's
///    address on the node's end.
async fn connect_uplink(
    handle: &Handle,
    cluster: &ClusterNamespace,
    node_ip: Ipv4Addr,
) -> Result<()> {
    let peer = uplink_peer(node_ip);
    let cluster_ns = netns::open(&cluster.path)?;
    let uplink = links::add_veth(handle, UPLINK, &peer, &cluster_ns).await?;
    let port = links::index(&cluster.handle, &peer).await?;
    links::attach(&cluster.handle, port, cluster.bridge).await?;
    links::up(&cluster.handle, port).await?;
    links::add_address(handle, uplink, node_ip, NODE_ADDRESS_CIDR.prefix_len()).await?;
    links::up(handle, uplink).await
}

/// 6. Routes between two nodes, both ways: each reaches the other's pod CIDR through the
///    other's node address, so packets keep their pod source address (no NAT).
pub(crate) async fn add_routes_between(a: &NodeNamespace, b: &NodeNamespace) -> Result<()> {
    links::add_route(
        &a.handle,
        b.subnet.network(),
        b.subnet.prefix_len(),
        b.node_ip,
    )
    .await?;
    links::add_route(
        &b.handle,
        a.subnet.network(),
        a.subnet.prefix_len(),
        a.node_ip,
    )
    .await
}

/// Undoes step 6 on `from`'s side: `from` no longer routes to `gone`'s pods. (`gone`'s own
/// routes go with its namespace.)
pub(crate) async fn delete_route_to(from: &NodeNamespace, gone: &NodeNamespace) -> Result<()> {
    links::delete_route(
        &from.handle,
        gone.subnet.network(),
        gone.subnet.prefix_len(),
        gone.node_ip,
    )
    .await
}

/// Undoes steps 5 to 1: the uplink's peer in the cluster namespace first, then the node's
/// namespace, which takes the bridge, the addresses and the routes with it.
pub(crate) async fn tear_down(cluster: &ClusterNamespace, node: &NodeNamespace) -> Result<()> {
    let deleted = links::delete(&cluster.handle, &uplink_peer(node.node_ip)).await;
    netns::remove(&node.path);
    deleted
}

/// The name of a node's uplink peer in the cluster namespace, from its address, so it is
/// unique there and fits in an interface name (15 bytes).
fn uplink_peer(node_ip: Ipv4Addr) -> String {
    let [_, _, c, d] = node_ip.octets();
    format!("node{c}-{d}")
}
