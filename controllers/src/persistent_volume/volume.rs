//! Volume sync (upstream's `syncVolume`) and reclaiming released volumes
//! (`reclaimVolume`: Retain, Delete; Recycle is refused).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use kybernetes_core::persistent_volume::{PROVISIONED_BY_ANNOTATION, annotation};

use super::binding::{set_volume_phase, unbind_volume};
use super::{Context, Result, SYNC_PERIOD, api_err};
use crate::reconcile::is_not_found;

/// Syncs one volume; every volume is synced again after [`SYNC_PERIOD`].
pub(crate) async fn reconcile(volume: Arc<PersistentVolume>, ctx: Arc<Context>) -> Result<Action> {
    ctx.caches_ready().await;
    sync(&ctx, &volume).await?;
    ctx.volume_backoff
        .reset(&ObjectRef::from_obj(volume.as_ref()));
    Ok(Action::requeue(SYNC_PERIOD))
}

fn phase(volume: &PersistentVolume) -> Option<&str> {
    volume.status.as_ref().and_then(|s| s.phase.as_deref())
}

async fn sync(ctx: &Context, volume: &PersistentVolume) -> Result<()> {
    let claim_ref = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let Some(claim_ref) = claim_ref else {
        // Unused.
        return set_volume_phase(ctx, volume, "Available", None).await;
    };
    if claim_ref.uid.as_deref().is_none_or(str::is_empty) {
        // Pre-bound by the user; the claim's sync binds it.
        return set_volume_phase(ctx, volume, "Available", None).await;
    }
    let (Some(ns), Some(name)) = (claim_ref.namespace.as_deref(), claim_ref.name.as_deref()) else {
        return set_volume_phase(ctx, volume, "Available", None).await;
    };
    let claim = match ctx.claims.get(&ObjectRef::new(name).within(ns)) {
        Some(c) => Some(c),
        // The cache may lag behind a claim just created: ask the API server before releasing.
        None => live_claim(ctx, ns, name).await?.map(Arc::new),
    };
    let claim = claim.filter(|c| c.uid() == claim_ref.uid);
    let Some(claim) = claim else {
        if !matches!(phase(volume), Some("Released" | "Failed")) {
            set_volume_phase(ctx, volume, "Released", None).await?;
        }
        return reclaim(ctx, volume).await;
    };
    let claim_volume = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("");
    if claim_volume.is_empty() {
        // Binding is half done (the claim's half is next), or the claim lost its link; either
        // way the claim's sync completes it.
        return Ok(());
    }
    if claim_volume == volume.name_any() {
        return set_volume_phase(ctx, volume, "Bound", None).await;
    }
    // The claim is bound to another volume.
    let provisioned = annotation(&volume.metadata.annotations, PROVISIONED_BY_ANNOTATION).is_some();
    let policy = volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
    if provisioned && policy == Some("Delete") {
        if !matches!(phase(volume), Some("Released" | "Failed")) {
            set_volume_phase(ctx, volume, "Released", None).await?;
        }
        return reclaim(ctx, volume).await;
    }
    unbind_volume(ctx, volume).await
}

async fn live_claim(ctx: &Context, ns: &str, name: &str) -> Result<Option<PersistentVolumeClaim>> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    match api.get(name).await {
        Ok(c) => Ok(Some(c)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(api_err(format!("read claim {ns}/{name}"))(e)),
    }
}

/// Applies the reclaim policy of a released volume.
async fn reclaim(ctx: &Context, volume: &PersistentVolume) -> Result<()> {
    let policy = volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    match policy {
        "Retain" => Ok(()),
        "Delete" => delete_volume(ctx, volume).await,
        _ => {
            if phase(volume) == Some("Failed") {
                return Ok(());
            }
            let message = "no volume plugin matched name: kubernetes.io/recycler";
            ctx.events
                .record(
                    volume,
                    "Warning",
                    "VolumeFailedRecycle",
                    message.to_string(),
                )
                .await;
            set_volume_phase(
                ctx,
                volume,
                "Failed",
                Some(("VolumeFailedRecycle", message)),
            )
            .await
        }
    }
}

/// Upstream's `deleteVolumeOperation`: the provisioner removes the storage of a volume it
/// created, then the object goes (held by `pv-protection` until it is no longer `Bound`).
async fn delete_volume(ctx: &Context, volume: &PersistentVolume) -> Result<()> {
    if volume.meta().deletion_timestamp.is_some() {
        return Ok(());
    }
    let provisioned_by = annotation(&volume.metadata.annotations, PROVISIONED_BY_ANNOTATION);
    if let Some(provisioner) = provisioned_by.and_then(|p| ctx.provisioners.get(p))
        && let Err(e) = provisioner.delete(volume).await
    {
        let message = e.to_string();
        ctx.events
            .record(volume, "Warning", "VolumeFailedDelete", message.clone())
            .await;
        return set_volume_phase(
            ctx,
            volume,
            "Failed",
            Some(("VolumeFailedDelete", &message)),
        )
        .await;
    }
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: volume.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&volume.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(api_err(format!("delete volume {}", volume.name_any()))(e)),
    }
}
