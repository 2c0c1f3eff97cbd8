//! From Ingresses to a [`RouteTable`]: each backend's Service port resolved to the ready
//! addresses of the Service's Endpoints.
//!
//! An `IngressServiceBackend` names a Service port by number (`port.number`, the Service's
//! `port`) or by name (`port.name`). The Endpoints object of the Service lists, per subset,
//! the ready `addresses` and the ports under the Service ports' names, as the endpoints
//! controller writes them (or as a user writes them for a Service without a selector). Not
//! ready addresses are never routed to.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints as CoreEndpoints, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::routes::{Endpoints, HostMatch, PathMatch, Route, RouteTable, Target};

/// An Ingress backend whose Service does not exist.
#[derive(Clone, Debug)]
pub struct MissingService {
    /// The Ingress naming it.
    pub ingress: Arc<Ingress>,
    /// The Service's name (in the Ingress's namespace).
    pub service: String,
}

/// The Services and Endpoints backends are resolved against.
pub struct Backends<'a> {
    /// Every Service.
    pub services: &'a Store<Service>,
    /// Every Endpoints object.
    pub endpoints: &'a Store<CoreEndpoints>,
}

impl Backends<'_> {
    /// The routing table of `ingresses` (oldest first, all served by this controller), and
    /// the backends whose Service is missing.
    pub fn table(&self, ingresses: &[Arc<Ingress>]) -> (RouteTable, Vec<MissingService>) {
        let mut missing = Vec::new();
        let mut routes = Vec::new();
        let mut default_backend = None;
        for ingress in ingresses {
            let Some(spec) = ingress.spec.as_ref() else {
                continue;
            };
            let mut target = |backend: &IngressBackend| {
                let (target, absent) = self.resolve(ingress, backend);
                if let Some(service) = absent {
                    missing.push(MissingService {
                        ingress: ingress.clone(),
                        service,
                    });
                }
                Arc::new(target)
            };
            if let Some(backend) = &spec.default_backend {
                let t = target(backend);
                default_backend.get_or_insert(t);
            }
            for rule in spec.rules.iter().flatten() {
                let host = HostMatch::parse(rule.host.as_deref());
                for path in rule.http.iter().flat_map(|h| &h.paths) {
                    let Some(path_match) = PathMatch::parse(path.path.as_deref(), &path.path_type)
                    else {
                        tracing::warn!(
                            ingress = %format!("{}/{}", ingress.namespace().unwrap_or_default(), ingress.name_any()),
                            path_type = %path.path_type,
                            "unknown pathType; path not served"
                        );
                        continue;
                    };
                    routes.push(Route {
                        host: host.clone(),
                        path: path_match,
                        target: target(&path.backend),
                    });
                }
            }
        }
        (RouteTable::new(routes, default_backend), missing)
    }

    /// Where `backend` of `ingress` goes, and the Service's name when it does not exist.
    fn resolve(&self, ingress: &Ingress, backend: &IngressBackend) -> (Target, Option<String>) {
        let namespace = ingress.namespace().unwrap_or_default();
        let Some(svc_backend) = &backend.service else {
            let kind = backend.resource.as_ref().map_or("", |r| r.kind.as_str());
            return (
                Target::Unavailable(format!("{kind} resource backends are not served")),
                None,
            );
        };
        let name = &svc_backend.name;
        let Some(service) = self.services.get(&ObjectRef::new(name).within(&namespace)) else {
            return (
                Target::Unavailable(format!("service {namespace}/{name} not found")),
                Some(name.clone()),
            );
        };
        let wanted = svc_backend.port.as_ref();
        let port = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .and_then(|ports| {
                ports.iter().find(|p| match wanted {
                    Some(w) if w.number.is_some() => w.number == Some(p.port),
                    Some(w) => w.name.is_some() && w.name == p.name,
                    None => false,
                })
            });
        let port_text = wanted
            .and_then(|w| w.number.map(|n| n.to_string()).or_else(|| w.name.clone()))
            .unwrap_or_default();
        let Some(port) = port else {
            return (
                Target::Unavailable(format!(
                    "service {namespace}/{name} has no port {port_text}"
                )),
                None,
            );
        };
        let port_name = port.name.as_deref().unwrap_or("");
        let addresses = self.ready_addresses(&namespace, name, port_name);
        let label = format!("{namespace}/{name}:{port_text}");
        match addresses.is_empty() {
            true => (
                Target::Unavailable(format!("service {label} has no ready endpoint")),
                None,
            ),
            false => (Target::Ready(Endpoints::new(label, addresses)), None),
        }
    }

    /// The ready addresses of Service `namespace/name` on its port named `port_name` (`""`
    /// for a single unnamed port), with the port each serves it on.
    fn ready_addresses(&self, namespace: &str, name: &str, port_name: &str) -> Vec<SocketAddr> {
        let Some(endpoints) = self.endpoints.get(&ObjectRef::new(name).within(namespace)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for subset in endpoints.subsets.iter().flatten() {
            let Some(port) = subset.ports.iter().flatten().find(|p| {
                p.name.as_deref().unwrap_or("") == port_name
                    && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
            }) else {
                continue;
            };
            let Ok(port_number) = u16::try_from(port.port) else {
                continue;
            };
            for address in subset.addresses.iter().flatten() {
                match address.ip.parse::<IpAddr>() {
                    Ok(ip) => out.push(SocketAddr::new(ip, port_number)),
                    Err(_) => tracing::warn!(
                        endpoints = %format!("{namespace}/{name}"),
                        ip = %address.ip,
                        "endpoint address is not an IP; skipped"
                    ),
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}
