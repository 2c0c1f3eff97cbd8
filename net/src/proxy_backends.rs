//! The endpoint choice of the userspace service proxy: round-robin over a service port's ready
//! endpoints, `sessionAffinity: ClientIP`, and where to dial an endpoint whose process listens
//! on the host's loopback.
//!
//! This is kube-proxy's old `LoadBalancerRR` (the userspace mode's load balancer): each
//! connection takes the next endpoint; with affinity, a client that connected within the
//! timeout goes back to the endpoint it had, while that endpoint stays ready.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Mutex, MutexGuard, PoisonError};

use kybernetes_core::ipam::Cidr;
use tokio::time::Instant;

use crate::ServiceEntry;

/// The latest entry of one service and the state of its endpoint choice, shared by the
/// service's listeners.
#[derive(Debug)]
pub(crate) struct Backends {
    /// Endpoint addresses in these ranges are bookkeeping only (the pod CIDR, the node
    /// addresses of [`LocalNetwork`](crate::LocalNetwork)): their processes listen on the
    /// host's loopback, so they are dialled at `127.0.0.1` on their target port.
    host_ranges: Vec<Cidr>,
    state: Mutex<BackendState>,
}

#[derive(Debug)]
struct BackendState {
    entry: ServiceEntry,
    /// Round-robin cursor per service port.
    cursors: HashMap<u16, usize>,
    /// With `sessionAffinity: ClientIP`: per service port and client, the endpoint it was
    /// sent to and when it last connected.
    affinity: HashMap<(u16, IpAddr), (IpAddr, Instant)>,
}

impl Backends {
    pub(crate) fn new(entry: ServiceEntry, host_ranges: Vec<Cidr>) -> Self {
        Backends {
            host_ranges,
            state: Mutex::new(BackendState {
                entry,
                cursors: HashMap::new(),
                affinity: HashMap::new(),
            }),
        }
    }

    /// Serves `entry` from the next connection on; cursors carry over, affinity entries that
    /// expired are dropped.
    pub(crate) fn update(&self, entry: ServiceEntry) {
        let mut st = self.lock();
        if let Some(timeout) = entry.session_affinity {
            st.affinity.retain(|_, (_, last)| last.elapsed() < timeout);
        } else {
            st.affinity.clear();
        }
        st.entry = entry;
    }

    /// The entry being served.
    pub(crate) fn entry(&self) -> ServiceEntry {
        self.lock().entry.clone()
    }

    /// The address to dial for the next connection from `client` to service port `port`, or
    /// `None` if the port has no ready endpoint. `reset` ignores the client's affinity, for a
    /// retry after its endpoint refused (as upstream's `sessionAffinityReset`).
    pub(crate) fn pick(&self, port: u16, client: IpAddr, reset: bool) -> Option<SocketAddr> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let service_port = st
            .entry
            .ports
            .iter()
            .find(|p| p.port == port && p.protocol.eq_ignore_ascii_case("TCP"))?;
        let endpoints: Vec<(IpAddr, u16)> = st
            .entry
            .endpoints_for(service_port)
            .map(|(e, target)| (e.ip, target))
            .collect();
        if endpoints.is_empty() {
            return None;
        }
        let now = Instant::now();
        let affinity = st.entry.session_affinity;
        if let Some(timeout) = affinity
            && !reset
            && let Some((ip, last)) = st.affinity.get_mut(&(port, client))
            && now.duration_since(*last) < timeout
            && let Some(&(ip, target)) = endpoints.iter().find(|(e, _)| e == ip)
        {
            *last = now;
            return Some(self.dial_address(ip, target));
        }
        let cursor = st.cursors.entry(port).or_default();
        let (ip, target) = endpoints[*cursor % endpoints.len()];
        *cursor = cursor.wrapping_add(1);
        if affinity.is_some() {
            st.affinity.insert((port, client), (ip, now));
        }
        Some(self.dial_address(ip, target))
    }

    /// Where an endpoint `ip` serving on `port` accepts connections.
    fn dial_address(&self, ip: IpAddr, port: u16) -> SocketAddr {
        if self.host_ranges.iter().any(|r| r.contains(ip)) {
            SocketAddr::from((Ipv4Addr::LOCALHOST, port))
        } else {
            SocketAddr::new(ip, port)
        }
    }

    fn lock(&self) -> MutexGuard<'_, BackendState> {
        // Every critical section leaves the state consistent, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{Endpoint, ServicePort};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn entry(endpoints: &[&str]) -> ServiceEntry {
        ServiceEntry::new("default", "web", Some(ip("10.96.0.20")))
            .with_ports(vec![ServicePort::tcp("http", 80, 8080)])
            .with_endpoints(endpoints.iter().map(|e| Endpoint::new(ip(e))).collect())
    }

    fn pod_cidr() -> Vec<Cidr> {
        vec!["10.244.0.0/16".parse().unwrap()]
    }

    #[test]
    fn round_robin_dials_pod_ips_on_loopback_and_others_directly() {
        let backends = Backends::new(entry(&["10.244.0.2", "192.0.2.7"]), pod_cidr());
        let client = ip("127.0.0.1");
        let picks: Vec<_> = (0..4)
            .map(|_| backends.pick(80, client, false).unwrap().to_string())
            .collect();
        assert_eq!(
            picks,
            [
                "127.0.0.1:8080",
                "192.0.2.7:8080",
                "127.0.0.1:8080",
                "192.0.2.7:8080"
            ]
        );
        assert_eq!(backends.pick(81, client, false), None, "not a service port");
        backends.update(entry(&[]));
        assert_eq!(backends.pick(80, client, false), None, "no ready endpoint");
    }

    #[tokio::test(start_paused = true)]
    async fn client_ip_affinity_keeps_a_client_on_its_endpoint_until_the_timeout() {
        let mut e = entry(&["192.0.2.1", "192.0.2.2"]);
        e.session_affinity = Some(Duration::from_secs(10));
        let backends = Backends::new(e.clone(), vec![]);
        let (a, b) = (ip("127.0.0.1"), ip("127.0.0.2"));
        let first = backends.pick(80, a, false).unwrap();
        assert_eq!(backends.pick(80, a, false), Some(first));
        let reset = backends.pick(80, a, true);
        assert_ne!(reset, Some(first), "a reset ignores affinity");
        assert_eq!(
            backends.pick(80, a, false),
            reset,
            "and pins the client anew"
        );
        assert_ne!(
            backends.pick(80, b, false),
            reset,
            "another client moves on"
        );
        tokio::time::advance(Duration::from_secs(11)).await;
        let after = backends.pick(80, a, false).unwrap();
        // The endpoint a client was pinned to going away sends it elsewhere.
        let keep = if after.ip() == ip("192.0.2.1") {
            "192.0.2.2"
        } else {
            "192.0.2.1"
        };
        let mut fewer = entry(&[keep]);
        fewer.session_affinity = e.session_affinity;
        backends.update(fewer);
        assert_eq!(backends.pick(80, a, false).map(|s| s.ip()), Some(ip(keep)));
    }
}
