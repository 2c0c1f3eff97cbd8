//! ClusterIP and NodePort allocation for Services, done by the API server as upstream's
//! service registry does: the address is in the response to the create.

use std::net::IpAddr;
use std::sync::Mutex;

use kybernetes_core::ipam::{Cidr, IpAllocator, PortAllocator};
use kybernetes_core::{ApiError, ClusterConfig};
use serde_json::{Value, json};

/// The address the `kubernetes` service gets: the first of the service range.
pub fn kubernetes_service_ip(config: &ClusterConfig) -> Option<IpAddr> {
    let cidr: Cidr = config.service_cidr.parse().ok()?;
    cidr.nth(1).map(IpAddr::V4)
}

/// Allocators for service ClusterIPs and NodePorts.
#[derive(Debug)]
pub struct ServiceAllocator {
    ips: Mutex<ClusterIps>,
    ports: Mutex<PortAllocator>,
}

/// The ClusterIP allocator, with the cluster DNS address held back: no Service gets it by
/// dynamic allocation, and the first to ask for it by `spec.clusterIP` (the cluster's own
/// `kube-system/kube-dns`, created at start) takes it. Every node agent writes that
/// address into every pod's `resolv.conf` before any Service holds it, so handing it to
/// another Service would send the pods' DNS queries there. (Upstream keeps the low part of
/// the range, where kubeadm's `10.96.0.10` is, for static addresses the same way; here
/// the one address that matters is kept whatever the range's size.)
#[derive(Debug)]
struct ClusterIps {
    alloc: IpAllocator,
    /// The cluster DNS address, if it is in the range.
    reserved: Option<IpAddr>,
    /// Whether a Service holds the reserved address.
    reserved_taken: bool,
}

impl ClusterIps {
    fn new(cidr: Cidr, reserved: Option<IpAddr>) -> Self {
        let mut alloc = IpAllocator::new(cidr);
        // Marked used, so `allocate` skips it; an address outside the range (or the
        // network address) is one no Service can hold anyway.
        let reserved = reserved.filter(|ip| alloc.mark_used(*ip).is_ok());
        ClusterIps {
            alloc,
            reserved,
            reserved_taken: false,
        }
    }

    fn allocate(&mut self) -> Option<IpAddr> {
        self.alloc.allocate()
    }

    fn allocate_specific(&mut self, ip: IpAddr) -> Result<(), kybernetes_core::ipam::Error> {
        if self.reserved != Some(ip) {
            return self.alloc.allocate_specific(ip);
        }
        if self.reserved_taken {
            return Err(kybernetes_core::ipam::Error::AlreadyAllocated {
                value: ip.to_string(),
            });
        }
        self.reserved_taken = true;
        Ok(())
    }

    fn mark_used(&mut self, ip: IpAddr) -> Result<(), kybernetes_core::ipam::Error> {
        if self.reserved == Some(ip) {
            self.reserved_taken = true;
            return Ok(());
        }
        self.alloc.mark_used(ip)
    }

    /// Gives `ip` back; the reserved address stays out of dynamic allocation.
    fn release(&mut self, ip: IpAddr) {
        if self.reserved == Some(ip) {
            self.reserved_taken = false;
        } else {
            self.alloc.release(ip);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn invalid(name: &str, field: &str, msg: String) -> ApiError {
    ApiError::invalid_field("", "Service", name, field, msg)
}

fn wants_node_ports(spec: &Value) -> bool {
    matches!(
        spec.get("type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    )
}

impl ServiceAllocator {
    /// Allocators over the configured service CIDR and NodePort range. The cluster DNS
    /// address ([`ClusterConfig::cluster_dns_ip`]) is only ever given to a Service that asks
    /// for it by `spec.clusterIP`, and to one at a time.
    pub fn new(config: &ClusterConfig) -> Result<Self, ApiError> {
        let cidr: Cidr = config.service_cidr.parse().map_err(|e| {
            ApiError::internal(format!("service CIDR {:?}: {e}", config.service_cidr))
        })?;
        let ports = PortAllocator::new(config.node_port_range.0, config.node_port_range.1)
            .map_err(|e| ApiError::internal(format!("node port range: {e}")))?;
        Ok(ServiceAllocator {
            ips: Mutex::new(ClusterIps::new(cidr, config.cluster_dns_ip())),
            ports: Mutex::new(ports),
        })
    }

    /// Marks what an existing service holds (at start-up).
    pub fn mark_existing(&self, svc: &Value) {
        if let Some(ip) = cluster_ip(svc) {
            // An address outside the range (a service CIDR changed since) is one the
            // allocator can never hand out, so there is nothing to mark.
            let _ = lock(&self.ips).mark_used(ip);
        }
        for p in node_ports(svc) {
            let _ = lock(&self.ports).mark_used(p);
        }
    }

    /// Allocates on create: a ClusterIP (unless headless or ExternalName) and NodePorts.
    pub fn on_create(&self, svc: &mut Value) -> Result<(), ApiError> {
        let name = svc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let spec = svc.get("spec").cloned().unwrap_or(json!({}));
        let external = spec.get("type").and_then(Value::as_str) == Some("ExternalName");
        let requested = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("");
        let mut allocated_ip = None;
        if !external && requested != "None" {
            let ip = if requested.is_empty() {
                lock(&self.ips).allocate().ok_or_else(|| {
                    ApiError::internal("failed to allocate a serviceIP: range is full")
                })?
            } else {
                let ip: IpAddr = requested.parse().map_err(|_| {
                    invalid(
                        &name,
                        "spec.clusterIPs[0]",
                        format!("Invalid value: {requested:?}: must be a valid IP address"),
                    )
                })?;
                lock(&self.ips).allocate_specific(ip).map_err(|e| {
                    // Upstream's words for a taken address, which clients match on.
                    let why = match e {
                        kybernetes_core::ipam::Error::AlreadyAllocated { .. } => {
                            "provided IP is already allocated".to_string()
                        }
                        other => other.to_string(),
                    };
                    invalid(
                        &name,
                        "spec.clusterIPs",
                        format!(
                            "Invalid value: [{requested:?}]: failed to allocate IP {requested}: {why}"
                        ),
                    )
                })?;
                ip
            };
            allocated_ip = Some(ip);
            svc["spec"]["clusterIP"] = json!(ip.to_string());
            svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
            svc["spec"]["ipFamilies"] = json!(["IPv4"]);
            svc["spec"]["ipFamilyPolicy"] = json!("SingleStack");
            svc["spec"]["internalTrafficPolicy"] = json!("Cluster");
        } else if requested == "None" {
            svc["spec"]["clusterIPs"] = json!(["None"]);
        }
        if wants_node_ports(&spec)
            && let Err(e) = self.assign_node_ports(svc, None)
        {
            if let Some(ip) = allocated_ip {
                lock(&self.ips).release(ip);
            }
            return Err(e);
        }
        Ok(())
    }

    fn assign_node_ports(&self, svc: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
        let name = svc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let old_ports = old.map(node_port_map).unwrap_or_default();
        let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) else {
            return Ok(());
        };
        let mut taken = Vec::new();
        for (i, p) in ports.iter_mut().enumerate() {
            let key = (
                p.get("port").and_then(Value::as_i64).unwrap_or(0),
                p.get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("TCP")
                    .to_string(),
            );
            let port = match p.get("nodePort").and_then(Value::as_i64) {
                Some(n) if old_ports.values().any(|o| i64::from(*o) == n) => continue,
                Some(n) => {
                    let n = u16::try_from(n).map_err(|_| {
                        invalid(
                            &name,
                            &format!("spec.ports[{i}].nodePort"),
                            format!("Invalid value: {n}: provided port is not in the valid range"),
                        )
                    })?;
                    lock(&self.ports).allocate_specific(n).map_err(|e| {
                        invalid(
                            &name,
                            &format!("spec.ports[{i}].nodePort"),
                            format!("Invalid value: {n}: {e}"),
                        )
                    })?;
                    n
                }
                None => match old_ports.get(&key) {
                    Some(n) => *n,
                    None => lock(&self.ports).allocate().ok_or_else(|| {
                        ApiError::internal("failed to allocate a nodePort: range is full")
                    })?,
                },
            };
            taken.push(port);
            p["nodePort"] = json!(port);
        }
        Ok(())
    }

    /// Keeps allocations across an update: the ClusterIP is immutable; NodePorts are kept
    /// per (port, protocol) and allocated for new ports.
    pub fn on_update(&self, old: &Value, new: &mut Value) -> Result<(), ApiError> {
        let name = new
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let old_ip = old
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("");
        let new_ip = new
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("");
        if new_ip.is_empty() {
            for f in [
                "clusterIP",
                "clusterIPs",
                "ipFamilies",
                "ipFamilyPolicy",
                "internalTrafficPolicy",
            ] {
                if let Some(v) = old.pointer(&format!("/spec/{f}")) {
                    new["spec"][f] = v.clone();
                }
            }
        } else if new_ip != old_ip && !old_ip.is_empty() {
            return Err(invalid(
                &name,
                "spec.clusterIPs[0]",
                format!("Invalid value: {new_ip:?}: may not change once set"),
            ));
        }
        let spec = new.get("spec").cloned().unwrap_or(json!({}));
        if wants_node_ports(&spec) {
            self.assign_node_ports(new, Some(old))?;
        }
        Ok(())
    }

    /// Releases what `new` holds and `old` did not: the allocations of an update that is not
    /// written (a dry run, a lost race).
    pub fn release_added(&self, old: &Value, new: &Value) {
        if let Some(ip) = cluster_ip(new)
            && cluster_ip(old) != Some(ip)
        {
            lock(&self.ips).release(ip);
        }
        let kept = node_ports(old);
        for p in node_ports(new).into_iter().filter(|p| !kept.contains(p)) {
            lock(&self.ports).release(p);
        }
    }

    /// Releases what a deleted service held.
    pub fn on_delete(&self, svc: &Value) {
        if let Some(ip) = cluster_ip(svc) {
            lock(&self.ips).release(ip);
        }
        for p in node_ports(svc) {
            lock(&self.ports).release(p);
        }
    }
}

fn cluster_ip(svc: &Value) -> Option<IpAddr> {
    svc.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

fn node_ports(svc: &Value) -> Vec<u16> {
    node_port_map(svc).into_values().collect()
}

fn node_port_map(svc: &Value) -> std::collections::HashMap<(i64, String), u16> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let n = p
                .get("nodePort")
                .and_then(Value::as_i64)
                .and_then(|n| u16::try_from(n).ok())?;
            let key = (
                p.get("port").and_then(Value::as_i64).unwrap_or(0),
                p.get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("TCP")
                    .to_string(),
            );
            Some((key, n))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, cluster_ip: Option<&str>) -> Value {
        let mut spec = json!({"ports": [{"port": 53, "protocol": "UDP"}]});
        if let Some(ip) = cluster_ip {
            spec["clusterIP"] = json!(ip);
        }
        json!({"metadata": {"name": name}, "spec": spec})
    }

    fn ip_of(svc: &Value) -> &str {
        svc.pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    #[test]
    fn the_cluster_dns_ip_is_never_allocated_dynamically_and_goes_to_the_first_who_asks() {
        let alloc = ServiceAllocator::new(&ClusterConfig::default()).expect("allocator");
        for i in 0..20 {
            let mut svc = service(&format!("s{i}"), None);
            alloc.on_create(&mut svc).expect("dynamic");
            assert_ne!(ip_of(&svc), "10.96.0.10", "s{i}");
        }
        let mut dns = service("kube-dns", Some("10.96.0.10"));
        alloc
            .on_create(&mut dns)
            .expect("the DNS address, asked for");
        assert_eq!(ip_of(&dns), "10.96.0.10");

        let mut thief = service("thief", Some("10.96.0.10"));
        let err = alloc.on_create(&mut thief).expect_err("taken");
        assert_eq!(err.code, 422);
        assert!(
            err.message.contains("provided IP is already allocated"),
            "{}",
            err.message
        );

        // Deleted, it is free for the next Service that asks, still not for allocation.
        alloc.on_delete(&dns);
        let mut other = service("other", None);
        alloc.on_create(&mut other).expect("dynamic");
        assert_ne!(ip_of(&other), "10.96.0.10");
        alloc.on_create(&mut thief).expect("free again");
    }

    #[test]
    fn a_stored_service_with_the_dns_ip_holds_it_after_a_restart() {
        let alloc = ServiceAllocator::new(&ClusterConfig::default()).expect("allocator");
        alloc.mark_existing(&service("kube-dns", Some("10.96.0.10")));
        let mut thief = service("thief", Some("10.96.0.10"));
        assert_eq!(alloc.on_create(&mut thief).map_err(|e| e.code), Err(422));
    }
}
