//! The VolumeBinding PreBind step (upstream's `BindPodVolumes`): before a pod is bound to its
//! node, static volumes chosen for its delayed claims get their `claimRef`, claims to
//! provision get `volume.kubernetes.io/selected-node`, and the pod waits until the PV
//! controller has bound every claim.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::await_condition;
use kybernetes_core::persistent_volume::{
    BOUND_BY_CONTROLLER_ANNOTATION, SELECTED_NODE_ANNOTATION,
};
use serde_json::json;

use crate::error::{Error, Result};
use crate::volumes::VolumeDecisions;

/// How long a pod waits for its claims to be bound (upstream's `bindTimeoutSeconds`).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(600);

fn full_name(claim: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        claim.metadata.namespace.as_deref().unwrap_or_default(),
        claim.metadata.name.as_deref().unwrap_or_default()
    )
}

fn claims_api(client: &kube::Client, claim: &PersistentVolumeClaim) -> Api<PersistentVolumeClaim> {
    Api::namespaced(
        client.clone(),
        claim.metadata.namespace.as_deref().unwrap_or("default"),
    )
}

/// Writes the decisions for `node` and waits until every claim involved is `Bound`.
pub(crate) async fn bind_pod_volumes(
    client: &kube::Client,
    decisions: &VolumeDecisions,
    node: &str,
) -> Result<()> {
    for (claim, volume) in &decisions.bind {
        bind_volume(client, claim, volume).await?;
    }
    for claim in &decisions.provision {
        let patch = json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: node}}});
        let name = claim.metadata.name.as_deref().unwrap_or_default();
        claims_api(client, claim)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| Error::Api {
                action: format!("select node {node} for claim {}", full_name(claim)),
                source,
            })?;
    }
    let claims = decisions
        .bind
        .iter()
        .map(|(c, _)| c)
        .chain(&decisions.provision);
    for claim in claims {
        let api = claims_api(client, claim);
        let name = claim.metadata.name.as_deref().unwrap_or_default();
        let bound = |c: Option<&PersistentVolumeClaim>| {
            c.and_then(|c| c.status.as_ref())
                .and_then(|s| s.phase.as_deref())
                == Some("Bound")
        };
        match tokio::time::timeout(BIND_TIMEOUT, await_condition(api, name, bound)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(claim = %full_name(claim), error = %e, "claim wait failed")
            }
            Err(_) => {
                return Err(Error::VolumeBindingTimeout {
                    claim: full_name(claim),
                });
            }
        }
    }
    Ok(())
}

/// Pre-binds a static volume to the claim (upstream's `bindAPIUpdate`); the PV controller
/// completes the binding.
async fn bind_volume(
    client: &kube::Client,
    claim: &PersistentVolumeClaim,
    volume: &PersistentVolume,
) -> Result<()> {
    let name = volume.metadata.name.as_deref().unwrap_or_default();
    let patch = json!({
        "metadata": {
            "resourceVersion": volume.metadata.resource_version,
            "annotations": {BOUND_BY_CONTROLLER_ANNOTATION: "yes"},
        },
        "spec": {"claimRef": {
            "kind": "PersistentVolumeClaim",
            "apiVersion": "v1",
            "namespace": claim.metadata.namespace,
            "name": claim.metadata.name,
            "uid": claim.metadata.uid,
            "resourceVersion": claim.metadata.resource_version,
        }},
    });
    let api: Api<PersistentVolume> = Api::all(client.clone());
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::Api {
            action: format!("bind volume {name} to claim {}", full_name(claim)),
            source,
        })?;
    Ok(())
}
