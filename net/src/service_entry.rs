//! From a Service and its Endpoints (core/v1) to the [`ServiceEntry`] the proxy and DNS serve.
//!
//! The rules follow kube-proxy and CoreDNS:
//! - only `addresses` are served; `notReadyAddresses` are left out until they become ready;
//! - `clusterIP: None` makes a service headless (DNS answers with its endpoints);
//! - an `ExternalName` service gets an entry with its external name and no endpoints (DNS
//!   answers a CNAME); any other service without a ClusterIP yet has no entry;
//! - an endpoint serves a service port if its subset lists a port of the same name, on that
//!   port (the endpoints controller resolved named target ports per pod, and left out pods
//!   that have no such port); the service's own target port is the numeric `targetPort`,
//!   else the service port;
//! - `sessionAffinity: ClientIP` with `timeoutSeconds` (default 10800), and the two traffic
//!   policies, are carried over;
//! - the load-balancer ingress addresses of the status are served, except those with
//!   `ipMode: Proxy` (the load balancer itself forwards to the nodes; kube-proxy leaves
//!   those alone too).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::{Endpoint, ServiceEntry, ServicePort};

/// Upstream's default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u64 = 10800;
/// Upstream's largest `timeoutSeconds` (one day).
const MAX_AFFINITY_TIMEOUT_SECONDS: u64 = 86400;

/// The entry for `service` with `endpoints`, or `None` if the service is not served
/// (no ClusterIP yet, an `ExternalName` service without a name, or malformed).
pub(crate) fn service_entry(
    service: &Service,
    endpoints: Option<&Endpoints>,
) -> Option<ServiceEntry> {
    let namespace = service.metadata.namespace.as_deref()?;
    let name = service.metadata.name.as_deref()?;
    let spec = service.spec.as_ref()?;
    let ports = service_ports(service);
    if spec.type_.as_deref() == Some("ExternalName") {
        let external = spec
            .external_name
            .as_deref()
            .map(|n| n.trim_end_matches('.'))
            .filter(|n| !n.is_empty())?;
        return Some(ServiceEntry::external_name(namespace, name, external).with_ports(ports));
    }
    let cluster_ip = match spec.cluster_ip.as_deref() {
        Some("None") => None,
        None | Some("") => return None,
        Some(ip) => match ip.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                tracing::warn!(%namespace, service = %name, cluster_ip = ip, "unparseable clusterIP; not served");
                return None;
            }
        },
    };
    let mut entry = ServiceEntry::new(namespace, name, cluster_ip)
        .with_ports(ports)
        .with_endpoints(ready_endpoints(endpoints));
    entry.session_affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        let seconds = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u64::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS);
        Duration::from_secs(seconds.min(MAX_AFFINITY_TIMEOUT_SECONDS))
    });
    entry.external_traffic_local = spec.external_traffic_policy.as_deref() == Some("Local");
    entry.internal_traffic_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    entry.load_balancer_ips = load_balancer_ips(service);
    Some(entry)
}

/// The ingress addresses of `status.loadBalancer` the proxy serves (`ipMode` `VIP`, the
/// default).
fn load_balancer_ips(service: &Service) -> Vec<IpAddr> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

/// The service's ports the proxy can serve (numbers that fit a port).
fn service_ports(service: &Service) -> Vec<ServicePort> {
    service
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter_map(|p| {
            let port = u16::try_from(p.port).ok()?;
            let target_port = match &p.target_port {
                Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
                _ => None,
            };
            Some(ServicePort {
                name: p.name.clone().unwrap_or_default(),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port,
                node_port: p.node_port.and_then(|n| u16::try_from(n).ok()),
                target_port: target_port.unwrap_or(port),
            })
        })
        .collect()
}

/// Every ready address (`subsets[].addresses`), once each, in the order listed, with the
/// ports of every subset it is in.
fn ready_endpoints(endpoints: Option<&Endpoints>) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = Vec::new();
    let subsets = endpoints
        .and_then(|e| e.subsets.as_ref())
        .into_iter()
        .flatten();
    for subset in subsets {
        let ports: BTreeMap<String, u16> = subset
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    p.name.clone().unwrap_or_default(),
                    u16::try_from(p.port).ok()?,
                ))
            })
            .collect();
        for a in subset.addresses.iter().flatten() {
            let Ok(ip) = a.ip.parse::<IpAddr>() else {
                continue;
            };
            match out.iter_mut().find(|e| e.ip == ip) {
                Some(seen) => seen.ports.extend(ports.clone()),
                None => out.push(Endpoint {
                    ip,
                    hostname: a.hostname.clone().filter(|h| !h.is_empty()),
                    node_name: a.node_name.clone().filter(|n| !n.is_empty()),
                    ports: ports.clone(),
                }),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ClientIPConfig, EndpointAddress, EndpointPort, EndpointSubset, ServicePort as K8sPort,
        ServiceSpec, SessionAffinityConfig,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn meta() -> ObjectMeta {
        ObjectMeta {
            namespace: Some("shop".into()),
            name: Some("web".into()),
            ..Default::default()
        }
    }

    fn service(cluster_ip: Option<&str>, target: Option<IntOrString>) -> Service {
        Service {
            metadata: meta(),
            spec: Some(ServiceSpec {
                cluster_ip: cluster_ip.map(Into::into),
                ports: Some(vec![K8sPort {
                    name: Some("http".into()),
                    port: 80,
                    protocol: Some("TCP".into()),
                    target_port: target,
                    node_port: Some(30080),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn address(ip: &str, hostname: Option<&str>) -> EndpointAddress {
        EndpointAddress {
            ip: ip.into(),
            hostname: hostname.map(Into::into),
            ..Default::default()
        }
    }

    fn endpoints(ready: Vec<EndpointAddress>, not_ready: Vec<EndpointAddress>) -> Endpoints {
        Endpoints {
            metadata: meta(),
            subsets: Some(vec![EndpointSubset {
                addresses: Some(ready),
                not_ready_addresses: Some(not_ready),
                ports: Some(vec![EndpointPort {
                    name: Some("http".into()),
                    port: 8080,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
            }]),
        }
    }

    #[test]
    fn only_ready_addresses_become_endpoints() {
        let eps = endpoints(
            vec![address("10.244.0.2", Some("web-0"))],
            vec![address("10.244.0.3", None)],
        );
        let entry = service_entry(&service(Some("10.96.0.5"), None), Some(&eps)).unwrap();
        assert_eq!(entry.cluster_ip, Some("10.96.0.5".parse().unwrap()));
        let mut want = Endpoint::new("10.244.0.2".parse().unwrap()).with_hostname("web-0");
        want.ports.insert("http".into(), 8080);
        assert_eq!(entry.endpoints, vec![want]);
    }

    #[test]
    fn named_target_port_comes_from_the_endpoints() {
        let eps = endpoints(vec![address("10.244.0.2", None)], vec![]);
        let svc = service(Some("10.96.0.5"), Some(IntOrString::String("web".into())));
        let entry = service_entry(&svc, Some(&eps)).unwrap();
        let served: Vec<_> = entry
            .endpoints_for(&entry.ports[0])
            .map(|(e, p)| (e.ip, p))
            .collect();
        assert_eq!(served, vec![("10.244.0.2".parse().unwrap(), 8080)]);
        assert_eq!(entry.ports[0].node_port, Some(30080));
    }

    #[test]
    fn an_endpoint_without_the_named_port_does_not_serve_it() {
        // The endpoints controller lists a pod lacking the named port under the other
        // ports only (here: none of the service's), so it serves nothing.
        let mut eps = endpoints(vec![address("10.244.0.2", None)], vec![]);
        if let Some(subsets) = eps.subsets.as_mut() {
            subsets[0].ports = Some(vec![EndpointPort {
                name: Some("metrics".into()),
                port: 9100,
                ..Default::default()
            }]);
        }
        let svc = service(Some("10.96.0.5"), Some(IntOrString::String("web".into())));
        let entry = service_entry(&svc, Some(&eps)).unwrap();
        assert_eq!(entry.endpoints.len(), 1, "still a DNS endpoint");
        assert_eq!(entry.endpoints_for(&entry.ports[0]).count(), 0);
    }

    #[test]
    fn external_name_affinity_and_traffic_policies_are_carried_over() {
        let mut external = service(None, None);
        if let Some(spec) = external.spec.as_mut() {
            spec.type_ = Some("ExternalName".into());
            spec.external_name = Some("db.example.com.".into());
        }
        let entry = service_entry(&external, None).unwrap();
        assert_eq!(entry.external_name.as_deref(), Some("db.example.com"));
        assert_eq!(entry.cluster_ip, None);

        let mut svc = service(Some("10.96.0.5"), None);
        if let Some(spec) = svc.spec.as_mut() {
            spec.session_affinity = Some("ClientIP".into());
            spec.external_traffic_policy = Some("Local".into());
            spec.internal_traffic_policy = Some("Local".into());
        }
        let entry = service_entry(&svc, None).unwrap();
        assert_eq!(entry.session_affinity, Some(Duration::from_secs(10800)));
        assert!(entry.external_traffic_local && entry.internal_traffic_local);
        if let Some(spec) = svc.spec.as_mut() {
            spec.session_affinity_config = Some(SessionAffinityConfig {
                client_ip: Some(ClientIPConfig {
                    timeout_seconds: Some(30),
                }),
            });
        }
        let entry = service_entry(&svc, None).unwrap();
        assert_eq!(entry.session_affinity, Some(Duration::from_secs(30)));
    }

    #[test]
    fn numeric_target_port_is_used_without_endpoints() {
        let svc = service(Some("10.96.0.5"), Some(IntOrString::Int(9090)));
        let entry = service_entry(&svc, None).unwrap();
        assert_eq!(entry.ports[0].target_port, 9090);
        assert!(entry.endpoints.is_empty());
    }

    #[test]
    fn cluster_ip_none_is_headless_and_missing_cluster_ip_is_not_served() {
        assert_eq!(
            service_entry(&service(Some("None"), None), None)
                .unwrap()
                .cluster_ip,
            None
        );
        assert!(service_entry(&service(None, None), None).is_none());
        assert!(service_entry(&service(Some(""), None), None).is_none());
        assert!(service_entry(&service(Some("not-an-ip"), None), None).is_none());
        let mut external = service(None, None);
        if let Some(spec) = external.spec.as_mut() {
            spec.type_ = Some("ExternalName".into());
        }
        assert!(service_entry(&external, None).is_none(), "no externalName");
    }

    #[test]
    fn an_address_in_two_subsets_is_listed_once() {
        let mut eps = endpoints(vec![address("10.244.0.2", None)], vec![]);
        if let Some(subsets) = eps.subsets.as_mut() {
            let again = subsets[0].clone();
            subsets.push(again);
        }
        assert_eq!(ready_endpoints(Some(&eps)).len(), 1);
    }
}
