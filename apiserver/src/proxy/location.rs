//! Where a proxy request goes (upstream's `ResourceLocation` of pods, services and nodes).
//!
//! Each takes the name from the path in upstream's `[scheme:]name[:port]` form
//! (`SplitSchemeNamePort`): `web`, `web:8080`, `https:web:8443`.

use std::net::IpAddr;
use std::sync::Arc;

use kybernetes_core::{ApiError, ResourceInfo};
use serde_json::Value;

use crate::Inner;
use crate::object::meta_str;
use crate::rest::read;

/// The port of the node agent's own server, as nodes report it
/// (`status.daemonEndpoints.kubeletEndpoint.port`).
pub const KUBELET_PORT: u16 = 10250;

/// Where a proxy request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A port of a pod, reached through its node's agent.
    Pod(PodPort),
    /// The node agent's own endpoints.
    Kubelet {
        /// The node.
        node: String,
    },
}

/// One port of one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodPort {
    /// The pod's node.
    pub node: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's UID, so that a newer pod of the same name is never reached.
    pub pod_uid: String,
    /// The pod's IP.
    pub ip: IpAddr,
    /// The port.
    pub port: u16,
    /// Speak TLS to the port (`https:` in the name).
    pub tls: bool,
}

impl PodPort {
    /// `ip:port`, as a URL authority.
    pub fn address(&self) -> String {
        std::net::SocketAddr::new(self.ip, self.port).to_string()
    }
}

/// A name in upstream's `[scheme:]name[:port]` form, split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemeNamePort<'a> {
    /// `https` asks for TLS; empty or `http` for plain HTTP.
    pub tls: bool,
    /// The object's name.
    pub name: &'a str,
    /// The port as written (a number, a port name, or empty).
    pub port: &'a str,
}

/// Splits `id` as upstream's `SplitSchemeNamePort`: one to three `:`-separated parts, the
/// scheme (if any) `http` or `https`, and a non-empty name.
///
/// ```
/// use kybernetes_apiserver::proxy::location::split_scheme_name_port;
/// let p = split_scheme_name_port("https:web:8443").unwrap();
/// assert_eq!((p.tls, p.name, p.port), (true, "web", "8443"));
/// assert_eq!(split_scheme_name_port("web").unwrap().port, "");
/// assert!(split_scheme_name_port("ftp:web:21").is_none());
/// assert!(split_scheme_name_port(":80").is_none());
/// ```
pub fn split_scheme_name_port(id: &str) -> Option<SchemeNamePort<'_>> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    if name.is_empty() || !matches!(scheme, "" | "http" | "https") {
        return None;
    }
    Some(SchemeNamePort {
        tls: scheme == "https",
        name,
        port,
    })
}

fn resource(inner: &Inner, plural: &str) -> Result<Arc<ResourceInfo>, ApiError> {
    inner
        .registry
        .lookup("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))
}

/// The namespace (a namespaced proxy path without one is 404, as any unknown path) and the
/// split name, or upstream's 400 `invalid <kind> request`.
fn namespaced_id<'a>(
    namespace: Option<&'a str>,
    id: &'a str,
    kind: &str,
) -> Result<(&'a str, SchemeNamePort<'a>), ApiError> {
    let namespace = namespace.ok_or_else(|| {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    })?;
    let split = split_scheme_name_port(id)
        .ok_or_else(|| ApiError::bad_request(format!("invalid {kind} request {id:?}")))?;
    Ok((namespace, split))
}

/// `pods/NAME[:PORT]/proxy`: the port given, else the first port a container declares, else
/// the scheme's default; the pod must have an address.
pub(crate) async fn pod(
    inner: &Arc<Inner>,
    namespace: Option<&str>,
    id: &str,
) -> Result<Location, ApiError> {
    let (namespace, split) = namespaced_id(namespace, id, "pod")?;
    let pods = resource(inner, "pods")?;
    let pod = read::get(inner, &pods, Some(namespace), split.name).await?;
    let port = match split.port {
        "" => first_container_port(&pod).unwrap_or(if split.tls { 443 } else { 80 }),
        p => numeric_port(p, &pod_ip_text(&pod))?,
    };
    pod_port(&pod, port, split.tls).map(Location::Pod)
}

/// `services/NAME[:PORT]/proxy`: a ready address of the service's endpoints that serves the
/// port (by number, the service port's name; by name, that name), as upstream picks one.
pub(crate) async fn service(
    inner: &Arc<Inner>,
    namespace: Option<&str>,
    id: &str,
) -> Result<Location, ApiError> {
    let (namespace, split) = namespaced_id(namespace, id, "service")?;
    let name = split.name;
    let mut port_name = split.port.to_string();
    if let Ok(number) = split.port.parse::<i64>() {
        let services = resource(inner, "services")?;
        let svc = read::get(inner, &services, Some(namespace), name).await?;
        let ports = svc.pointer("/spec/ports").and_then(Value::as_array);
        let found = ports
            .into_iter()
            .flatten()
            .find(|p| p.get("port").and_then(Value::as_i64) == Some(number));
        let Some(found) = found else {
            return Err(ApiError::unavailable(format!(
                "no service port {number} found for service {name:?}"
            )));
        };
        port_name = found
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
    }
    let endpoints = resource(inner, "endpoints")?;
    let eps = read::get(inner, &endpoints, Some(namespace), name).await?;
    let subsets = eps
        .get("subsets")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if subsets.is_empty() {
        return Err(no_endpoints(name));
    }
    let pods = resource(inner, "pods")?;
    for subset in &subsets {
        let ports = subset.get("ports").and_then(Value::as_array);
        let Some(port) = ports
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or_default() == port_name)
        else {
            continue;
        };
        let Some(number) = port
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        let addresses = subset.get("addresses").and_then(Value::as_array);
        for address in addresses.into_iter().flatten() {
            match endpoint_pod(inner, &pods, namespace, address).await {
                Some(pod) => return pod_port(&pod, number, split.tls).map(Location::Pod),
                None => tracing::debug!(
                    service = name,
                    ?address,
                    "endpoint address is not a valid pod address; skipped"
                ),
            }
        }
    }
    Err(no_endpoints(id))
}

fn no_endpoints(name: &str) -> ApiError {
    ApiError::unavailable(format!("no endpoints available for service {name:?}"))
}

/// The pod an endpoint address names, if it still has that address (upstream's
/// `isValidAddress`).
async fn endpoint_pod(
    inner: &Arc<Inner>,
    pods: &ResourceInfo,
    namespace: &str,
    address: &Value,
) -> Option<Value> {
    let target = address.get("targetRef")?;
    if target.get("kind").and_then(Value::as_str) != Some("Pod") {
        return None;
    }
    let name = target.get("name").and_then(Value::as_str)?;
    let ns = target
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or(namespace);
    let pod = read::get(inner, pods, Some(ns), name).await.ok()?;
    let ip = address.get("ip").and_then(Value::as_str)?;
    let valid = pod_ips(&pod).any(|p| p == ip);
    valid.then_some(pod)
}

/// `nodes/NAME[:PORT]/proxy`: the node agent's own server. Other ports of the node are not
/// reachable from here.
pub(crate) async fn node(inner: &Arc<Inner>, id: &str) -> Result<Location, ApiError> {
    let split = split_scheme_name_port(id)
        .ok_or_else(|| ApiError::bad_request(format!("invalid node request {id:?}")))?;
    let nodes = resource(inner, "nodes")?;
    let node = read::get(inner, &nodes, None, split.name).await?;
    let kubelet_port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/port")
        .and_then(Value::as_u64)
        .unwrap_or(u64::from(KUBELET_PORT));
    if !split.port.is_empty() && split.port != kubelet_port.to_string() {
        return Err(ApiError::unavailable(format!(
            "error trying to reach service: only the node agent's port {kubelet_port} of node {:?} is reachable, not {:?}",
            split.name, split.port
        )));
    }
    Ok(Location::Kubelet {
        node: split.name.to_string(),
    })
}

fn first_container_port(pod: &Value) -> Option<u16> {
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array)?;
    containers.iter().find_map(|c| {
        c.pointer("/ports/0/containerPort")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
    })
}

/// A port given in the name must be a number: upstream dials `ip:port`, and a name there
/// fails to dial (503).
fn numeric_port(port: &str, ip: &str) -> Result<u16, ApiError> {
    port.parse::<u16>()
        .map_err(|_| super::transport::unreachable(&format!("{ip}:{port}"), "unknown port"))
}

fn pod_ip_text(pod: &Value) -> String {
    pod.pointer("/status/podIP")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn pod_ips(pod: &Value) -> impl Iterator<Item = &str> {
    let primary = pod.pointer("/status/podIP").and_then(Value::as_str);
    let all = pod
        .pointer("/status/podIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("ip").and_then(Value::as_str));
    primary.into_iter().chain(all)
}

/// The pod's port, if the pod has a unicast address and a node (upstream refuses others
/// with "address not allowed").
fn pod_port(pod: &Value, port: u16, tls: bool) -> Result<PodPort, ApiError> {
    let ip: IpAddr = pod_ip_text(pod)
        .parse()
        .ok()
        .filter(|ip: &IpAddr| !ip.is_unspecified() && !ip.is_loopback() && !ip.is_multicast())
        .ok_or_else(|| ApiError::bad_request("address not allowed"))?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("address not allowed"))?;
    Ok(PodPort {
        node: node.to_string(),
        namespace: meta_str(pod, "namespace").unwrap_or_default().to_string(),
        pod: meta_str(pod, "name").unwrap_or_default().to_string(),
        pod_uid: meta_str(pod, "uid").unwrap_or_default().to_string(),
        ip,
        port,
        tls,
    })
}
