//! The PVC and PV protection controllers (upstream's `pvcprotection` and `pvprotection`):
//! a claim keeps its `kubernetes.io/pvc-protection` finalizer while a pod that is not
//! finished uses it, and a volume its `kubernetes.io/pv-protection` finalizer while it is
//! `Bound`. Both add the finalizer to objects created without it (before the admission
//! plugin existed), as upstream.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use kybernetes_core::persistent_volume::{PV_PROTECTION_FINALIZER, PVC_PROTECTION_FINALIZER};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use super::{Error, Result, api_err};
use crate::informers::{InformerFactory, Subscription};
use crate::reconcile::{ErrorBackoff, run_until_shutdown};

const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(60);

struct Context {
    client: Client,
    pods: Store<Pod>,
    claim_backoff: ErrorBackoff<ObjectRef<PersistentVolumeClaim>>,
    volume_backoff: ErrorBackoff<ObjectRef<PersistentVolume>>,
}

/// Starts the PVC and PV protection controllers; they stop when `shutdown` is cancelled.
pub fn spawn_volume_protection(
    client: Client,
    informers: &InformerFactory,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let pods = informers.pods();
    let run = run(client, pods.store(), pods.subscribe(), shutdown);
    tokio::spawn(run.instrument(info_span!("volume_protection_controller")))
}

async fn run(
    client: Client,
    pods: Store<Pod>,
    pod_events: Subscription<Pod>,
    shutdown: CancellationToken,
) {
    let ctx = Arc::new(Context {
        client: client.clone(),
        pods,
        claim_backoff: ErrorBackoff::new(MAX_ERROR_BACKOFF),
        volume_backoff: ErrorBackoff::new(MAX_ERROR_BACKOFF),
    });
    let claims = Controller::new(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches_shared_stream(pod_events.into_trigger_stream(), |pod| {
        let ns = pod.namespace().unwrap_or_default();
        claims_of(&pod)
            .map(|c| ObjectRef::new(c).within(&ns))
            .collect::<Vec<_>>()
    })
    .run(reconcile_claim, claim_error_policy, ctx.clone());
    let volumes = Controller::new(
        Api::<PersistentVolume>::all(client),
        watcher::Config::default(),
    )
    .run(reconcile_volume, volume_error_policy, ctx);
    futures::join!(
        run_until_shutdown(claims, &shutdown, |e| debug!(error = %e, "pvc protection")),
        run_until_shutdown(volumes, &shutdown, |e| debug!(error = %e, "pv protection")),
    );
}

/// The claims a pod's volumes name.
fn claims_of(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
}

/// Whether the pod still counts as using its claims (upstream: not Succeeded or Failed).
fn is_running(pod: &Pod) -> bool {
    !matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn has_finalizer<K: Resource>(obj: &K, finalizer: &str) -> bool {
    obj.meta()
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == finalizer)
}

/// A merge patch setting the finalizers to `finalizers`, guarded by the object's version.
fn finalizers_patch<K: Resource>(obj: &K, finalizers: Vec<String>) -> serde_json::Value {
    json!({"metadata": {"finalizers": finalizers, "resourceVersion": obj.meta().resource_version}})
}

fn with_finalizer<K: Resource>(obj: &K, finalizer: &str) -> Vec<String> {
    let mut f = obj.meta().finalizers.clone().unwrap_or_default();
    f.push(finalizer.to_string());
    f
}

fn without_finalizer<K: Resource>(obj: &K, finalizer: &str) -> Vec<String> {
    let mut f = obj.meta().finalizers.clone().unwrap_or_default();
    f.retain(|x| x != finalizer);
    f
}

async fn reconcile_claim(claim: Arc<PersistentVolumeClaim>, ctx: Arc<Context>) -> Result<Action> {
    let ns = claim.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let name = claim.name_any();
    let deleting = claim.metadata.deletion_timestamp.is_some();
    let protected = has_finalizer(claim.as_ref(), PVC_PROTECTION_FINALIZER);
    let patch = match (deleting, protected) {
        (false, false) => Some(with_finalizer(claim.as_ref(), PVC_PROTECTION_FINALIZER)),
        (true, true) if !in_use(&ctx, &ns, &name).await? => {
            Some(without_finalizer(claim.as_ref(), PVC_PROTECTION_FINALIZER))
        }
        _ => None,
    };
    if let Some(finalizers) = patch {
        let patch = finalizers_patch(claim.as_ref(), finalizers);
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err(format!(
                "update the finalizers of claim {ns}/{name}"
            )))?;
    }
    ctx.claim_backoff
        .reset(&ObjectRef::from_obj(claim.as_ref()));
    Ok(Action::await_change())
}

/// Whether a pod that is not finished uses the claim: the cache first, and when it says no,
/// a live list (upstream's `askAPIServer`), so a pod just created is never missed.
async fn in_use(ctx: &Context, ns: &str, claim: &str) -> Result<bool> {
    let uses = |p: &Pod| is_running(p) && claims_of(p).any(|c| c == claim);
    let cached = ctx
        .pods
        .state()
        .iter()
        .any(|p| p.metadata.namespace.as_deref() == Some(ns) && uses(p));
    if cached {
        return Ok(true);
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let pods = api
        .list(&ListParams::default())
        .await
        .map_err(api_err(format!("list the pods of namespace {ns}")))?;
    Ok(pods.items.iter().any(uses))
}

async fn reconcile_volume(volume: Arc<PersistentVolume>, ctx: Arc<Context>) -> Result<Action> {
    let name = volume.name_any();
    let deleting = volume.metadata.deletion_timestamp.is_some();
    let protected = has_finalizer(volume.as_ref(), PV_PROTECTION_FINALIZER);
    let bound = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let patch = match (deleting, protected) {
        (false, false) => Some(with_finalizer(volume.as_ref(), PV_PROTECTION_FINALIZER)),
        (true, true) if !bound => Some(without_finalizer(volume.as_ref(), PV_PROTECTION_FINALIZER)),
        _ => None,
    };
    if let Some(finalizers) = patch {
        let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
        let patch = finalizers_patch(volume.as_ref(), finalizers);
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err(format!("update the finalizers of volume {name}")))?;
    }
    ctx.volume_backoff
        .reset(&ObjectRef::from_obj(volume.as_ref()));
    Ok(Action::await_change())
}

fn claim_error_policy(
    claim: Arc<PersistentVolumeClaim>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let delay = ctx
        .claim_backoff
        .next_delay(ObjectRef::from_obj(claim.as_ref()));
    warn!(claim = %claim.name_any(), error = %error, source = ?std::error::Error::source(error), ?delay, "pvc protection failed");
    Action::requeue(delay)
}

fn volume_error_policy(volume: Arc<PersistentVolume>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx
        .volume_backoff
        .next_delay(ObjectRef::from_obj(volume.as_ref()));
    warn!(volume = %volume.name_any(), error = %error, source = ?std::error::Error::source(error), ?delay, "pv protection failed");
    Action::requeue(delay)
}
