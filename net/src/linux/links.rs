//! The netlink requests the topology is built from, one per kernel object, each on the
//! connection of the namespace it changes.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use crate::{Error, Result};

fn failed(context: String) -> impl FnOnce(rtnetlink::Error) -> Error {
    move |e| Error::Backend {
        context,
        source: Some(Box::new(e)),
    }
}

/// Whether a netlink error says the object does not exist (a teardown that finds nothing
/// has nothing to do).
fn is_missing(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m)
    if m.code.is_some_and(|c| {
        let errno = -c.get();
        errno == nix::errno::Errno::ENODEV as i32
            || errno == nix::errno::Errno::ESRCH as i32
            || errno == nix::errno::Errno::ENOENT as i32
    }))
}

/// The index of interface `name`, if it exists.
pub(crate) async fn find(handle: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(failed(format!("looking up interface {name}"))(e)),
    }
}

/// The index of interface `name`, which must exist.
pub(crate) async fn index(handle: &Handle, name: &str) -> Result<u32> {
    find(handle, name).await?.ok_or_else(|| Error::Backend {
        context: format!("interface {name} does not exist"),
        source: None,
    })
}

/// `ip link add NAME [address MAC] type bridge`. A bridge created with an address keeps it;
/// one without takes the lowest address of its ports, and changes it as ports come and go.
pub(crate) async fn add_bridge(handle: &Handle, name: &str, mac: Option<[u8; 6]>) -> Result<u32> {
    let mut bridge = LinkBridge::new(name);
    if let Some(mac) = mac {
        bridge = bridge.address(mac.to_vec());
    }
    handle
        .link()
        .add(bridge.build())
        .execute()
        .await
        .map_err(failed(format!("creating bridge {name}")))?;
    index(handle, name).await
}

/// `ip link add NAME type veth peer PEER netns NS`: the peer is created directly inside
/// the namespace `peer_ns`, so it never appears in this one.
pub(crate) async fn add_veth(
    handle: &Handle,
    name: &str,
    peer: &str,
    peer_ns: &std::fs::File,
) -> Result<u32> {
    let peer_link = LinkMessageBuilder::<LinkUnspec>::new()
        .name(peer.to_string())
        .setns_by_fd(peer_ns.as_raw_fd())
        .build();
    let veth = LinkVeth::new(name, peer)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_link)))
        .build();
    handle
        .link()
        .add(veth)
        .execute()
        .await
        .map_err(failed(format!("creating veth pair {name}/{peer}")))?;
    index(handle, name).await
}

/// `ip link set IFACE master BRIDGE`.
pub(crate) async fn attach(handle: &Handle, link: u32, bridge: u32) -> Result<()> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(link).controller(bridge).build())
        .execute()
        .await
        .map_err(failed(format!(
            "attaching interface {link} to bridge {bridge}"
        )))
}

/// `ip link set IFACE up`.
pub(crate) async fn up(handle: &Handle, link: u32) -> Result<()> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(link).up().build())
        .execute()
        .await
        .map_err(failed(format!("bringing interface {link} up")))
}

/// `ip addr add ADDR/PREFIX dev IFACE`.
pub(crate) async fn add_address(
    handle: &Handle,
    link: u32,
    addr: Ipv4Addr,
    prefix: u8,
) -> Result<()> {
    handle
        .address()
        .add(link, addr.into(), prefix)
        .execute()
        .await
        .map_err(failed(format!(
            "adding {addr}/{prefix} to interface {link}"
        )))
}

/// The route `DEST/PREFIX via GATEWAY`, as both adding and deleting it name it.
fn route_via(
    dest: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> rtnetlink::packet_route::route::RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dest, prefix)
        .gateway(gateway)
        .build()
}

/// `ip route add DEST/PREFIX via GATEWAY` (`0.0.0.0/0` is the default route).
pub(crate) async fn add_route(
    handle: &Handle,
    dest: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<()> {
    let route = route_via(dest, prefix, gateway);
    handle
        .route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(failed(format!(
            "adding route {dest}/{prefix} via {gateway}"
        )))
}

/// `ip route del DEST/PREFIX via GATEWAY`; a route that is gone is fine.
pub(crate) async fn delete_route(
    handle: &Handle,
    dest: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<()> {
    let route = route_via(dest, prefix, gateway);
    match handle.route().del(route).execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_missing(&e) => Ok(()),
        Err(e) => Err(failed(format!(
            "deleting route {dest}/{prefix} via {gateway}"
        ))(e)),
    }
}

/// `ip link del NAME`; an interface that is gone is fine. Deleting one end of a veth pair
/// deletes the other, wherever it is.
pub(crate) async fn delete(handle: &Handle, name: &str) -> Result<()> {
    let Some(link) = find(handle, name).await? else {
        return Ok(());
    };
    match handle.link().del(link).execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_missing(&e) => Ok(()),
        Err(e) => Err(failed(format!("deleting interface {name}"))(e)),
    }
}
