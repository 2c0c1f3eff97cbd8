//! Binding a claim and a volume to each other, and the phases in their status (upstream's
//! `bind`, `bindVolumeToClaim`, `bindClaimToVolume`, `unbindVolume`, `updateVolumePhase` and
//! `updateClaimStatus`). Every spec write carries the resourceVersion it was computed from, so
//! a stale cache gives a conflict and a retry, never a lost update.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use kybernetes_core::persistent_volume::{
    BIND_COMPLETED_ANNOTATION, BOUND_BY_CONTROLLER_ANNOTATION, annotation, is_volume_bound_to_claim,
};
use serde_json::{Value, json};

use super::{Context, Result, api_err};
use crate::api_values::to_time;

/// Binds `volume` and `claim` to each other and marks both `Bound`.
pub(super) async fn bind(
    ctx: &Context,
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Result<()> {
    let volume = bind_volume_to_claim(ctx, volume, claim).await?;
    set_volume_phase(ctx, &volume, "Bound", None).await?;
    let claim = bind_claim_to_volume(ctx, claim, &volume).await?;
    set_claim_bound(ctx, &claim, &volume).await
}

/// Points the volume's `claimRef` at the claim (with its uid); `bound-by-controller` unless
/// the user had pre-bound it.
async fn bind_volume_to_claim(
    ctx: &Context,
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Result<PersistentVolume> {
    let pre_bound = is_volume_bound_to_claim(volume, claim);
    let has_uid = volume
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .and_then(|r| r.uid.as_deref())
        .is_some_and(|u| !u.is_empty());
    let needs_annotation = !pre_bound
        && annotation(&volume.metadata.annotations, BOUND_BY_CONTROLLER_ANNOTATION).is_none();
    if pre_bound && has_uid {
        return Ok(volume.clone());
    }
    let mut patch = json!({
        "metadata": {"resourceVersion": volume.resource_version()},
        "spec": {"claimRef": {
            "kind": "PersistentVolumeClaim",
            "apiVersion": "v1",
            "namespace": claim.namespace(),
            "name": claim.name_any(),
            "uid": claim.uid(),
            "resourceVersion": claim.resource_version(),
        }},
    });
    if needs_annotation {
        patch["metadata"]["annotations"] = json!({BOUND_BY_CONTROLLER_ANNOTATION: "yes"});
    }
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    api.patch(
        &volume.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(api_err(format!(
        "bind volume {} to claim",
        volume.name_any()
    )))
}

/// Sets the claim's `volumeName` (with `bound-by-controller` when the controller chose the
/// volume) and `bind-completed`.
async fn bind_claim_to_volume(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    volume: &PersistentVolume,
) -> Result<PersistentVolumeClaim> {
    let chosen_here =
        claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()) != Some(&volume.name_any());
    let annotations = &claim.metadata.annotations;
    let mut add = serde_json::Map::new();
    if chosen_here && annotation(annotations, BOUND_BY_CONTROLLER_ANNOTATION).is_none() {
        add.insert(BOUND_BY_CONTROLLER_ANNOTATION.into(), json!("yes"));
    }
    if annotation(annotations, BIND_COMPLETED_ANNOTATION).is_none() {
        add.insert(BIND_COMPLETED_ANNOTATION.into(), json!("yes"));
    }
    if !chosen_here && add.is_empty() {
        return Ok(claim.clone());
    }
    let mut patch =
        json!({"metadata": {"resourceVersion": claim.resource_version(), "annotations": add}});
    if chosen_here {
        patch["spec"] = json!({"volumeName": volume.name_any()});
    }
    let action = format!("bind claim {} to volume", claim.name_any());
    patch_claim(ctx, claim, &patch, action).await
}

/// Undoes the volume's half of a binding (upstream's `unbindVolume`): a volume the controller
/// bound loses its `claimRef`, one the user pre-bound keeps it without the uid. It is
/// `Available` again.
pub(super) async fn unbind_volume(ctx: &Context, volume: &PersistentVolume) -> Result<()> {
    let by_controller =
        annotation(&volume.metadata.annotations, BOUND_BY_CONTROLLER_ANNOTATION).is_some();
    let patch = if by_controller {
        json!({
            "metadata": {"resourceVersion": volume.resource_version(), "annotations": {BOUND_BY_CONTROLLER_ANNOTATION: null}},
            "spec": {"claimRef": null},
        })
    } else {
        json!({
            "metadata": {"resourceVersion": volume.resource_version()},
            "spec": {"claimRef": {"uid": null, "resourceVersion": null}},
        })
    };
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let volume = api
        .patch(
            &volume.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(api_err(format!("unbind volume {}", volume.name_any())))?;
    set_volume_phase(ctx, &volume, "Available", None).await
}

/// Sets the volume's phase (and `lastPhaseTransitionTime` when it changes), with an optional
/// (reason, message).
pub(super) async fn set_volume_phase(
    ctx: &Context,
    volume: &PersistentVolume,
    phase: &str,
    failure: Option<(&str, &str)>,
) -> Result<()> {
    let status = volume.status.as_ref();
    let current = status.and_then(|s| s.phase.as_deref());
    let (reason, message) = match failure {
        Some((r, m)) => (json!(r), json!(m)),
        None => (Value::Null, Value::Null),
    };
    let same_reason = status.and_then(|s| s.reason.as_deref()) == reason.as_str();
    if current == Some(phase) && same_reason {
        return Ok(());
    }
    let mut new_status = json!({"phase": phase, "reason": reason, "message": message});
    if current != Some(phase) {
        new_status["lastPhaseTransitionTime"] = json!(to_time(ctx.clock.now()));
    }
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    api.patch_status(
        &volume.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": new_status})),
    )
    .await
    .map_err(api_err(format!("set volume {} {phase}", volume.name_any())))?;
    Ok(())
}

/// Marks the claim `Bound` with the volume's capacity and access modes.
async fn set_claim_bound(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    volume: &PersistentVolume,
) -> Result<()> {
    let spec = volume.spec.as_ref();
    let capacity = spec.and_then(|s| s.capacity.clone());
    let modes = spec.and_then(|s| s.access_modes.clone());
    let status = claim.status.as_ref();
    if status.and_then(|s| s.phase.as_deref()) == Some("Bound")
        && status.and_then(|s| s.capacity.as_ref()) == capacity.as_ref()
        && status.and_then(|s| s.access_modes.as_ref()) == modes.as_ref()
    {
        return Ok(());
    }
    let patch = json!({"status": {"phase": "Bound", "capacity": capacity, "accessModes": modes}});
    patch_claim_status(ctx, claim, &patch).await
}

/// Sets the claim's phase (`Pending` or `Lost`), keeping what it reports of its volume.
pub(super) async fn set_claim_phase(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    phase: &str,
) -> Result<()> {
    if claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase) {
        return Ok(());
    }
    patch_claim_status(ctx, claim, &json!({"status": {"phase": phase}})).await
}

async fn patch_claim_status(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    patch: &Value,
) -> Result<()> {
    claims_api(ctx, claim)
        .patch_status(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .map_err(api_err(format!(
            "update status of claim {}",
            claim.name_any()
        )))?;
    Ok(())
}

/// Merge-patches `claim`; a failure names `action`.
pub(super) async fn patch_claim(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    patch: &Value,
    action: String,
) -> Result<PersistentVolumeClaim> {
    claims_api(ctx, claim)
        .patch(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .map_err(api_err(action))
}

/// The claims API of the claim's namespace.
pub(super) fn claims_api(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
) -> Api<PersistentVolumeClaim> {
    Api::namespaced(
        ctx.client.clone(),
        claim.meta().namespace.as_deref().unwrap_or("default"),
    )
}
