//! IP address management: IPv4 [`Cidr`]s and the allocators built on them.
//!
//! - [`IpAllocator`] hands out addresses of one CIDR (Service ClusterIPs from `10.96.0.0/12`,
//!   pod IPs from a node's `/24`);
//! - [`PortAllocator`] hands out ports of an inclusive range (NodePorts `30000–32767`);
//! - [`SubnetAllocator`] splits a cluster CIDR into per-node subnets (a `/24` per node from
//!   `10.244.0.0/16`), as the node IPAM controller's `cidrset` does.
//!
//! Every allocator searches for the next free value *after the last one it handed out*,
//! wrapping at the end of its range. A value that was just released therefore goes to the back
//! of the queue instead of being reused at once, as upstream's allocators avoid immediate reuse
//! (a stale DNS answer or a conntrack entry never points at a newcomer straight away).
//!
//! The allocators keep state in memory only. After a restart, rebuild them from the objects
//! that hold addresses with `mark_used`.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// Errors from parsing CIDRs and from the allocators.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The text is not `a.b.c.d/prefix`.
    #[error("invalid CIDR {input:?}: {reason}")]
    InvalidCidr {
        /// The text that failed to parse.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The address part of a CIDR is not an IPv4 address.
    #[error("invalid CIDR {input:?}")]
    InvalidAddress {
        /// The text that failed to parse.
        input: String,
        /// The parse failure.
        #[source]
        source: std::net::AddrParseError,
    },
    /// An allocator was asked for a range it cannot hold.
    #[error("invalid range: {0}")]
    InvalidRange(String),
    /// The value lies outside the allocator's range.
    #[error("{value} is not in the range {range}")]
    OutOfRange {
        /// The address, port or subnet asked for.
        value: String,
        /// The allocator's range.
        range: String,
    },
    /// The value is in range but never handed out (network, broadcast or gateway address).
    #[error("{value} is reserved in {range}")]
    Reserved {
        /// The address asked for.
        value: String,
        /// The allocator's range.
        range: String,
    },
    /// The value is already allocated.
    #[error("{value} is already allocated")]
    AlreadyAllocated {
        /// The address, port or subnet asked for.
        value: String,
    },
}

/// `Result` with the IPAM [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An IPv4 network in CIDR notation, such as `10.244.0.0/16`.
///
/// Parsing masks off host bits, as upstream's `ParseCIDR` does, so `10.244.1.7/24` is the
/// network `10.244.1.0/24`.
///
/// ```
/// use kybernetes_core::ipam::Cidr;
/// use std::net::Ipv4Addr;
///
/// let pods: Cidr = "10.244.0.0/16".parse()?;
/// assert!(pods.contains(Ipv4Addr::new(10, 244, 3, 7)));
/// assert!(!pods.contains(Ipv4Addr::new(10, 245, 0, 1)));
/// assert_eq!(pods.nth(258), Some(Ipv4Addr::new(10, 244, 1, 2)));
/// assert_eq!(pods.subnet(24, 1).map(|c| c.to_string()).as_deref(), Some("10.244.1.0/24"));
/// assert_eq!(pods.subnets(24)?.count(), 256);
/// # Ok::<(), kybernetes_core::ipam::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    network: u32,
    prefix: u8,
}

impl Cidr {
    /// The network that holds `addr` with a `prefix`-bit mask (host bits are masked off).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self> {
        if prefix > 32 {
            return Err(Error::InvalidCidr {
                input: format!("{addr}/{prefix}"),
                reason: "prefix length must be at most 32".into(),
            });
        }
        Ok(Cidr {
            network: u32::from(addr) & mask(prefix),
            prefix,
        })
    }

    /// The `const` form of [`Cidr::new`], for constants: `None` if `prefix > 32`.
    ///
    /// ```
    /// use kybernetes_core::ipam::Cidr;
    ///
    /// const SERVICES: Option<Cidr> = Cidr::from_octets([10, 96, 0, 0], 12);
    /// assert_eq!(SERVICES.map(|c| c.to_string()).as_deref(), Some("10.96.0.0/12"));
    /// ```
    pub const fn from_octets(octets: [u8; 4], prefix: u8) -> Option<Cidr> {
        if prefix > 32 {
            return None;
        }
        Some(Cidr {
            network: u32::from_be_bytes(octets) & mask(prefix),
            prefix,
        })
    }

    /// The network address (`10.244.0.0` for `10.244.0.0/16`).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    /// The prefix length (`16` for `10.244.0.0/16`).
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// How many addresses the network holds, network and broadcast included.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The last address of the network (`10.244.255.255` for `10.244.0.0/16`).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network | !mask(self.prefix))
    }

    /// Whether `ip` lies inside the network. IPv6 addresses never do.
    pub fn contains(&self, ip: impl Into<IpAddr>) -> bool {
        match ip.into() {
            IpAddr::V4(v4) => u32::from(v4) & mask(self.prefix) == self.network,
            IpAddr::V6(_) => false,
        }
    }

    /// Whether `other` lies wholly inside this network.
    pub fn contains_cidr(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.network())
    }

    /// The address `n` places after the network address, if it is inside the network
    /// (`nth(0)` is the network address, `nth(1)` the first host).
    pub fn nth(&self, n: u64) -> Option<Ipv4Addr> {
        if n >= self.size() {
            return None;
        }
        u32::try_from(n)
            .ok()
            .map(|n| Ipv4Addr::from(self.network + n))
    }

    /// How far `ip` lies from the network address, if it is inside the network.
    pub fn offset_of(&self, ip: impl Into<IpAddr>) -> Option<u32> {
        match ip.into() {
            IpAddr::V4(v4) if self.contains(v4) => Some(u32::from(v4) - self.network),
            _ => None,
        }
    }

    /// How many subnets of length `prefix` the network splits into.
    pub fn subnet_count(&self, prefix: u8) -> Result<u64> {
        if prefix < self.prefix || prefix > 32 {
            return Err(Error::InvalidRange(format!(
                "{self} cannot be split into /{prefix} subnets"
            )));
        }
        Ok(1u64 << (prefix - self.prefix))
    }

    /// The `index`-th subnet of length `prefix` (`10.244.0.0/16` split into `/24`s: index 1 is
    /// `10.244.1.0/24`), if there is one.
    pub fn subnet(&self, prefix: u8, index: u64) -> Option<Cidr> {
        let count = self.subnet_count(prefix).ok()?;
        if index >= count {
            return None;
        }
        let step = 1u64 << (32 - u32::from(prefix));
        let network = u32::try_from(u64::from(self.network) + index * step).ok()?;
        Some(Cidr { network, prefix })
    }

    /// Every subnet of length `prefix`, in address order.
    pub fn subnets(&self, prefix: u8) -> Result<impl Iterator<Item = Cidr> + use<>> {
        let count = self.subnet_count(prefix)?;
        let this = *self;
        Ok((0..count).filter_map(move |i| this.subnet(prefix, i)))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidCidr {
            input: s.to_string(),
            reason: reason.into(),
        };
        let (addr, prefix) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| invalid("missing /prefix"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|source| Error::InvalidAddress {
            input: s.to_string(),
            source,
        })?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| invalid("prefix length is not a number"))?;
        if prefix > 32 {
            return Err(invalid("prefix length must be at most 32"));
        }
        Cidr::new(addr, prefix)
    }
}

const fn mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p if p >= 32 => u32::MAX,
        p => u32::MAX << (32 - p as u32),
    }
}

/// The shared search: a set of used values in an inclusive range `lo..=hi` and the last value
/// handed out. The next allocation is the first free value after `last`, wrapping around.
#[derive(Clone, Debug)]
struct Ring {
    lo: u32,
    hi: u32,
    used: BTreeSet<u32>,
    last: Option<u32>,
}

impl Ring {
    /// A ring over `lo..=hi`; empty when `lo > hi`.
    fn new(lo: u32, hi: u32) -> Self {
        Ring {
            lo,
            hi,
            used: BTreeSet::new(),
            last: None,
        }
    }

    fn in_range(&self, v: u32) -> bool {
        self.lo <= v && v <= self.hi
    }

    fn capacity(&self) -> u64 {
        if self.lo > self.hi {
            0
        } else {
            u64::from(self.hi - self.lo) + 1
        }
    }

    fn free(&self) -> u64 {
        self.capacity() - self.used.len() as u64
    }

    fn next_free(&self) -> Option<u32> {
        if self.lo > self.hi {
            return None;
        }
        let start = match self.last {
            Some(l) if self.lo <= l && l < self.hi => l + 1,
            _ => self.lo,
        };
        first_gap(&self.used, start, self.hi).or_else(|| {
            if start > self.lo {
                first_gap(&self.used, self.lo, start - 1)
            } else {
                None
            }
        })
    }

    fn allocate(&mut self) -> Option<u32> {
        let v = self.next_free()?;
        self.used.insert(v);
        self.last = Some(v);
        Some(v)
    }
}

/// The first value in `from..=to` missing from `used`.
fn first_gap(used: &BTreeSet<u32>, from: u32, to: u32) -> Option<u32> {
    let mut candidate = from;
    for &u in used.range(from..=to) {
        if u != candidate {
            break;
        }
        if candidate == to {
            return None;
        }
        candidate += 1;
    }
    Some(candidate)
}

/// Hands out the addresses of one IPv4 [`Cidr`].
///
/// The network and broadcast addresses are never handed out (for `/31` and `/32` every address
/// is usable). [`IpAllocator::for_pod_subnet`] also keeps the first host, the bridge gateway.
///
/// ```
/// use kybernetes_core::ipam::IpAllocator;
/// use std::net::{IpAddr, Ipv4Addr};
///
/// // Service ClusterIPs; 10.96.0.1 belongs to the `kubernetes` service.
/// let mut services = IpAllocator::new("10.96.0.0/12".parse()?);
/// services.allocate_specific(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1)))?;
/// let ip = services.allocate().unwrap();
/// assert_eq!(ip, IpAddr::V4(Ipv4Addr::new(10, 96, 0, 2)));
///
/// // A released address is not handed out again straight away.
/// assert!(services.release(ip));
/// assert_eq!(services.allocate(), Some(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 3))));
/// # Ok::<(), kybernetes_core::ipam::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct IpAllocator {
    cidr: Cidr,
    ring: Ring,
}

impl IpAllocator {
    /// An allocator over `cidr` that keeps back the network and broadcast addresses.
    pub fn new(cidr: Cidr) -> Self {
        Self::with_reserved_hosts(cidr, 0)
    }

    /// An allocator for a node's pod subnet: like [`IpAllocator::new`], and the first host
    /// (`.1` of a `/24`) stays reserved for the gateway.
    ///
    /// ```
    /// use kybernetes_core::ipam::IpAllocator;
    /// use std::net::{IpAddr, Ipv4Addr};
    ///
    /// let mut node = IpAllocator::for_pod_subnet("10.244.1.0/24".parse()?);
    /// assert_eq!(node.allocate(), Some(IpAddr::V4(Ipv4Addr::new(10, 244, 1, 2))));
    /// assert_eq!(node.capacity(), 253);
    /// # Ok::<(), kybernetes_core::ipam::Error>(())
    /// ```
    pub fn for_pod_subnet(cidr: Cidr) -> Self {
        Self::with_reserved_hosts(cidr, 1)
    }

    fn with_reserved_hosts(cidr: Cidr, reserved: u32) -> Self {
        let last = u32::try_from(cidr.size() - 1).unwrap_or(u32::MAX);
        let (lo, hi) = if cidr.prefix_len() >= 31 {
            (0, last)
        } else {
            (1, last - 1)
        };
        // An empty ring has lo > hi; `lo + reserved` cannot overflow since lo <= 1.
        IpAllocator {
            cidr,
            ring: Ring::new(lo + reserved, hi),
        }
    }

    /// The range this allocator hands out from.
    pub fn cidr(&self) -> Cidr {
        self.cidr
    }

    /// The next free address after the last one handed out, or `None` when the range is full.
    pub fn allocate(&mut self) -> Option<IpAddr> {
        self.ring.allocate().and_then(|o| self.addr(o))
    }

    /// Takes `ip` if it is in range, not reserved and free.
    pub fn allocate_specific(&mut self, ip: IpAddr) -> Result<()> {
        let o = self.usable_offset(ip)?;
        if !self.ring.used.insert(o) {
            return Err(Error::AlreadyAllocated {
                value: ip.to_string(),
            });
        }
        Ok(())
    }

    /// Marks `ip` as in use, whether or not it already was (for rebuilding state after a
    /// restart from the objects that hold addresses).
    pub fn mark_used(&mut self, ip: IpAddr) -> Result<()> {
        let o = self.usable_offset(ip)?;
        self.ring.used.insert(o);
        Ok(())
    }

    /// Gives `ip` back; returns whether it was allocated.
    pub fn release(&mut self, ip: IpAddr) -> bool {
        match self.cidr.offset_of(ip) {
            Some(o) if self.ring.in_range(o) => self.ring.used.remove(&o),
            _ => false,
        }
    }

    /// Whether `ip` is currently allocated.
    pub fn is_allocated(&self, ip: IpAddr) -> bool {
        self.cidr
            .offset_of(ip)
            .is_some_and(|o| self.ring.used.contains(&o))
    }

    /// How many addresses are allocated.
    pub fn used(&self) -> usize {
        self.ring.used.len()
    }

    /// How many addresses are still free.
    pub fn free(&self) -> u64 {
        self.ring.free()
    }

    /// How many addresses the allocator can hand out in all.
    pub fn capacity(&self) -> u64 {
        self.ring.capacity()
    }

    fn addr(&self, offset: u32) -> Option<IpAddr> {
        self.cidr.nth(u64::from(offset)).map(IpAddr::V4)
    }

    fn usable_offset(&self, ip: IpAddr) -> Result<u32> {
        let o = self.cidr.offset_of(ip).ok_or_else(|| Error::OutOfRange {
            value: ip.to_string(),
            range: self.cidr.to_string(),
        })?;
        if !self.ring.in_range(o) {
            return Err(Error::Reserved {
                value: ip.to_string(),
                range: self.cidr.to_string(),
            });
        }
        Ok(o)
    }
}

/// Hands out ports of an inclusive range, such as the NodePort range `30000–32767`.
///
/// ```
/// use kybernetes_core::ipam::PortAllocator;
///
/// let mut node_ports = PortAllocator::new(30000, 32767)?;
/// node_ports.allocate_specific(30080)?;
/// assert_eq!(node_ports.allocate(), Some(30000));
/// assert!(node_ports.allocate_specific(30080).is_err());
/// assert_eq!(node_ports.capacity(), 2768);
/// # Ok::<(), kybernetes_core::ipam::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct PortAllocator {
    ring: Ring,
}

impl PortAllocator {
    /// An allocator over `first..=last`.
    pub fn new(first: u16, last: u16) -> Result<Self> {
        if first > last {
            return Err(Error::InvalidRange(format!(
                "port range {first}-{last} is empty"
            )));
        }
        Ok(PortAllocator {
            ring: Ring::new(u32::from(first), u32::from(last)),
        })
    }

    /// The inclusive range this allocator hands out from.
    pub fn range(&self) -> (u16, u16) {
        (to_port(self.ring.lo), to_port(self.ring.hi))
    }

    /// The next free port after the last one handed out, or `None` when the range is full.
    pub fn allocate(&mut self) -> Option<u16> {
        self.ring.allocate().map(to_port)
    }

    /// Takes `port` if it is in range and free.
    pub fn allocate_specific(&mut self, port: u16) -> Result<()> {
        self.check(port)?;
        if !self.ring.used.insert(u32::from(port)) {
            return Err(Error::AlreadyAllocated {
                value: port.to_string(),
            });
        }
        Ok(())
    }

    /// Marks `port` as in use, whether or not it already was.
    pub fn mark_used(&mut self, port: u16) -> Result<()> {
        self.check(port)?;
        self.ring.used.insert(u32::from(port));
        Ok(())
    }

    /// Gives `port` back; returns whether it was allocated.
    pub fn release(&mut self, port: u16) -> bool {
        self.ring.used.remove(&u32::from(port))
    }

    /// Whether `port` is currently allocated.
    pub fn is_allocated(&self, port: u16) -> bool {
        self.ring.used.contains(&u32::from(port))
    }

    /// How many ports are allocated.
    pub fn used(&self) -> usize {
        self.ring.used.len()
    }

    /// How many ports are still free.
    pub fn free(&self) -> u64 {
        self.ring.free()
    }

    /// How many ports the range holds.
    pub fn capacity(&self) -> u64 {
        self.ring.capacity()
    }

    fn check(&self, port: u16) -> Result<()> {
        if self.ring.in_range(u32::from(port)) {
            Ok(())
        } else {
            let (lo, hi) = self.range();
            Err(Error::OutOfRange {
                value: port.to_string(),
                range: format!("{lo}-{hi}"),
            })
        }
    }
}

fn to_port(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// Splits a cluster CIDR into equal subnets and hands one to each node, as the node IPAM
/// controller's `cidrset` does.
///
/// ```
/// use kybernetes_core::ipam::SubnetAllocator;
///
/// let mut nodes = SubnetAllocator::new("10.244.0.0/16".parse()?, 24)?;
/// let first = nodes.allocate().unwrap();
/// let second = nodes.allocate().unwrap();
/// assert_eq!(first.to_string(), "10.244.0.0/24");
/// assert_eq!(second.to_string(), "10.244.1.0/24");
/// assert_eq!(nodes.capacity(), 256);
/// # Ok::<(), kybernetes_core::ipam::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SubnetAllocator {
    cluster: Cidr,
    subnet_prefix: u8,
    ring: Ring,
}

impl SubnetAllocator {
    /// An allocator of `/subnet_prefix` subnets of `cluster`.
    pub fn new(cluster: Cidr, subnet_prefix: u8) -> Result<Self> {
        let count = cluster.subnet_count(subnet_prefix)?;
        let hi = u32::try_from(count - 1).unwrap_or(u32::MAX);
        Ok(SubnetAllocator {
            cluster,
            subnet_prefix,
            ring: Ring::new(0, hi),
        })
    }

    /// The cluster CIDR being split.
    pub fn cluster_cidr(&self) -> Cidr {
        self.cluster
    }

    /// The prefix length of each subnet.
    pub fn subnet_prefix(&self) -> u8 {
        self.subnet_prefix
    }

    /// The next free subnet after the last one handed out, or `None` when all are taken.
    pub fn allocate(&mut self) -> Option<Cidr> {
        self.ring
            .allocate()
            .and_then(|i| self.cluster.subnet(self.subnet_prefix, u64::from(i)))
    }

    /// Takes `subnet` if it is one of this allocator's subnets and free.
    pub fn allocate_specific(&mut self, subnet: Cidr) -> Result<()> {
        let i = self.index_of(&subnet)?;
        if !self.ring.used.insert(i) {
            return Err(Error::AlreadyAllocated {
                value: subnet.to_string(),
            });
        }
        Ok(())
    }

    /// Marks `subnet` as in use, whether or not it already was.
    pub fn mark_used(&mut self, subnet: Cidr) -> Result<()> {
        let i = self.index_of(&subnet)?;
        self.ring.used.insert(i);
        Ok(())
    }

    /// Gives `subnet` back; returns whether it was allocated.
    pub fn release(&mut self, subnet: Cidr) -> bool {
        self.index_of(&subnet)
            .is_ok_and(|i| self.ring.used.remove(&i))
    }

    /// Whether `subnet` is currently allocated.
    pub fn is_allocated(&self, subnet: Cidr) -> bool {
        self.index_of(&subnet)
            .is_ok_and(|i| self.ring.used.contains(&i))
    }

    /// How many subnets are allocated.
    pub fn used(&self) -> usize {
        self.ring.used.len()
    }

    /// How many subnets are still free.
    pub fn free(&self) -> u64 {
        self.ring.free()
    }

    /// How many subnets the cluster CIDR splits into.
    pub fn capacity(&self) -> u64 {
        self.ring.capacity()
    }

    fn index_of(&self, subnet: &Cidr) -> Result<u32> {
        if subnet.prefix_len() != self.subnet_prefix || !self.cluster.contains_cidr(subnet) {
            return Err(Error::OutOfRange {
                value: subnet.to_string(),
                range: format!("/{} subnets of {}", self.subnet_prefix, self.cluster),
            });
        }
        let offset = u32::from(subnet.network()) - u32::from(self.cluster.network());
        Ok(offset
            .checked_shr(32 - u32::from(self.subnet_prefix))
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parses_and_masks_host_bits() {
        let c = cidr("10.244.1.7/24");
        assert_eq!(c.to_string(), "10.244.1.0/24");
        assert_eq!(c.size(), 256);
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 244, 1, 255));
        assert_eq!(cidr("0.0.0.0/0").size(), 1 << 32);
        assert_eq!(cidr("10.0.0.1/32").broadcast(), Ipv4Addr::new(10, 0, 0, 1));
    }

    #[test]
    fn cidr_rejects_malformed_text() {
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/8",
            "10.0.0.0/x",
            "::1/64",
            "",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn cidr_contains_only_its_own_addresses() {
        let c = cidr("10.96.0.0/12");
        assert!(c.contains(v4(10, 96, 0, 1)));
        assert!(c.contains(v4(10, 111, 255, 255)));
        assert!(!c.contains(v4(10, 112, 0, 0)));
        assert!(!c.contains("::1".parse::<IpAddr>().unwrap()));
        assert!(c.contains_cidr(&cidr("10.100.0.0/16")));
        assert!(!c.contains_cidr(&cidr("10.0.0.0/8")));
    }

    #[test]
    fn cidr_nth_stays_inside_the_network() {
        let c = cidr("10.244.1.0/24");
        assert_eq!(c.nth(0), Some(Ipv4Addr::new(10, 244, 1, 0)));
        assert_eq!(c.nth(255), Some(Ipv4Addr::new(10, 244, 1, 255)));
        assert_eq!(c.nth(256), None);
    }

    #[test]
    fn cidr_splits_into_subnets_in_address_order() {
        let c = cidr("10.244.0.0/16");
        let subnets: Vec<_> = c.subnets(24).unwrap().collect();
        assert_eq!(subnets.len(), 256);
        assert_eq!(subnets[255].to_string(), "10.244.255.0/24");
        assert!(c.subnets(8).is_err());
        assert!(c.subnets(33).is_err());
        assert_eq!(c.subnet(24, 256), None);
    }

    #[test]
    fn ip_allocator_never_hands_out_network_or_broadcast() {
        let mut a = IpAllocator::new(cidr("10.0.0.0/29"));
        let got: Vec<_> = std::iter::from_fn(|| a.allocate()).collect();
        assert_eq!(got, (1..=6).map(|d| v4(10, 0, 0, d)).collect::<Vec<_>>());
        assert_eq!(a.free(), 0);
        assert!(matches!(
            a.allocate_specific(v4(10, 0, 0, 0)),
            Err(Error::Reserved { .. })
        ));
        assert!(matches!(
            a.allocate_specific(v4(10, 0, 0, 7)),
            Err(Error::Reserved { .. })
        ));
        assert!(matches!(
            a.allocate_specific(v4(10, 0, 0, 8)),
            Err(Error::OutOfRange { .. })
        ));
    }

    #[test]
    fn pod_subnet_allocator_keeps_the_gateway() {
        let mut a = IpAllocator::for_pod_subnet(cidr("10.244.3.0/24"));
        assert_eq!(a.capacity(), 253);
        assert!(matches!(
            a.allocate_specific(v4(10, 244, 3, 1)),
            Err(Error::Reserved { .. })
        ));
        let all: Vec<_> = std::iter::from_fn(|| a.allocate()).collect();
        assert_eq!(all.len(), 253);
        assert!(!all.contains(&v4(10, 244, 3, 1)));
        assert_eq!(a.allocate(), None);
    }

    #[test]
    fn released_address_goes_to_the_back_of_the_queue() {
        let mut a = IpAllocator::new(cidr("10.0.0.0/29"));
        let first = a.allocate().unwrap();
        let second = a.allocate().unwrap();
        assert!(a.release(first));
        assert_eq!(a.allocate(), Some(v4(10, 0, 0, 3)));
        assert!(a.release(second));
        // The cursor moves on through 4, 5, 6 before wrapping back to the released ones.
        assert_eq!(a.allocate(), Some(v4(10, 0, 0, 4)));
        assert_eq!(a.allocate(), Some(v4(10, 0, 0, 5)));
        assert_eq!(a.allocate(), Some(v4(10, 0, 0, 6)));
        assert_eq!(a.allocate(), Some(first));
        assert_eq!(a.allocate(), Some(second));
        assert_eq!(a.allocate(), None);
    }

    #[test]
    fn specific_allocation_is_exclusive_and_release_frees_it() {
        let mut a = IpAllocator::new(cidr("10.96.0.0/12"));
        a.allocate_specific(v4(10, 96, 0, 10)).unwrap();
        assert!(matches!(
            a.allocate_specific(v4(10, 96, 0, 10)),
            Err(Error::AlreadyAllocated { .. })
        ));
        assert!(a.is_allocated(v4(10, 96, 0, 10)));
        assert!(a.release(v4(10, 96, 0, 10)));
        assert!(!a.release(v4(10, 96, 0, 10)));
        assert!(!a.release(v4(192, 168, 0, 1)));
        a.allocate_specific(v4(10, 96, 0, 10)).unwrap();
    }

    #[test]
    fn allocate_skips_addresses_taken_specifically() {
        let mut a = IpAllocator::new(cidr("10.96.0.0/12"));
        a.allocate_specific(v4(10, 96, 0, 1)).unwrap();
        a.allocate_specific(v4(10, 96, 0, 2)).unwrap();
        assert_eq!(a.allocate(), Some(v4(10, 96, 0, 3)));
        assert_eq!(a.capacity(), (1 << 20) - 2);
    }

    #[test]
    fn mark_used_rebuilds_state_idempotently() {
        let mut a = IpAllocator::new(cidr("10.0.0.0/30"));
        a.mark_used(v4(10, 0, 0, 1)).unwrap();
        a.mark_used(v4(10, 0, 0, 1)).unwrap();
        assert_eq!(a.used(), 1);
        assert_eq!(a.allocate(), Some(v4(10, 0, 0, 2)));
        assert_eq!(a.allocate(), None);
        assert!(a.mark_used(v4(10, 0, 1, 1)).is_err());
    }

    #[test]
    fn tiny_networks_use_every_address() {
        let mut a = IpAllocator::new(cidr("10.0.0.4/31"));
        assert_eq!(a.capacity(), 2);
        assert_eq!(a.allocate(), Some(v4(10, 0, 0, 4)));
        let mut b = IpAllocator::for_pod_subnet(cidr("10.0.0.9/32"));
        assert_eq!(b.capacity(), 0);
        assert_eq!(b.allocate(), None);
    }

    #[test]
    fn port_allocator_round_robins_the_node_port_range() {
        let mut p = PortAllocator::new(30000, 30002).unwrap();
        assert_eq!(p.allocate(), Some(30000));
        assert_eq!(p.allocate(), Some(30001));
        assert!(p.release(30000));
        assert_eq!(p.allocate(), Some(30002));
        assert_eq!(p.allocate(), Some(30000));
        assert_eq!(p.allocate(), None);
        assert!(matches!(
            p.allocate_specific(29999),
            Err(Error::OutOfRange { .. })
        ));
        assert!(matches!(
            p.allocate_specific(30001),
            Err(Error::AlreadyAllocated { .. })
        ));
        assert!(PortAllocator::new(2, 1).is_err());
        let full = PortAllocator::new(0, u16::MAX).unwrap();
        assert_eq!(full.capacity(), 65536);
        assert_eq!(full.range(), (0, u16::MAX));
    }

    #[test]
    fn subnet_allocator_gives_each_node_a_distinct_subnet() {
        let mut s = SubnetAllocator::new(cidr("10.244.0.0/16"), 24).unwrap();
        let a = s.allocate().unwrap();
        let b = s.allocate().unwrap();
        assert_ne!(a, b);
        assert!(s.release(a));
        assert_eq!(s.allocate().unwrap().to_string(), "10.244.2.0/24");
        assert!(s.is_allocated(b));
        assert!(matches!(
            s.allocate_specific(b),
            Err(Error::AlreadyAllocated { .. })
        ));
        assert!(s.allocate_specific(cidr("10.245.0.0/24")).is_err());
        assert!(s.allocate_specific(cidr("10.244.0.0/25")).is_err());
        s.mark_used(cidr("10.244.200.0/24")).unwrap();
        assert_eq!(s.used(), 3);
        assert_eq!(s.free(), 253);
        assert!(SubnetAllocator::new(cidr("10.244.0.0/16"), 8).is_err());
    }

    #[test]
    fn subnet_allocator_runs_out_and_says_so() {
        let mut s = SubnetAllocator::new(cidr("10.244.0.0/23"), 24).unwrap();
        assert!(s.allocate().is_some());
        assert!(s.allocate().is_some());
        assert_eq!(s.allocate(), None);
    }
}
