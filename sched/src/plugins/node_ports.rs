//! NodePorts: a pod that asks for a host port cannot go where another pod already holds the
//! same protocol and port on a conflicting address (upstream's `nodeports` plugin).

use k8s_openapi::api::core::v1::{ContainerPort, Pod};

use crate::framework::FilterPlugin;
use crate::pod_info::PodInfo;
use crate::snapshot::NodeInfo;
use crate::unschedulable::Rejection;

/// Upstream's reason.
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// The address a host port without `hostIP` binds.
const BIND_ALL: &str = "0.0.0.0";

/// The NodePorts filter. Preemption can help: the holder of the port may be evicted.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodePorts;

/// One host port a container binds: (address, protocol, port), with upstream's defaults
/// (`0.0.0.0`, `TCP`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct HostPort<'a> {
    ip: &'a str,
    protocol: &'a str,
    port: i32,
}

impl<'a> HostPort<'a> {
    fn of(p: &'a ContainerPort) -> Option<HostPort<'a>> {
        let port = p.host_port.filter(|&h| h > 0)?;
        let ip = p.host_ip.as_deref().filter(|ip| !ip.is_empty());
        let protocol = p.protocol.as_deref().filter(|p| !p.is_empty());
        Some(HostPort {
            ip: ip.unwrap_or(BIND_ALL),
            protocol: protocol.unwrap_or("TCP"),
            port,
        })
    }

    /// Upstream's `HostPortInfo.CheckConflict`: the same protocol and port, and either side
    /// binds every address or both bind the same one.
    fn conflicts(&self, used: &HostPort<'_>) -> bool {
        self.protocol == used.protocol
            && self.port == used.port
            && (self.ip == BIND_ALL || used.ip == BIND_ALL || self.ip == used.ip)
    }
}

/// The host ports of a pod's containers and sidecars (restartable init containers), which
/// hold them while the pod runs.
fn host_ports(pod: &Pod) -> impl Iterator<Item = HostPort<'_>> {
    let spec = pod.spec.as_ref();
    let containers = spec.into_iter().flat_map(|s| s.containers.iter());
    let sidecars = spec
        .into_iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    containers
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(HostPort::of)
}

impl FilterPlugin for NodePorts {
    fn name(&self) -> &str {
        "NodePorts"
    }

    fn pre_filter(&self, pod: &PodInfo<'_>) -> bool {
        host_ports(pod.pod()).next().is_some()
    }

    fn filter(&self, pod: &PodInfo<'_>, node: &NodeInfo) -> Result<(), Rejection> {
        let wanted: Vec<HostPort<'_>> = host_ports(pod.pod()).collect();
        let taken = node
            .pods()
            .iter()
            .flat_map(|p| host_ports(p))
            .any(|used| wanted.iter().any(|w| w.conflicts(&used)));
        match taken {
            true => Err(ERR_REASON.into()),
            false => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::plugins::testing::{node, pod};
    use serde_json::{Value, json};

    fn with_ports(ports: Value) -> Pod {
        pod(json!({"containers": [{"name": "c", "ports": ports}]}))
    }

    fn fits(incoming: &Pod, existing: &Pod) -> bool {
        let mut n = node("a", json!({}));
        n.add_pod(Arc::new(existing.clone()));
        NodePorts.filter(&PodInfo::new(incoming), &n).is_ok()
    }

    #[test]
    fn a_taken_host_port_rejects_with_upstreams_reason() {
        let p = with_ports(json!([{"containerPort": 80, "hostPort": 8080}]));
        let mut n = node("a", json!({}));
        assert!(NodePorts.filter(&PodInfo::new(&p), &n).is_ok());
        n.add_pod(Arc::new(p.clone()));
        assert_eq!(
            NodePorts.filter(&PodInfo::new(&p), &n),
            Err(Rejection::new(ERR_REASON))
        );
    }

    #[test]
    fn addresses_and_protocols_decide_conflicts_as_upstream() {
        let port = |ip: &str, proto: &str| {
            with_ports(
                json!([{"containerPort": 80, "hostPort": 8080, "hostIP": ip, "protocol": proto}]),
            )
        };
        // Every address conflicts with any; two distinct addresses do not.
        assert!(!fits(&port("", "TCP"), &port("10.0.0.1", "TCP")));
        assert!(!fits(&port("10.0.0.1", "TCP"), &port("0.0.0.0", "TCP")));
        assert!(fits(&port("10.0.0.1", "TCP"), &port("10.0.0.2", "TCP")));
        assert!(!fits(&port("10.0.0.1", "TCP"), &port("10.0.0.1", "")));
        // Another protocol or port is free.
        assert!(fits(&port("", "UDP"), &port("", "TCP")));
        let other = with_ports(json!([{"containerPort": 80, "hostPort": 9090}]));
        assert!(fits(&other, &port("", "TCP")));
    }

    #[test]
    fn pods_without_host_ports_skip_the_filter() {
        let p = with_ports(json!([{"containerPort": 80}]));
        assert!(!NodePorts.pre_filter(&PodInfo::new(&p)));
        let sidecar = pod(
            json!({"initContainers": [{"name": "s", "restartPolicy": "Always", "ports": [{"containerPort": 1, "hostPort": 53}]}]}),
        );
        assert!(NodePorts.pre_filter(&PodInfo::new(&sidecar)));
    }
}
