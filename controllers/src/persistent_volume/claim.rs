//! Claim sync (upstream's `syncClaim`, `syncUnboundClaim` and `syncBoundClaim`).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kybernetes_core::persistent_volume::{
    BETA_STORAGE_PROVISIONER_ANNOTATION, BIND_COMPLETED_ANNOTATION, BOUND_BY_CONTROLLER_ANNOTATION,
    MatchScope, PROVISIONED_BY_ANNOTATION, SELECTED_NODE_ANNOTATION,
    STORAGE_PROVISIONER_ANNOTATION, annotation, claim_class, claim_has_class, default_class,
    find_matching_volume, is_volume_bound_to_claim,
};
use serde_json::json;

use super::binding::{bind, patch_claim, set_claim_phase};
use super::{Context, Error, ProvisionRequest, Result, SYNC_PERIOD, api_err};
use crate::reconcile::is_already_exists;

/// Syncs one claim; every claim is synced again after [`SYNC_PERIOD`].
pub(crate) async fn reconcile(
    claim: Arc<PersistentVolumeClaim>,
    ctx: Arc<Context>,
) -> Result<Action> {
    ctx.caches_ready().await;
    if claim.metadata.deletion_timestamp.is_none() {
        if annotation(&claim.metadata.annotations, BIND_COMPLETED_ANNOTATION).is_some() {
            sync_bound(&ctx, &claim).await?;
        } else {
            sync_unbound(&ctx, &claim).await?;
        }
    }
    ctx.claim_backoff
        .reset(&ObjectRef::from_obj(claim.as_ref()));
    Ok(Action::requeue(SYNC_PERIOD))
}

/// Whether the claim's class binds only once a pod is scheduled (upstream's
/// `IsDelayBindingMode`).
fn delays_binding(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}

async fn sync_unbound(ctx: &Context, claim: &PersistentVolumeClaim) -> Result<()> {
    if !claim_has_class(claim) && assign_default_class(ctx, claim).await? {
        // The write brings the claim back with its class.
        return Ok(());
    }
    let class_name = claim_class(claim);
    let class = (!class_name.is_empty())
        .then(|| ctx.class(class_name))
        .flatten();
    let volume_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .filter(|n| !n.is_empty());
    let Some(volume_name) = volume_name else {
        return sync_unbound_unnamed(ctx, claim, class.as_deref()).await;
    };
    // The user (or a previous sync) named the volume.
    let Some(volume) = ctx.volumes.get(&ObjectRef::new(volume_name)) else {
        return set_claim_phase(ctx, claim, "Pending").await;
    };
    let unclaimed = volume.spec.as_ref().is_none_or(|s| s.claim_ref.is_none());
    if unclaimed {
        if let Some(problem) = volume_mismatch(&volume, claim) {
            ctx.events
                .record(claim, "Warning", "VolumeMismatch", problem)
                .await;
            return set_claim_phase(ctx, claim, "Pending").await;
        }
        return bind(ctx, &volume, claim).await;
    }
    if is_volume_bound_to_claim(&volume, claim) {
        return bind(ctx, &volume, claim).await;
    }
    if annotation(&claim.metadata.annotations, BOUND_BY_CONTROLLER_ANNOTATION).is_none() {
        let message = format!("volume {volume_name:?} already bound to a different claim.");
        ctx.events
            .record(claim, "Warning", "FailedBinding", message)
            .await;
    }
    set_claim_phase(ctx, claim, "Pending").await
}

/// An unbound claim without `volumeName`: the best matching volume, or provisioning.
async fn sync_unbound_unnamed(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    class: Option<&StorageClass>,
) -> Result<()> {
    let delay = delays_binding(class);
    let volumes = ctx.volumes.state();
    let scope = MatchScope::Controller {
        delay_binding: delay,
    };
    if let Some(volume) = find_matching_volume(claim, volumes.iter().map(Arc::as_ref), &scope) {
        return bind(ctx, volume, claim).await;
    }
    let selected_node = annotation(&claim.metadata.annotations, SELECTED_NODE_ANNOTATION);
    if delay && selected_node.is_none() {
        let message = "waiting for first consumer to be created before binding".to_string();
        ctx.events
            .record(claim, "Normal", "WaitForFirstConsumer", message)
            .await;
    } else if let Some(class) = class {
        provision(ctx, claim, class, selected_node).await?;
    } else if claim_class(claim).is_empty() {
        let message = "no persistent volumes available for this claim and no storage class is set"
            .to_string();
        ctx.events
            .record(claim, "Normal", "FailedBinding", message)
            .await;
    } else {
        let message = format!(
            "storageclass.storage.k8s.io {:?} not found",
            claim_class(claim)
        );
        ctx.events
            .record(claim, "Warning", "ProvisioningFailed", message)
            .await;
    }
    set_claim_phase(ctx, claim, "Pending").await
}

/// Upstream's retroactive default class: a claim that names no class gets the default one
/// once it exists. True if the claim was changed.
async fn assign_default_class(ctx: &Context, claim: &PersistentVolumeClaim) -> Result<bool> {
    let classes = ctx.classes.state();
    let Some(default) = default_class(classes.iter().map(Arc::as_ref)) else {
        return Ok(false);
    };
    let patch = json!({
        "metadata": {"resourceVersion": claim.resource_version()},
        "spec": {"storageClassName": default.name_any()},
    });
    let action = format!("assign the default class to claim {}", claim.name_any());
    patch_claim(ctx, claim, &patch, action).await?;
    Ok(true)
}

/// Why the named volume cannot serve the claim (upstream's `checkVolumeSatisfyClaim`).
fn volume_mismatch(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> Option<String> {
    use kybernetes_core::persistent_volume::{
        access_modes_fit, capacity_bytes, requested_bytes, volume_class, volume_mode_mismatch,
    };
    if capacity_bytes(volume) < requested_bytes(claim) {
        return Some("requested PV is too small".into());
    }
    if volume_class(volume) != claim_class(claim) {
        return Some("storageClassName does not match".into());
    }
    if volume_mode_mismatch(claim, volume) {
        return Some("incompatible volumeMode".into());
    }
    if !access_modes_fit(claim, volume) {
        return Some("incompatible accessMode".into());
    }
    None
}

/// Provisions a volume with the class's provisioner if the controller has it; otherwise
/// marks the claim for an external provisioner (upstream's `provisionClaim`).
async fn provision(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    selected_node: Option<&str>,
) -> Result<()> {
    let Some(provisioner) = ctx.provisioners.get(&class.provisioner) else {
        return wait_for_external_provisioner(ctx, claim, class).await;
    };
    let volume_name = format!("pvc-{}", claim.uid().unwrap_or_default());
    if ctx.volumes.get(&ObjectRef::new(&volume_name)).is_some() {
        // Already provisioned; binding follows once the volume is in the cache.
        return Ok(());
    }
    let request = ProvisionRequest {
        volume_name: volume_name.clone(),
        claim,
        class,
        selected_node,
    };
    let mut volume = match provisioner.provision(request).await {
        Ok(v) => v,
        Err(e) => {
            let message = format!(
                "failed to provision volume with StorageClass {:?}: {e}",
                class.name_any()
            );
            ctx.events
                .record(claim, "Warning", "ProvisioningFailed", message)
                .await;
            return Err(Error::Provision(e));
        }
    };
    complete_provisioned_volume(&mut volume, &volume_name, claim, class);
    let api: kube::Api<PersistentVolume> = kube::Api::all(ctx.client.clone());
    match api.create(&PostParams::default(), &volume).await {
        Ok(_) => {}
        Err(e) if is_already_exists(&e) => return Ok(()),
        Err(e) => return Err(api_err(format!("create volume {volume_name}"))(e)),
    }
    let message = format!("Successfully provisioned volume {volume_name}");
    ctx.events
        .record(claim, "Normal", "ProvisioningSucceeded", message)
        .await;
    Ok(())
}

/// Fills what upstream's provisioning controller sets on every provisioned volume: the name,
/// the `claimRef` (pre-bound to the claim), the class, the reclaim policy and annotations.
fn complete_provisioned_volume(
    volume: &mut PersistentVolume,
    name: &str,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
) {
    volume.metadata.name = Some(name.to_string());
    let annotations = volume
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    annotations
        .entry(PROVISIONED_BY_ANNOTATION.into())
        .or_insert_with(|| class.provisioner.clone());
    annotations.insert(BOUND_BY_CONTROLLER_ANNOTATION.into(), "yes".into());
    let spec = volume.spec.get_or_insert_with(Default::default);
    spec.claim_ref = Some(ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: claim.namespace(),
        name: Some(claim.name_any()),
        uid: claim.uid(),
        resource_version: claim.resource_version(),
        ..Default::default()
    });
    spec.storage_class_name = Some(class.name_any());
    if spec.persistent_volume_reclaim_policy.is_none() {
        spec.persistent_volume_reclaim_policy = Some(
            class
                .reclaim_policy
                .clone()
                .unwrap_or_else(|| "Delete".into()),
        );
    }
    if spec.mount_options.is_none() {
        spec.mount_options = class.mount_options.clone();
    }
}

/// Upstream's external-provisioning path: the claim is annotated with the provisioner's name
/// and waits for it.
async fn wait_for_external_provisioner(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
) -> Result<()> {
    let annotated = annotation(&claim.metadata.annotations, STORAGE_PROVISIONER_ANNOTATION)
        == Some(&class.provisioner);
    if !annotated {
        let patch = json!({"metadata": {"annotations": {
            STORAGE_PROVISIONER_ANNOTATION: class.provisioner,
            BETA_STORAGE_PROVISIONER_ANNOTATION: class.provisioner,
        }}});
        let action = format!("annotate claim {} for its provisioner", claim.name_any());
        patch_claim(ctx, claim, &patch, action).await?;
    }
    let message = format!(
        "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
        class.provisioner
    );
    ctx.events
        .record(claim, "Normal", "ExternalProvisioning", message)
        .await;
    Ok(())
}

async fn sync_bound(ctx: &Context, claim: &PersistentVolumeClaim) -> Result<()> {
    let volume_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .filter(|n| !n.is_empty());
    let Some(volume_name) = volume_name else {
        return lose(
            ctx,
            claim,
            "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
        )
        .await;
    };
    let Some(volume) = ctx.volumes.get(&ObjectRef::new(volume_name)) else {
        return lose(
            ctx,
            claim,
            "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
        )
        .await;
    };
    let unclaimed = volume.spec.as_ref().is_none_or(|s| s.claim_ref.is_none());
    if unclaimed || is_volume_bound_to_claim(&volume, claim) {
        return bind(ctx, &volume, claim).await;
    }
    lose(
        ctx,
        claim,
        "Two claims are bound to the same volume, this one is bound incorrectly",
    )
    .await
}

async fn lose(ctx: &Context, claim: &PersistentVolumeClaim, message: &str) -> Result<()> {
    if claim.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Lost") {
        ctx.events
            .record(claim, "Warning", "ClaimLost", message.to_string())
            .await;
    }
    set_claim_phase(ctx, claim, "Lost").await
}
