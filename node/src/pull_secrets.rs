//! The registry credentials of a pod's pulls, as the kubelet's `getPullSecretsForPod` and
//! `MakeDockerKeyring` gather them: the Secrets `spec.imagePullSecrets` names (else the
//! ones its ServiceAccount names, which upstream's ServiceAccount admission would have
//! copied into the pod), `kubernetes.io/dockerconfigjson` and `kubernetes.io/dockercfg`
//! only. A Secret that cannot be read is skipped (the pull goes on without it); one whose
//! content does not parse fails the pull.

use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::Api;
use kybernetes_runtime::PullAuth;
use tracing::debug;

const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
const DOCKER_CFG: &str = "kubernetes.io/dockercfg";

/// The credentials a pod's pulls use.
pub(crate) struct PodPullSecrets {
    /// What the readable Secrets hold.
    pub(crate) auth: PullAuth,
    /// Secrets that could not be read, for the `FailedToRetrieveImagePullSecret` event.
    pub(crate) missing: Vec<String>,
}

/// The names of the Secrets `pod`'s pulls use.
async fn secret_names(client: &kube::Client, pod: &Pod, namespace: &str) -> Vec<String> {
    let named: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten())
        .map(|r| r.name.clone())
        // API validation lets empty names through; the kubelet ignores them.
        .filter(|n| !n.is_empty())
        .collect();
    if !named.is_empty() {
        return named;
    }
    let account = crate::volume_payload::service_account_name(pod);
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(&account).await {
        Ok(sa) => sa
            .iter()
            .flat_map(|sa| sa.image_pull_secrets.iter().flatten())
            .map(|r| r.name.clone())
            .filter(|n| !n.is_empty())
            .collect(),
        Err(e) => {
            debug!(namespace, account, error = %e, "reading the service account's image pull secrets failed");
            Vec::new()
        }
    }
}

/// Reads the pull secrets of `pod`. `Err` carries the message of a Secret whose content is
/// not a docker config, which the kubelet reports as the pull's failure.
pub(crate) async fn pod_pull_secrets(
    client: &kube::Client,
    pod: &Pod,
) -> Result<PodPullSecrets, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = PodPullSecrets {
        auth: PullAuth::anonymous(),
        missing: Vec::new(),
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for name in secret_names(client, pod, namespace).await {
        let secret = match api.get_opt(&name).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                debug!(namespace, secret = %name, "image pull secret not found");
                out.missing.push(name);
                continue;
            }
            Err(e) => {
                debug!(namespace, secret = %name, error = %e, "reading an image pull secret failed");
                out.missing.push(name);
                continue;
            }
        };
        add_secret(&mut out.auth, &secret)
            .map_err(|e| format!("secret {namespace}/{name}: {e}"))?;
    }
    Ok(out)
}

/// Adds what a docker config Secret holds; other Secret types hold no credentials.
fn add_secret(auth: &mut PullAuth, secret: &Secret) -> Result<(), String> {
    let data = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .filter(|b| !b.is_empty())
    };
    match secret.type_.as_deref() {
        Some(DOCKER_CONFIG_JSON) => match data(".dockerconfigjson") {
            Some(bytes) => auth
                .add_docker_config_json(&bytes)
                .map_err(|e| e.to_string()),
            None => Ok(()),
        },
        Some(DOCKER_CFG) => match data(".dockercfg") {
            Some(bytes) => auth.add_docker_cfg(&bytes).map_err(|e| e.to_string()),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(type_: &str, key: &str, value: &str) -> Secret {
        Secret {
            type_: Some(type_.into()),
            data: Some([(key.to_string(), ByteString(value.as_bytes().to_vec()))].into()),
            ..Default::default()
        }
    }

    #[test]
    fn docker_config_secrets_add_credentials_and_other_types_do_not() {
        let mut auth = PullAuth::anonymous();
        add_secret(
            &mut auth,
            &secret(
                DOCKER_CONFIG_JSON,
                ".dockerconfigjson",
                r#"{"auths":{"reg.io":{"username":"u","password":"p"}}}"#,
            ),
        )
        .expect("json");
        add_secret(
            &mut auth,
            &secret(DOCKER_CFG, ".dockercfg", r#"{"old.io":{"auth":"dTpw"}}"#),
        )
        .expect("cfg");
        add_secret(
            &mut auth,
            &secret(
                "Opaque",
                ".dockerconfigjson",
                r#"{"auths":{"x.io":{"auth":"dTpw"}}}"#,
            ),
        )
        .expect("opaque");
        assert!(auth.for_reference("reg.io/a/b:1").is_some());
        assert!(auth.for_reference("old.io/a/b:1").is_some());
        assert!(auth.for_reference("x.io/a/b:1").is_none());
        let err = add_secret(
            &mut auth,
            &secret(DOCKER_CONFIG_JSON, ".dockerconfigjson", "nope"),
        )
        .expect_err("bad json");
        assert!(err.contains("does not parse"), "{err}");
    }
}
