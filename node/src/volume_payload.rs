//! The files of API-data volumes (`configMap`, `secret`, `downwardAPI` and `projected`), as
//! upstream's volume plugins compute them before the atomic writer writes them: all keys or
//! the listed `items` with their `path` and `mode`, `defaultMode`, and `optional`.

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, ServiceAccount,
    ServiceAccountTokenProjection,
};
use kube::Api;
use kube::api::PostParams;

use crate::atomic_writer::{FileProjection, Payload};
use crate::env::{EnvInputs, pod_field, resource_field};

/// Upstream's default file mode for every API-data volume.
pub(crate) const DEFAULT_MODE: i32 = 0o644;

/// Reads objects the way the kubelet's object managers report them: not found is `None`,
/// and the error text names the resource in the singular, as upstream's events do.
pub(crate) struct ObjectReader<'a> {
    pub(crate) client: &'a kube::Client,
    pub(crate) namespace: &'a str,
}

impl ObjectReader<'_> {
    pub(crate) async fn config_map(&self, name: &str) -> Result<Option<ConfigMap>, String> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), self.namespace);
        api.get_opt(name)
            .await
            .map_err(|e| format!("failed to get configmap {}/{name}: {e}", self.namespace))
    }

    pub(crate) async fn secret(&self, name: &str) -> Result<Option<Secret>, String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), self.namespace);
        api.get_opt(name)
            .await
            .map_err(|e| format!("failed to get secret {}/{name}: {e}", self.namespace))
    }
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        out.insert(k.clone(), v.0.clone());
    }
    out
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

fn mode_of(mode: Option<i32>, default_mode: i32) -> u32 {
    u32::try_from(mode.unwrap_or(default_mode)).unwrap_or(0o644) & 0o7777
}

/// Upstream's `MakePayload`: every key as a file named after it, or only `items`. A listed
/// key the object lacks is an error (`missing`, in upstream's words) unless the source is
/// optional.
fn key_payload(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    missing: &str,
    out: &mut Payload,
) -> Result<(), String> {
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                out.insert(
                    k.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode: mode_of(None, default_mode),
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => {
                        out.insert(
                            item.path.clone(),
                            FileProjection {
                                data: v.clone(),
                                mode: mode_of(item.mode, default_mode),
                            },
                        );
                    }
                    None if optional => {}
                    None => {
                        return Err(format!("{missing}: {}", item.key));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The payload of a `configMap` source; `None` data with `optional` gives no files.
pub(crate) async fn config_map_payload(
    reader: &ObjectReader<'_>,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    out: &mut Payload,
) -> Result<(), String> {
    match reader.config_map(name).await? {
        Some(cm) => key_payload(
            &config_map_data(&cm),
            items,
            default_mode,
            optional,
            "configmap references non-existent config key",
            out,
        ),
        None if optional => Ok(()),
        None => Err(format!("configmap \"{name}\" not found")),
    }
}

/// The payload of a `secret` source.
pub(crate) async fn secret_payload(
    reader: &ObjectReader<'_>,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    out: &mut Payload,
) -> Result<(), String> {
    match reader.secret(name).await? {
        Some(s) => key_payload(
            &secret_data(&s),
            items,
            default_mode,
            optional,
            "references non-existent secret key",
            out,
        ),
        None if optional => Ok(()),
        None => Err(format!("secret \"{name}\" not found")),
    }
}

/// The payload of `downwardAPI` items: pod fields (`fieldRef`) and container resources
/// (`resourceFieldRef`, which names its container).
pub(crate) fn downward_api_payload(
    inputs: &EnvInputs<'_>,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
    out: &mut Payload,
) -> Result<(), String> {
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            pod_field(inputs, &f.field_path).map_err(|e| e.0)?
        } else if let Some(r) = &item.resource_field_ref {
            resource_field(inputs, r).map_err(|e| e.0)?
        } else {
            String::new()
        };
        out.insert(
            item.path.clone(),
            FileProjection {
                data: value.into_bytes(),
                mode: mode_of(item.mode, default_mode),
            },
        );
    }
    Ok(())
}

/// A bound service account token for the pod (TokenRequest), as upstream's token manager
/// fetches for a `serviceAccountToken` projection.
/// The ServiceAccount a pod runs as: `serviceAccountName`, `default` when unset.
pub(crate) fn service_account_name(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into())
}

pub(crate) async fn service_account_token(
    client: &kube::Client,
    pod: &Pod,
    projection: &ServiceAccountTokenProjection,
) -> Result<String, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let sa = service_account_name(pod);
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: projection.audience.iter().cloned().collect(),
            expiration_seconds: Some(projection.expiration_seconds.unwrap_or(3600)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let issued = api
        .create_token_request(&sa, &PostParams::default(), &request)
        .await
        .map_err(|e| {
            format!("failed to fetch token: serviceaccounts \"{sa}\" token request: {e}")
        })?;
    issued
        .status
        .map(|s| s.token)
        .ok_or_else(|| "failed to fetch token: the token request has no status".into())
}
