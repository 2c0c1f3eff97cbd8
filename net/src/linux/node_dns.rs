//! Cluster DNS inside a node namespace: the cluster DNS address (`10.96.0.10`, the address
//! every pod's `resolv.conf` names) on the node's loopback, and a [`DnsServer`] on UDP and
//! TCP port 53 of that address, answering from the cluster's catalog.
//!
//! Pods reach it through their default route to the node bridge, `hostNetwork` pods
//! directly; no packet leaves the node, as with NodeLocal DNSCache. (NodeLocal DNSCache puts
//! its address on a dummy interface; loopback does the same job, a local address the kernel
//! delivers to from any interface, and needs no `dummy` module, which containers often
//! lack.) The steps run in the order the kernel needs them: the address must exist before a
//! socket can bind it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use rtnetlink::Handle;

use super::node::NodeNamespace;
use super::{links, netns};
use crate::{DnsServer, Error, Network, Result};

/// The interface holding the cluster DNS address in every node namespace.
const DNS_LINK: &str = "lo";
/// The port DNS is served on.
pub(crate) const DNS_PORT: u16 = 53;

fn backend(context: String, source: std::io::Error) -> Error {
    Error::Backend {
        context,
        source: Some(Box::new(source)),
    }
}

/// Serves cluster DNS for `domain` from `catalog` on `ip`:53 inside `node`'s namespace. What
/// a failed step made goes with the node namespace, which the caller then removes.
pub(crate) async fn set_up(
    node: &NodeNamespace,
    ip: Ipv4Addr,
    catalog: Arc<dyn Network>,
    domain: &str,
) -> Result<DnsServer> {
    add_dns_address(&node.handle, ip).await?;
    let (udp, tcp) = bind_sockets(node, SocketAddr::from((ip, DNS_PORT))).await?;
    serve(catalog, domain, udp, tcp)
}

/// 1. The DNS address on loopback (up since the node's first step): local to the node, so
///    packets to it from the pods' bridge are delivered, not forwarded.
async fn add_dns_address(handle: &Handle, ip: Ipv4Addr) -> Result<()> {
    let link = links::index(handle, DNS_LINK).await?;
    links::add_address(handle, link, ip, 32).await
}

/// 2. A UDP socket and a TCP listener on `addr`, created on a thread inside the node
///    namespace (a socket belongs to the namespace it was created in) and registered with
///    the caller's runtime.
async fn bind_sockets(
    node: &NodeNamespace,
    addr: SocketAddr,
) -> Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    netns::in_namespace(
        format!("binding cluster DNS on {addr} in {}", node.path.display()),
        node.path.clone(),
        move || {
            let udp = std::net::UdpSocket::bind(addr)
                .map_err(|e| backend(format!("binding UDP {addr}"), e))?;
            udp.set_nonblocking(true)
                .map_err(|e| backend("making the DNS UDP socket non-blocking".into(), e))?;
            let tcp = std::net::TcpListener::bind(addr)
                .map_err(|e| backend(format!("binding TCP {addr}"), e))?;
            tcp.set_nonblocking(true)
                .map_err(|e| backend("making the DNS TCP listener non-blocking".into(), e))?;
            let udp = tokio::net::UdpSocket::from_std(udp)
                .map_err(|e| backend("registering the DNS UDP socket".into(), e))?;
            let tcp = tokio::net::TcpListener::from_std(tcp)
                .map_err(|e| backend("registering the DNS TCP listener".into(), e))?;
            Ok((udp, tcp))
        },
    )
    .await
}

/// 3. The server on both sockets.
fn serve(
    catalog: Arc<dyn Network>,
    domain: &str,
    udp: tokio::net::UdpSocket,
    tcp: tokio::net::TcpListener,
) -> Result<DnsServer> {
    DnsServer::serve(catalog, domain, udp, tcp)
        .map_err(|e| backend(format!("serving cluster DNS for {domain}"), e))
}

/// Undoes step 3: stops serving and closes the sockets. Steps 2 and 1 (the sockets'
/// binding, the address on loopback) go with the node namespace.
pub(crate) async fn tear_down(server: DnsServer) {
    server.shutdown().await;
}
