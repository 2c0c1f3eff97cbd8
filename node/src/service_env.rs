//! Service environment variables, as upstream's kubelet sets them (`getServiceEnvVarMap` and
//! `envvars.FromServices`): for each Service with a ClusterIP in the pod's namespace when
//! `enableServiceLinks` is on (the default), and for the master Service `default/kubernetes`
//! in every namespace, when the container starts, as the agent's
//! [`ServiceLister`](crate::ServiceLister) has them:
//!
//! - `{SVC}_SERVICE_HOST` (the address), `{SVC}_SERVICE_PORT` (the first port) and
//!   `{SVC}_SERVICE_PORT_{PORTNAME}` for each named port;
//! - the Docker link variables: `{SVC}_PORT` (`tcp://host:port` of the first port) and for
//!   every port `{SVC}_PORT_{port}_{PROTO}` with its `_PROTO`, `_PORT` and `_ADDR`.
//!
//! Names are upper-cased with `-` turned into `_`. A Service of the pod's own namespace wins
//! over the master Service of the same name. The address is the ClusterIP as the network's
//! clients reach it ([`Network::service_host`]): the userspace proxy's loopback address with
//! `LocalNetwork`'s proxy on. Variables the container defines itself win (see
//! [`make_environment`](crate::env::make_environment)).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::reflector::ObjectRef;
use kybernetes_net::Network;

use crate::env::EnvError;
use crate::service_lister::ServiceLister;

/// The namespace of the master Service.
const MASTER_NAMESPACE: &str = "default";
/// The master Services every pod gets variables for.
const MASTER_SERVICES: [&str; 1] = ["kubernetes"];

/// The Service variables of a container of `pod`, sorted by name, read from `lister` once it
/// has listed the Services at least once.
pub(crate) async fn service_environment(
    lister: &ServiceLister,
    network: &dyn Network,
    pod: &Pod,
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let Some(store) = lister.synced().await else {
        // Upstream's words when its service informer has not synced.
        return Err(EnvError(
            "services have not yet been read at least once, cannot construct envvars".into(),
        ));
    };
    let mut services: BTreeMap<String, Service> = BTreeMap::new();
    if namespace != MASTER_NAMESPACE || !links {
        for name in MASTER_SERVICES {
            if let Some(svc) = store.get(&ObjectRef::new(name).within(MASTER_NAMESPACE)) {
                services.insert(name.to_string(), Service::clone(&svc));
            }
        }
    }
    if links {
        for svc in store.state_filter(|s| s.metadata.namespace.as_deref() == Some(namespace)) {
            // The pod's own namespace wins over the master Service of the same name.
            services.insert(
                svc.metadata.name.clone().unwrap_or_default(),
                Service::clone(&svc),
            );
        }
    }
    let services: Vec<Service> = services.into_values().collect();
    let mut vars = from_services(&services, |ip| network.service_host(ip));
    vars.sort();
    Ok(vars)
}

/// The variables of `services` (upstream `envvars.FromServices`), with each ClusterIP shown
/// as `host` maps it. Services without a ClusterIP (headless, ExternalName) or a name are
/// skipped.
pub(crate) fn from_services(
    services: &[Service],
    host: impl Fn(IpAddr) -> IpAddr,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for service in services {
        let Some(spec) = &service.spec else { continue };
        let Some(name) = service.metadata.name.as_deref().filter(|n| !n.is_empty()) else {
            continue;
        };
        let cluster_ip = match spec.cluster_ip.as_deref() {
            None | Some("") | Some("None") => continue,
            Some(ip) => ip,
        };
        let address = match cluster_ip.parse::<IpAddr>() {
            Ok(ip) => host(ip).to_string(),
            Err(_) => cluster_ip.to_string(),
        };
        let prefix = env_name(name);
        let ports = spec.ports.as_deref().unwrap_or_default();
        out.push((format!("{prefix}_SERVICE_HOST"), address.clone()));
        if let Some(first) = ports.first() {
            out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        }
        for port in ports {
            if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{prefix}_SERVICE_PORT_{}", env_name(port_name)),
                    port.port.to_string(),
                ));
            }
        }
        // Docker-compatible link variables.
        let host_port = |port: i32| match address.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{address}]:{port}"),
            _ => format!("{address}:{port}"),
        };
        for (i, port) in ports.iter().enumerate() {
            let protocol = port
                .protocol
                .as_deref()
                .filter(|p| !p.is_empty())
                .unwrap_or("TCP");
            let lower = protocol.to_ascii_lowercase();
            let url = format!("{lower}://{}", host_port(port.port));
            if i == 0 {
                out.push((format!("{prefix}_PORT"), url.clone()));
            }
            let port_prefix = format!(
                "{prefix}_PORT_{}_{}",
                port.port,
                protocol.to_ascii_uppercase()
            );
            out.push((format!("{port_prefix}_PROTO"), lower));
            out.push((format!("{port_prefix}_PORT"), port.port.to_string()));
            out.push((format!("{port_prefix}_ADDR"), address.clone()));
            out.push((port_prefix, url));
        }
    }
    out
}

/// Upstream's `makeEnvVariableName`: upper case, `-` to `_`.
fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn service(name: &str, cluster_ip: &str, ports: &[(Option<&str>, i32, &str)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(cluster_ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p, proto)| ServicePort {
                            name: n.map(Into::into),
                            port: *p,
                            protocol: Some(proto.to_string()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn variables_follow_upstream_envvars() {
        let svc = service(
            "my-web",
            "10.96.0.57",
            &[(Some("http"), 80, "TCP"), (Some("dns-udp"), 53, "UDP")],
        );
        let mut vars = from_services(&[svc], |ip| ip);
        vars.sort();
        let want: Vec<(String, String)> = [
            ("MY_WEB_PORT", "tcp://10.96.0.57:80"),
            ("MY_WEB_PORT_53_UDP", "udp://10.96.0.57:53"),
            ("MY_WEB_PORT_53_UDP_ADDR", "10.96.0.57"),
            ("MY_WEB_PORT_53_UDP_PORT", "53"),
            ("MY_WEB_PORT_53_UDP_PROTO", "udp"),
            ("MY_WEB_PORT_80_TCP", "tcp://10.96.0.57:80"),
            ("MY_WEB_PORT_80_TCP_ADDR", "10.96.0.57"),
            ("MY_WEB_PORT_80_TCP_PORT", "80"),
            ("MY_WEB_PORT_80_TCP_PROTO", "tcp"),
            ("MY_WEB_SERVICE_HOST", "10.96.0.57"),
            ("MY_WEB_SERVICE_PORT", "80"),
            ("MY_WEB_SERVICE_PORT_DNS_UDP", "53"),
            ("MY_WEB_SERVICE_PORT_HTTP", "80"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(vars, want);
    }

    #[test]
    fn headless_services_are_skipped_and_the_host_is_mapped() {
        let headless = service("db", "None", &[(None, 5432, "TCP")]);
        let web = service("web", "10.96.0.57", &[(None, 8080, "TCP")]);
        let vars = from_services(&[headless, web], |_| "127.96.0.57".parse().unwrap());
        assert!(vars.iter().all(|(k, _)| k.starts_with("WEB_")));
        assert!(vars.contains(&("WEB_SERVICE_HOST".into(), "127.96.0.57".into())));
        assert!(vars.contains(&("WEB_PORT".into(), "tcp://127.96.0.57:8080".into())));
        assert!(!vars.iter().any(|(k, _)| k.starts_with("WEB_SERVICE_PORT_")));
    }
}
