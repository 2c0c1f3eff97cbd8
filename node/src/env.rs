//! A container's environment, as upstream's `makeEnvironmentVariables`: `envFrom` first
//! (ConfigMaps and Secrets, with a prefix), then `env` in order, where each `value` may
//! reference earlier variables with `$(VAR)` and `valueFrom` reads a ConfigMap key, a Secret
//! key, a pod field or a resource limit; last the Service variables
//! ([`service_env`](crate::service_env)) the container does not define itself, which `$(VAR)`
//! may reference too. Errors become `CreateContainerConfigError`.

use std::collections::HashMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::Api;

use crate::expansion::expand;
use kybernetes_core::quantity::parse_milli;

/// Why the environment could not be built (the `CreateContainerConfigError` message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvError(pub(crate) String);

/// What the environment may refer to besides the pod spec.
pub(crate) struct EnvInputs<'a> {
    pub(crate) pod: &'a Pod,
    pub(crate) container: &'a Container,
    pub(crate) pod_ip: Option<IpAddr>,
    pub(crate) host_ip: IpAddr,
    /// Node allocatable CPU and memory, in thousandths (the default for unset limits).
    pub(crate) allocatable_milli: (i128, i128),
}

/// The ordered environment, later definitions replacing earlier ones in place.
#[derive(Default)]
struct Environment {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl Environment {
    fn set(&mut self, key: String, value: String) {
        match self.index.get(&key) {
            Some(&i) => self.vars[i].1 = value,
            None => {
                self.index.insert(key.clone(), self.vars.len());
                self.vars.push((key, value));
            }
        }
    }

    fn get(&self, key: &str) -> Option<String> {
        self.index.get(key).map(|&i| self.vars[i].1.clone())
    }
}

/// Reads ConfigMaps and Secrets once per container start.
struct Sources<'a> {
    client: &'a kube::Client,
    namespace: &'a str,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl Sources<'_> {
    async fn config_map(&mut self, name: &str) -> Result<Option<&ConfigMap>, EnvError> {
        if !self.config_maps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), self.namespace);
            let cm = api.get_opt(name).await.map_err(|e| {
                EnvError(format!(
                    "couldn't get configMap {}/{name}: {e}",
                    self.namespace
                ))
            })?;
            self.config_maps.insert(name.to_string(), cm);
        }
        Ok(self.config_maps.get(name).and_then(Option::as_ref))
    }

    async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, EnvError> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), self.namespace);
            let s = api.get_opt(name).await.map_err(|e| {
                EnvError(format!(
                    "couldn't get secret {}/{name}: {e}",
                    self.namespace
                ))
            })?;
            self.secrets.insert(name.to_string(), s);
        }
        Ok(self.secrets.get(name).and_then(Option::as_ref))
    }
}

fn config_map_entries(cm: &ConfigMap) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = cm.data.clone().unwrap_or_default().into_iter().collect();
    for (k, v) in cm.binary_data.clone().unwrap_or_default() {
        out.push((k, String::from_utf8_lossy(&v.0).into_owned()));
    }
    out
}

/// A Secret's decoded data (and `stringData`, which the API server should have merged in).
fn secret_entries(s: &Secret) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = s
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    for (k, v) in s.string_data.clone().unwrap_or_default() {
        if !out.iter().any(|(ok, _)| *ok == k) {
            out.push((k, v));
        }
    }
    out
}

/// Builds the environment of `inputs.container`, with the Service variables `services`.
pub(crate) async fn make_environment(
    client: &kube::Client,
    inputs: &EnvInputs<'_>,
    services: &[(String, String)],
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = inputs
        .pod
        .metadata
        .namespace
        .as_deref()
        .unwrap_or("default");
    let mut sources = Sources {
        client,
        namespace,
        config_maps: HashMap::new(),
        secrets: HashMap::new(),
    };
    let mut env = Environment::default();
    for from in inputs.container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match sources.config_map(&r.name).await? {
                Some(cm) => config_map_entries(cm)
                    .into_iter()
                    .for_each(|(k, v)| env.set(format!("{prefix}{k}"), v)),
                None if r.optional == Some(true) => {}
                None => return Err(EnvError(format!("configmap \"{}\" not found", r.name))),
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secret(&r.name).await? {
                Some(s) => secret_entries(s)
                    .into_iter()
                    .for_each(|(k, v)| env.set(format!("{prefix}{k}"), v)),
                None if r.optional == Some(true) => {}
                None => return Err(EnvError(format!("secret \"{}\" not found", r.name))),
            }
        }
    }
    for var in inputs.container.env.iter().flatten() {
        let value = match &var.value_from {
            Some(from) if var.value.as_deref().unwrap_or("").is_empty() => {
                match value_from(&mut sources, inputs, namespace, from).await? {
                    Some(v) => v,
                    None => continue,
                }
            }
            _ => expand(var.value.as_deref().unwrap_or(""), |k| {
                env.get(k).or_else(|| {
                    services
                        .iter()
                        .find(|(name, _)| name == k)
                        .map(|(_, v)| v.clone())
                })
            }),
        };
        env.set(var.name.clone(), value);
    }
    for (name, value) in services {
        if !env.index.contains_key(name) {
            env.set(name.clone(), value.clone());
        }
    }
    Ok(env.vars)
}

/// The value of one `valueFrom`; `None` for an optional reference that is absent.
async fn value_from(
    sources: &mut Sources<'_>,
    inputs: &EnvInputs<'_>,
    namespace: &str,
    from: &k8s_openapi::api::core::v1::EnvVarSource,
) -> Result<Option<String>, EnvError> {
    if let Some(r) = &from.config_map_key_ref {
        let optional = r.optional == Some(true);
        return match sources.config_map(&r.name).await? {
            None if optional => Ok(None),
            None => Err(EnvError(format!("configmap \"{}\" not found", r.name))),
            Some(cm) => match config_map_entries(cm)
                .into_iter()
                .find(|(k, _)| *k == r.key)
            {
                Some((_, v)) => Ok(Some(v)),
                None if optional => Ok(None),
                None => Err(EnvError(format!(
                    "couldn't find key {} in ConfigMap {namespace}/{}",
                    r.key, r.name
                ))),
            },
        };
    }
    if let Some(r) = &from.secret_key_ref {
        let optional = r.optional == Some(true);
        return match sources.secret(&r.name).await? {
            None if optional => Ok(None),
            None => Err(EnvError(format!("secret \"{}\" not found", r.name))),
            Some(s) => match secret_entries(s).into_iter().find(|(k, _)| *k == r.key) {
                Some((_, v)) => Ok(Some(v)),
                None if optional => Ok(None),
                None => Err(EnvError(format!(
                    "couldn't find key {} in Secret {namespace}/{}",
                    r.key, r.name
                ))),
            },
        };
    }
    if let Some(f) = &from.field_ref {
        return pod_field(inputs, &f.field_path).map(Some);
    }
    if let Some(r) = &from.resource_field_ref {
        return resource_field(inputs, r).map(Some);
    }
    Ok(Some(String::new()))
}

/// `metadata.labels['app']` → `Some(("labels", "app"))`.
fn subscript<'a>(path: &'a str, field: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(field)?.strip_prefix("['")?;
    rest.strip_suffix("']")
}

fn format_map(m: &std::collections::BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A `fieldRef` value (upstream `podFieldSelectorRuntimeValue`).
pub(crate) fn pod_field(inputs: &EnvInputs<'_>, path: &str) -> Result<String, EnvError> {
    let pod = inputs.pod;
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let empty = std::collections::BTreeMap::new();
    let v = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref().unwrap_or(&empty)),
        "metadata.annotations" => format_map(meta.annotations.as_ref().unwrap_or(&empty)),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => inputs.host_ip.to_string(),
        "status.podIP" | "status.podIPs" => {
            inputs.pod_ip.map(|ip| ip.to_string()).unwrap_or_default()
        }
        p => {
            if let Some(k) = subscript(p, "metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(k).cloned())
                    .unwrap_or_default()
            } else if let Some(k) = subscript(p, "metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|a| a.get(k).cloned())
                    .unwrap_or_default()
            } else {
                return Err(EnvError(format!("unsupported fieldPath: {p}")));
            }
        }
    };
    Ok(v)
}

/// A `resourceFieldRef` value: unset limits default to the node's allocatable.
pub(crate) fn resource_field(
    inputs: &EnvInputs<'_>,
    r: &k8s_openapi::api::core::v1::ResourceFieldSelector,
) -> Result<String, EnvError> {
    let container = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
        None => inputs.container,
        Some(name) => inputs
            .pod
            .spec
            .as_ref()
            .and_then(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .find(|c| c.name == name)
            })
            .ok_or_else(|| EnvError(format!("container {name} not found")))?,
    };
    let resources = container.resources.clone().unwrap_or_default();
    let (kind, resource) = r
        .resource
        .split_once('.')
        .ok_or_else(|| EnvError(format!("unsupported container resource: {}", r.resource)))?;
    let list = if kind == "limits" {
        resources.limits
    } else {
        resources.requests
    };
    let set = list
        .as_ref()
        .and_then(|l| l.get(resource))
        .and_then(|q| parse_milli(&q.0));
    let value = match (set, kind, resource) {
        (Some(v), _, _) => v,
        (None, "limits", "cpu") => inputs.allocatable_milli.0,
        (None, "limits", "memory") => inputs.allocatable_milli.1,
        _ => 0,
    };
    let divisor = r
        .divisor
        .as_ref()
        .and_then(|d| parse_milli(&d.0))
        .filter(|d| *d > 0)
        .unwrap_or(1000);
    let out = if resource == "cpu" {
        ceil_div(value, divisor)
    } else {
        ceil_div(ceil_div(value, 1000), ceil_div(divisor, 1000).max(1))
    };
    Ok(out.to_string())
}

fn ceil_div(a: i128, b: i128) -> i128 {
    if b == 0 { a } else { (a + b - 1).div_euclid(b) }
}
