//! The userspace service proxy of [`LocalNetwork`](crate::LocalNetwork), for pods that share
//! the host's network (`ProcessRuntime` in host mode), where no kernel rule can serve a
//! ClusterIP without root.
//!
//! It is kube-proxy's old `userspace` mode on loopback: each ClusterIP Service gets an address
//! in [`USERSPACE_PROXY_CIDR`] (`127.0.0.0/8` is the host's loopback on Linux, and binding
//! there needs no root), and a TCP listener for every TCP port of the Service. Each accepted
//! connection goes to the next ready endpoint (round-robin, `sessionAffinity: ClientIP`
//! honoured), and the bytes are copied both ways until either side closes. A refused dial
//! moves on to the next endpoint, with upstream's growing dial timeouts.
//!
//! The address is the ClusterIP's host part in `127.96.0.0/12`, so the default service CIDR
//! maps one to one (`10.96.0.57` → `127.96.0.57`). When that address and port are taken (by a
//! second cluster on the machine, whose Services have the same ClusterIPs), another free
//! address of the range is taken instead; [`UserspaceProxy::address`] tells which.
//!
//! Changes are incremental: a Service's endpoints change under running listeners, ports are
//! opened and closed one by one, established connections stay on their endpoint, and removing
//! a Service closes its listeners (its connections go on). [`UserspaceProxy::shutdown`]
//! closes every listener and connection.
//!
//! Not served: UDP and SCTP ports, IPv6 ClusterIPs, NodePorts and load-balancer addresses, and
//! ports below `net.ipv4.ip_unprivileged_port_start` (1024 by default) without root.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use kybernetes_core::ipam::Cidr;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::proxy_backends::Backends;
use crate::{Error, Result, ServiceEntry};

/// The loopback range the userspace proxy's Service addresses come from.
pub const USERSPACE_PROXY_CIDR: Cidr = match Cidr::from_octets([127, 96, 0, 0], 12) {
    Some(c) => c,
    None => panic!("127.96.0.0/12 is a valid CIDR"),
};

/// Upstream's userspace proxier dial timeouts: one per endpoint tried for a connection.
const DIAL_TIMEOUTS: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// How many other addresses are tried when a Service's own is taken.
const FALLBACK_ADDRESSES: u64 = 64;

/// A failed `accept` (out of file descriptors, say) waits this long before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

type Key = (String, String);

/// The userspace proxy: one set of listeners per ClusterIP Service (see the module docs).
#[derive(Debug)]
pub(crate) struct UserspaceProxy {
    /// Endpoint ranges whose processes listen on the host's loopback.
    host_ranges: Vec<Cidr>,
    state: Mutex<State>,
    /// Cancelled on shutdown (or drop): every listener and connection ends.
    shutdown: CancellationToken,
    /// Spreads fallback addresses differently in every proxy of the machine.
    hasher: RandomState,
}

#[derive(Debug, Default)]
struct State {
    services: HashMap<Key, ProxiedService>,
    stopped: bool,
}

#[derive(Debug)]
struct ProxiedService {
    cluster_ip: Ipv4Addr,
    address: Ipv4Addr,
    backends: Arc<Backends>,
    listeners: HashMap<u16, Listener>,
    /// Ports the OS refused for lack of privilege: not retried on every sync.
    refused: HashSet<u16>,
}

#[derive(Debug)]
struct Listener {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Why a set of ports could not be bound at one address.
enum BindError {
    /// A port is taken there: another address may do.
    InUse,
    /// Another failure, which another address would not mend.
    Other(io::Error),
}

impl UserspaceProxy {
    /// A proxy with no Services; endpoints in `host_ranges` are dialled at `127.0.0.1`.
    pub(crate) fn new(host_ranges: Vec<Cidr>) -> Self {
        UserspaceProxy {
            host_ranges,
            state: Mutex::new(State::default()),
            shutdown: CancellationToken::new(),
            hasher: RandomState::new(),
        }
    }

    /// Where the proxy serves the Service with ClusterIP `cluster_ip`, once synced.
    pub(crate) fn address(&self, cluster_ip: IpAddr) -> Option<Ipv4Addr> {
        let IpAddr::V4(cluster_ip) = cluster_ip else {
            return None;
        };
        let st = self.lock();
        st.services
            .values()
            .find(|s| s.cluster_ip == cluster_ip)
            .map(|s| s.address)
    }

    /// Where the proxy serves or will first try to serve the Service with ClusterIP
    /// `cluster_ip` (for a Service not synced yet).
    pub(crate) fn planned_address(&self, cluster_ip: IpAddr) -> Option<Ipv4Addr> {
        let IpAddr::V4(v4) = cluster_ip else {
            return None;
        };
        self.address(cluster_ip).or_else(|| preferred_address(v4))
    }

    /// Where the proxy serves `namespace/name`, if it serves it.
    pub(crate) fn service_address(&self, namespace: &str, name: &str) -> Option<Ipv4Addr> {
        self.lock()
            .services
            .get(&(namespace.to_string(), name.to_string()))
            .map(|s| s.address)
    }

    /// Serves `entry` as it is now: listeners for new ports, none for gone ones, the new
    /// endpoints from the next connection on. A Service without an IPv4 ClusterIP is not
    /// served (and stops being served).
    pub(crate) async fn sync(&self, entry: &ServiceEntry) -> Result<()> {
        let cluster_ip = match (&entry.external_name, entry.cluster_ip) {
            (None, Some(IpAddr::V4(ip))) => ip,
            (None, Some(IpAddr::V6(ip))) => {
                tracing::debug!(namespace = %entry.namespace, service = %entry.name, cluster_ip = %ip,
                    "IPv6 ClusterIPs are not served by the userspace proxy");
                return self.remove(&entry.namespace, &entry.name).await;
            }
            _ => return self.remove(&entry.namespace, &entry.name).await,
        };
        let mut ports: Vec<u16> = entry
            .ports
            .iter()
            .filter(|p| p.protocol.eq_ignore_ascii_case("TCP"))
            .map(|p| p.port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        let key = (entry.namespace.clone(), entry.name.clone());
        let (retired, result) = {
            let mut st = self.lock();
            if st.stopped {
                return Ok(());
            }
            match st.services.remove(&key) {
                Some(mut service) if service.cluster_ip == cluster_ip => {
                    service.backends.update(entry.clone());
                    let retired = self.reconcile_ports(&st, &key, &mut service, &ports);
                    st.services.insert(key, service);
                    (retired, Ok(()))
                }
                old => {
                    let retired = old.map(ProxiedService::into_listeners).unwrap_or_default();
                    let result = self
                        .open(&st, &key, cluster_ip, entry, &ports)
                        .map(|service| {
                            st.services.insert(key.clone(), service);
                        });
                    (retired, result)
                }
            }
        };
        stop_listeners(retired).await;
        result
    }

    /// Stops serving `namespace/name`: its listeners are closed when this returns; its
    /// established connections go on.
    pub(crate) async fn remove(&self, namespace: &str, name: &str) -> Result<()> {
        let removed = self
            .lock()
            .services
            .remove(&(namespace.to_string(), name.to_string()));
        if let Some(service) = removed {
            tracing::debug!(namespace, service = name, address = %service.address, "userspace proxy stopped serving");
            stop_listeners(service.into_listeners()).await;
        }
        Ok(())
    }

    /// Closes every listener and connection; later syncs are ignored.
    pub(crate) async fn shutdown(&self) {
        let listeners: Vec<Listener> = {
            let mut st = self.lock();
            st.stopped = true;
            st.services
                .drain()
                .flat_map(|(_, s)| s.into_listeners())
                .collect()
        };
        self.shutdown.cancel();
        stop_listeners(listeners).await;
    }

    /// Opens listeners for `service`'s new ports and retires those of ports it lost. A new
    /// port taken at its address moves the whole Service to another one.
    fn reconcile_ports(
        &self,
        st: &State,
        key: &Key,
        service: &mut ProxiedService,
        ports: &[u16],
    ) -> Vec<Listener> {
        let gone: Vec<u16> = service
            .listeners
            .keys()
            .copied()
            .filter(|p| !ports.contains(p))
            .collect();
        let mut retired: Vec<Listener> = gone
            .iter()
            .filter_map(|p| service.listeners.remove(p))
            .collect();
        service.refused.retain(|p| ports.contains(p));
        let new: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|p| !service.listeners.contains_key(p) && !service.refused.contains(p))
            .collect();
        if new.is_empty() {
            return retired;
        }
        match bind_ports(key, service.address, &new) {
            Ok((bound, refused)) => {
                service.refused.extend(refused);
                for (port, listener) in bound {
                    let l = self.spawn_listener(key, service, port, listener);
                    service.listeners.insert(port, l);
                }
            }
            Err(e) => {
                if let BindError::Other(e) = &e {
                    tracing::warn!(namespace = %key.0, service = %key.1, address = %service.address, error = %e,
                        "userspace proxy could not listen; moving the Service to another address");
                }
                let entry = service.backends.entry();
                match self.open(st, key, service.cluster_ip, &entry, ports) {
                    Ok(moved) => {
                        retired.extend(std::mem::replace(service, moved).into_listeners());
                    }
                    Err(e) => tracing::warn!(namespace = %key.0, service = %key.1, error = %e,
                        "userspace proxy keeps the Service's old ports only"),
                }
            }
        }
        retired
    }

    /// A newly served Service: an address where all its ports are free, and their listeners.
    fn open(
        &self,
        st: &State,
        key: &Key,
        cluster_ip: Ipv4Addr,
        entry: &ServiceEntry,
        ports: &[u16],
    ) -> Result<ProxiedService> {
        let held: HashSet<Ipv4Addr> = st.services.values().map(|s| s.address).collect();
        let candidates = preferred_address(cluster_ip)
            .into_iter()
            .chain((0..FALLBACK_ADDRESSES).filter_map(|n| self.fallback_address(cluster_ip, n)));
        let mut last_error = None;
        for address in candidates.filter(|a| !held.contains(a)) {
            match bind_ports(key, address, ports) {
                Ok((bound, refused)) => {
                    let mut service = ProxiedService {
                        cluster_ip,
                        address,
                        backends: Arc::new(Backends::new(entry.clone(), self.host_ranges.clone())),
                        listeners: HashMap::new(),
                        refused: refused.into_iter().collect(),
                    };
                    for (port, listener) in bound {
                        let l = self.spawn_listener(key, &service, port, listener);
                        service.listeners.insert(port, l);
                    }
                    tracing::debug!(namespace = %key.0, service = %key.1, %cluster_ip, %address, ?ports,
                        "userspace proxy serving");
                    return Ok(service);
                }
                Err(BindError::InUse) => continue,
                Err(BindError::Other(e)) => last_error = Some(e),
            }
        }
        Err(Error::Backend {
            context: format!(
                "userspace proxy: no address of {USERSPACE_PROXY_CIDR} has ports {ports:?} free \
                 for Service {}/{}",
                key.0, key.1
            ),
            source: last_error.map(|e| Box::new(e) as _),
        })
    }

    /// The `n`th other address tried for `cluster_ip`, spread over the range.
    fn fallback_address(&self, cluster_ip: Ipv4Addr, n: u64) -> Option<Ipv4Addr> {
        // Not the range's first and last addresses.
        let hosts = USERSPACE_PROXY_CIDR.size() - 2;
        USERSPACE_PROXY_CIDR.nth(1 + self.hasher.hash_one((cluster_ip, n)) % hosts)
    }

    fn spawn_listener(
        &self,
        key: &Key,
        service: &ProxiedService,
        port: u16,
        listener: TcpListener,
    ) -> Listener {
        let stop = self.shutdown.child_token();
        let span = tracing::debug_span!("userspace_proxy", namespace = %key.0, service = %key.1,
            address = %service.address, port);
        let task = tokio::spawn(
            serve(
                listener,
                port,
                service.backends.clone(),
                stop.clone(),
                self.shutdown.clone(),
            )
            .instrument(span),
        );
        Listener { stop, task }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for UserspaceProxy {
    fn drop(&mut self) {
        // A network dropped without `shutdown` (a cluster that keeps its workloads) still
        // frees its addresses for the next one.
        self.shutdown.cancel();
    }
}

impl ProxiedService {
    fn into_listeners(self) -> Vec<Listener> {
        self.listeners.into_values().collect()
    }
}

/// The address tried first for `cluster_ip`: its low 20 bits in [`USERSPACE_PROXY_CIDR`],
/// unless that is the range's first or last address.
fn preferred_address(cluster_ip: Ipv4Addr) -> Option<Ipv4Addr> {
    let host_bits = u32::from(cluster_ip) & (u32::MAX >> USERSPACE_PROXY_CIDR.prefix_len());
    let address = USERSPACE_PROXY_CIDR.nth(u64::from(host_bits))?;
    (address != USERSPACE_PROXY_CIDR.network() && address != USERSPACE_PROXY_CIDR.broadcast())
        .then_some(address)
}

/// Binds every one of `ports` at `address`, returning the listeners and the ports the OS
/// refused for lack of privilege (logged; another address would not help). Binding is
/// synchronous, so it can happen under the proxy's lock.
#[allow(clippy::type_complexity)]
fn bind_ports(
    key: &Key,
    address: Ipv4Addr,
    ports: &[u16],
) -> Result<(Vec<(u16, TcpListener)>, Vec<u16>), BindError> {
    let mut bound = Vec::new();
    let mut refused = Vec::new();
    for &port in ports {
        match bind(SocketAddr::from((address, port))) {
            Ok(l) => bound.push((port, l)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(BindError::InUse),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                tracing::warn!(namespace = %key.0, service = %key.1, %address, port, error = %e,
                    "userspace proxy cannot listen on this port without privilege: use a port \
                     of 1024 or more, or lower net.ipv4.ip_unprivileged_port_start");
                refused.push(port);
            }
            Err(e) => return Err(BindError::Other(e)),
        }
    }
    Ok((bound, refused))
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    // std's bind sets SO_REUSEADDR, as tokio's does, and returns at once.
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// Waits until every listener in `listeners` is closed.
async fn stop_listeners(listeners: Vec<Listener>) {
    for l in &listeners {
        l.stop.cancel();
    }
    for l in listeners {
        if let Err(e) = l.task.await {
            tracing::warn!(error = %e, "a userspace proxy listener ended with a panic");
        }
    }
}

/// Accepts connections on one service port until `stop`; each runs until it ends or
/// `connections` is cancelled (shutdown), whatever happens to the listener.
async fn serve(
    listener: TcpListener,
    port: u16,
    backends: Arc<Backends>,
    stop: CancellationToken,
    connections: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (client, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let backends = backends.clone();
        let connections = connections.clone();
        tokio::spawn(
            async move {
                tokio::select! {
                    _ = connections.cancelled() => {}
                    _ = forward(client, peer, port, &backends) => {}
                }
            }
            .in_current_span(),
        );
    }
}

/// Connects `client` to a ready endpoint of `port` and copies bytes both ways. A refused or
/// timed-out dial tries the next endpoint, as upstream's userspace proxy does.
async fn forward(mut client: TcpStream, peer: SocketAddr, port: u16, backends: &Backends) {
    for (attempt, timeout) in DIAL_TIMEOUTS.iter().enumerate() {
        let Some(endpoint) = backends.pick(port, peer.ip(), attempt > 0) else {
            tracing::debug!(client = %peer, "no ready endpoint; closing the connection");
            return;
        };
        let dialled = tokio::time::timeout(*timeout, TcpStream::connect(endpoint)).await;
        match dialled {
            Ok(Ok(mut upstream)) => {
                if let Err(e) = upstream.set_nodelay(true).and(client.set_nodelay(true)) {
                    tracing::debug!(error = %e, "could not set TCP_NODELAY");
                }
                match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    Ok((sent, received)) => {
                        tracing::trace!(client = %peer, %endpoint, sent, received, "connection done")
                    }
                    Err(e) => {
                        tracing::debug!(client = %peer, %endpoint, error = %e, "connection ended")
                    }
                }
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(%endpoint, error = %e, "endpoint refused; trying the next")
            }
            Err(_) => {
                tracing::debug!(%endpoint, ?timeout, "endpoint dial timed out; trying the next")
            }
        }
    }
    tracing::debug!(client = %peer, "no endpoint accepted the connection");
}
