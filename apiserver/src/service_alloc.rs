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
    ips: Mutex<IpAllocator>,
    ports: Mutex<PortAllocator>,
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
    /// Allocators over the configured service CIDR and NodePort range.
    pub fn new(config: &ClusterConfig) -> Result<Self, ApiError> {
        let cidr: Cidr = config.service_cidr.parse().map_err(|e| {
            ApiError::internal(format!("service CIDR {:?}: {e}", config.service_cidr))
        })?;
        let ports = PortAllocator::new(config.node_port_range.0, config.node_port_range.1)
            .map_err(|e| ApiError::internal(format!("node port range: {e}")))?;
        Ok(ServiceAllocator {
            ips: Mutex::new(IpAllocator::new(cidr)),
            ports: Mutex::new(ports),
        })
    }

    /// Marks what an existing service holds (at start-up).
    pub fn mark_existing(&self, svc: &Value) {
        if let Some(ip) = cluster_ip(svc) {
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
                    invalid(
                        &name,
                        "spec.clusterIPs",
                        format!(
                            "Invalid value: [{requested:?}]: failed to allocate IP {requested}: {e}"
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
