//! A pod's share of the topology: its namespace, and a veth pair from the node's bridge to
//! the pod's `eth0`. Set-up runs in the order the kernel needs (the kernel drops a device's
//! addresses when it changes namespace, so the peer is created inside the pod namespace
//! and configured after); teardown is the same list backwards.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use rtnetlink::Handle;

use super::node::NodeNamespace;
use super::{links, netns};
use crate::Result;

/// The pod's interface inside its namespace.
pub(crate) const POD_INTERFACE: &str = "eth0";

/// A pod namespace as set up.
pub(crate) struct PodNamespace {
    pub(crate) node: String,
    pub(crate) path: PathBuf,
    pub(crate) ip: Ipv4Addr,
}

/// Sets up the namespace `ns_name` for a pod with address `ip` on `node`. A step that
/// fails undoes the earlier ones.
pub(crate) async fn set_up(
    node_name: &str,
    node: &NodeNamespace,
    ns_name: &str,
    ip: Ipv4Addr,
) -> Result<PodNamespace> {
    let path = netns::create(ns_name).await?;
    let pod = PodNamespace {
        node: node_name.to_string(),
        path,
        ip,
    };
    let built = async {
        create_veth(node, &pod).await?;
        let handle = netns::connect(&pod.path).await?;
        loopback_up(&handle).await?;
        configure_interface(&handle, ip, node.subnet.prefix_len()).await?;
        add_default_route(&handle, node.gateway).await
    }
    .await;
    match built {
        Ok(()) => Ok(pod),
        Err(e) => {
            if let Err(undo) = tear_down(node, &pod).await {
                tracing::warn!(netns = %pod.path.display(), error = %undo, "undoing a failed pod network set-up failed");
            }
            Err(e)
        }
    }
}

/// 1. The veth pair: the host end a port of the node's bridge and up, the peer created as
///    `eth0` inside the pod namespace.
async fn create_veth(node: &NodeNamespace, pod: &PodNamespace) -> Result<()> {
    let pod_ns = netns::open(&pod.path)?;
    let host = links::add_veth(&node.handle, &host_end(pod.ip), POD_INTERFACE, &pod_ns).await?;
    links::attach(&node.handle, host, node.bridge).await?;
    links::up(&node.handle, host).await
}

/// 2. Loopback, so the pod's containers reach each other on `localhost`.
async fn loopback_up(handle: &Handle) -> Result<()> {
    let lo = links::index(handle, "lo").await?;
    links::up(handle, lo).await
}

/// 3. The pod's address on `eth0`, then `eth0` up.
async fn configure_interface(handle: &Handle, ip: Ipv4Addr, prefix: u8) -> Result<()> {
    let eth0 = links::index(handle, POD_INTERFACE).await?;
    links::add_address(handle, eth0, ip, prefix).await?;
    links::up(handle, eth0).await
}

/// 4. The default route through the node's bridge.
async fn add_default_route(handle: &Handle, gateway: Ipv4Addr) -> Result<()> {
    links::add_route(handle, Ipv4Addr::UNSPECIFIED, 0, gateway).await
}

/// Undoes steps 4 to 1: deleting the host end deletes the pair (and with `eth0` go its
/// address and route), then the namespace goes.
pub(crate) async fn tear_down(node: &NodeNamespace, pod: &PodNamespace) -> Result<()> {
    let deleted = links::delete(&node.handle, &host_end(pod.ip)).await;
    netns::remove(&pod.path);
    deleted
}

/// The host end's name in the node namespace, from the pod's address, so it is unique
/// there and fits in an interface name (15 bytes).
fn host_end(ip: Ipv4Addr) -> String {
    let [_, _, c, d] = ip.octets();
    format!("veth{c}-{d}")
}
