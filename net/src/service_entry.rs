//! From a Service and its Endpoints (core/v1) to the [`ServiceEntry`] the proxy and DNS serve.
//!
//! The rules follow kube-proxy and CoreDNS:
//! - only `addresses` are served; `notReadyAddresses` are left out until they become ready;
//! - `clusterIP: None` makes a service headless (DNS answers with its endpoints);
//! - a service without a ClusterIP yet, and an `ExternalName` service, has no entry;
//! - each service port's target port is the Endpoints port of the same name (the endpoints
//!   controller has resolved named target ports there), else a numeric `targetPort`, else
//!   the service port.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::{ServiceEntry, ServicePort};

/// The entry for `service` with `endpoints`, or `None` if the service is not served
/// (no ClusterIP yet, `ExternalName`, or malformed).
pub(crate) fn service_entry(
    service: &Service,
    endpoints: Option<&Endpoints>,
) -> Option<ServiceEntry> {
    let namespace = service.metadata.namespace.clone()?;
    let name = service.metadata.name.clone()?;
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
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
    let endpoint_ports: Vec<_> = endpoints
        .and_then(|e| e.subsets.as_ref())
        .into_iter()
        .flatten()
        .flat_map(|s| s.ports.iter().flatten())
        .collect();
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let port = u16::try_from(p.port).ok()?;
            let name = p.name.clone().unwrap_or_default();
            let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            let from_endpoints = endpoint_ports
                .iter()
                .find(|ep| {
                    ep.name.as_deref().unwrap_or_default() == name
                        && ep.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .and_then(|ep| u16::try_from(ep.port).ok());
            let numeric_target = match &p.target_port {
                Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
                _ => None,
            };
            Some(ServicePort {
                target_port: from_endpoints.or(numeric_target).unwrap_or(port),
                node_port: p.node_port.and_then(|n| u16::try_from(n).ok()),
                name,
                protocol,
                port,
            })
        })
        .collect();
    Some(ServiceEntry {
        namespace,
        name,
        cluster_ip,
        ports,
        endpoints: ready_endpoints(endpoints),
    })
}

/// Every ready address (`subsets[].addresses`), once each, in the order listed.
fn ready_endpoints(endpoints: Option<&Endpoints>) -> Vec<(IpAddr, Option<String>)> {
    let mut out: Vec<(IpAddr, Option<String>)> = Vec::new();
    let addresses = endpoints
        .and_then(|e| e.subsets.as_ref())
        .into_iter()
        .flatten()
        .flat_map(|s| s.addresses.iter().flatten());
    for a in addresses {
        let Ok(ip) = a.ip.parse::<IpAddr>() else {
            continue;
        };
        if !out.iter().any(|(seen, _)| *seen == ip) {
            out.push((ip, a.hostname.clone().filter(|h| !h.is_empty())));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        EndpointAddress, EndpointPort, EndpointSubset, ServicePort as K8sPort, ServiceSpec,
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
        assert_eq!(
            entry.endpoints,
            vec![("10.244.0.2".parse().unwrap(), Some("web-0".into()))]
        );
    }

    #[test]
    fn named_target_port_comes_from_the_endpoints() {
        let eps = endpoints(vec![address("10.244.0.2", None)], vec![]);
        let svc = service(Some("10.96.0.5"), Some(IntOrString::String("web".into())));
        let entry = service_entry(&svc, Some(&eps)).unwrap();
        assert_eq!(entry.ports[0].target_port, 8080);
        assert_eq!(entry.ports[0].node_port, Some(30080));
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
        assert!(service_entry(&external, None).is_none());
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
