//! The namespace controller: empties a namespace that is being deleted, then releases it, as
//! upstream's `pkg/controller/namespace`.
//!
//! When a Namespace has a deletionTimestamp and the `kubernetes` finalizer, the controller
//! deletes every namespaced resource in it (every resource discovery lists as namespaced and
//! deletable, custom resources included) with default options, so pods on nodes terminate
//! gracefully. It checks again every [`NamespaceConfig::requeue_interval`] until nothing is
//! left, recording its progress in the upstream status conditions
//! (`NamespaceContentRemaining`, `NamespaceFinalizersRemaining`,
//! `NamespaceDeletionContentFailure`, `NamespaceDeletionDiscoveryFailure`). Then it removes
//! `kubernetes` from `spec.finalizers` through `PUT /api/v1/namespaces/<name>/finalize`, and the
//! API server deletes the namespace.
//!
//! ```no_run
//! # async fn run(client: kube::Client) {
//! use kybernetes_controllers::namespace::{NamespaceConfig, spawn_namespace_controller};
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let handle = spawn_namespace_controller(client, kybernetes_core::Clock::new(), NamespaceConfig::default(), shutdown.clone());
//! shutdown.cancel();
//! handle.await.ok();
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::discovery::{ApiCapabilities, Scope, verbs};
use kube::discovery::{ApiResource, Discovery};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kybernetes_core::Clock;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

/// The finalizer the namespace controller removes once the namespace is empty.
pub const KUBERNETES_FINALIZER: &str = "kubernetes";

/// An error while deleting a namespace's content; the namespace is retried.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("api request failed: {0}")]
    Api(#[source] kube::Error),
    /// Discovery failed, so the content cannot be listed.
    #[error("discovery failed: {0}")]
    Discovery(#[source] kube::Error),
}

/// Settings of the namespace controller.
#[derive(Clone, Debug)]
pub struct NamespaceConfig {
    /// How soon a namespace whose content is still going away is checked again.
    pub requeue_interval: Duration,
    /// Namespaces synced at once (upstream `--concurrent-namespace-syncs`, 10).
    pub workers: u16,
}

impl Default for NamespaceConfig {
    fn default() -> Self {
        NamespaceConfig {
            requeue_interval: Duration::from_secs(1),
            workers: 10,
        }
    }
}

struct Context {
    client: Client,
    clock: Clock,
    config: NamespaceConfig,
}

/// Starts the namespace controller; it runs until `shutdown` is cancelled and retries failed
/// deletions.
pub fn spawn_namespace_controller(
    client: Client,
    clock: Clock,
    config: NamespaceConfig,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let controller_config =
        kube::runtime::controller::Config::default().concurrency(config.workers);
    let ctx = Arc::new(Context {
        client: client.clone(),
        clock,
        config,
    });
    let run = async move {
        info!("namespace controller starting");
        let results = Controller::new(Api::<Namespace>::all(client), watcher::Config::default())
            .with_config(controller_config)
            .run(reconcile, error_policy, ctx);
        // kube's `graceful_shutdown_on` can wait forever when shutdown comes before the
        // namespace store is ready (its runner is held until then), so stop on the token.
        crate::reconcile::run_until_shutdown(
            results,
            &shutdown,
            |e| debug!(error = %e, "namespace reconcile failed"),
        )
        .await;
        info!("namespace controller stopped");
    };
    tokio::spawn(run.instrument(info_span!("namespace_controller")))
}

fn error_policy(_ns: Arc<Namespace>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(error = %error, "namespace deletion failed; will retry");
    Action::requeue(ctx.config.requeue_interval.max(Duration::from_secs(1)))
}

/// What is left in a namespace after one deletion pass.
#[derive(Debug, Default)]
struct Remaining {
    /// Objects left per resource.
    resources: BTreeMap<String, usize>,
    /// Objects left per finalizer they carry.
    finalizers: BTreeMap<String, usize>,
    /// Deletion errors.
    failures: Vec<String>,
}

/// Upstream `syncNamespaceFromKey`.
async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if ns.metadata.deletion_timestamp.is_none()
        || !finalizers.iter().any(|f| f == KUBERNETES_FINALIZER)
    {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let resources = match namespaced_resources(&ctx.client).await {
        Ok(r) => r,
        Err(e) => {
            set_conditions(&ctx, &ns, Some(&e.to_string()), &Remaining::default()).await;
            return Err(e);
        }
    };
    let mut remaining = Remaining::default();
    for (resource, caps) in &resources {
        delete_content(&ctx.client, &name, resource, caps, &mut remaining).await;
    }
    set_conditions(&ctx, &ns, None, &remaining).await;
    if !remaining.resources.is_empty() || !remaining.failures.is_empty() {
        debug!(namespace = %name, remaining = ?remaining.resources, "namespace content remains");
        return Ok(Action::requeue(ctx.config.requeue_interval));
    }
    info!(namespace = %name, "namespace is empty; removing the kubernetes finalizer");
    let mut finalized = (*ns).clone();
    if let Some(spec) = finalized.spec.as_mut() {
        spec.finalizers = Some(
            finalizers
                .into_iter()
                .filter(|f| f != KUBERNETES_FINALIZER)
                .collect(),
        );
    }
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    match api
        .replace_subresource("finalize", &name, &PostParams::default(), &finalized)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(Error::Api(e)),
    }
}

/// Every namespaced resource that can be listed and deleted.
async fn namespaced_resources(
    client: &Client,
) -> Result<Vec<(ApiResource, ApiCapabilities)>, Error> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(Error::Discovery)?;
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            let deletable = caps.supports_operation(verbs::DELETE)
                || caps.supports_operation(verbs::DELETE_COLLECTION);
            if caps.scope == Scope::Namespaced && caps.supports_operation(verbs::LIST) && deletable
            {
                out.push((resource, caps));
            }
        }
    }
    Ok(out)
}

/// Deletes every object of one resource in the namespace (upstream
/// `deleteAllContentForGroupVersionResource`) and records what is left.
async fn delete_content(
    client: &Client,
    namespace: &str,
    resource: &ApiResource,
    caps: &ApiCapabilities,
    remaining: &mut Remaining,
) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    let label = if resource.group.is_empty() {
        resource.plural.clone()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    };
    let listed = match api.list_metadata(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) => {
            remaining.failures.push(format!("{label}: {e}"));
            return;
        }
    };
    let pending: Vec<_> = listed
        .iter()
        .filter(|o| o.metadata.deletion_timestamp.is_none())
        .collect();
    if !pending.is_empty() {
        let result = if caps.supports_operation(verbs::DELETE_COLLECTION) {
            api.delete_collection(&DeleteParams::default(), &ListParams::default())
                .await
                .map(|_| ())
        } else {
            let mut result = Ok(());
            for obj in &pending {
                match api.delete(&obj.name_any(), &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => result = Err(e),
                }
            }
            result
        };
        if let Err(e) = result {
            remaining.failures.push(format!("{label}: {e}"));
        }
    }
    let left = match api.list_metadata(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) => {
            remaining.failures.push(format!("{label}: {e}"));
            return;
        }
    };
    if left.is_empty() {
        return;
    }
    remaining.resources.insert(label, left.len());
    for obj in &left {
        for f in obj.finalizers() {
            *remaining.finalizers.entry(f.clone()).or_default() += 1;
        }
    }
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    now: &Time,
) -> NamespaceCondition {
    NamespaceCondition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(now.clone()),
    }
}

fn describe(counts: &BTreeMap<String, usize>) -> String {
    counts
        .iter()
        .map(|(k, n)| format!("{k} has {n} resource instances"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Upstream `updateNamespaceStatusFunc` conditions, written only when they change.
async fn set_conditions(
    ctx: &Context,
    ns: &Namespace,
    discovery_error: Option<&str>,
    remaining: &Remaining,
) {
    let now = Time(
        k8s_openapi::jiff::Timestamp::from_microsecond(ctx.clock.now().timestamp_micros())
            .unwrap_or_default(),
    );
    let keys: Vec<&String> = remaining.resources.keys().collect();
    let fins: Vec<&String> = remaining.finalizers.keys().collect();
    let desired = [
        match discovery_error {
            Some(e) => condition(
                "NamespaceDeletionDiscoveryFailure",
                true,
                "DiscoveryFailed",
                format!("Discovery failed: {e}"),
                &now,
            ),
            None => condition(
                "NamespaceDeletionDiscoveryFailure",
                false,
                "ResourcesDiscovered",
                "All resources successfully discovered".into(),
                &now,
            ),
        },
        condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into(),
            &now,
        ),
        if remaining.failures.is_empty() {
            condition(
                "NamespaceDeletionContentFailure",
                false,
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization".into(),
                &now,
            )
        } else {
            condition(
                "NamespaceDeletionContentFailure",
                true,
                "ContentDeletionFailed",
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    remaining.failures.len(),
                    remaining.failures.join(", ")
                ),
                &now,
            )
        },
        if keys.is_empty() {
            condition(
                "NamespaceContentRemaining",
                false,
                "ContentRemoved",
                "All content successfully removed".into(),
                &now,
            )
        } else {
            let names = keys
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            condition(
                "NamespaceContentRemaining",
                true,
                "SomeResourcesRemain",
                format!(
                    "Some resources are remaining: {names}; {}",
                    describe(&remaining.resources)
                ),
                &now,
            )
        },
        if fins.is_empty() {
            condition(
                "NamespaceFinalizersRemaining",
                false,
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished".into(),
                &now,
            )
        } else {
            condition(
                "NamespaceFinalizersRemaining",
                true,
                "SomeFinalizersRemain",
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    describe(&remaining.finalizers)
                ),
                &now,
            )
        },
    ];
    let current = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut conditions = current.clone();
    let mut changed = false;
    for want in desired {
        match conditions.iter_mut().find(|c| c.type_ == want.type_) {
            Some(c)
                if c.status == want.status
                    && c.reason == want.reason
                    && c.message == want.message => {}
            Some(c) => {
                *c = want;
                changed = true;
            }
            None => {
                conditions.push(want);
                changed = true;
            }
        }
    }
    if !changed {
        return;
    }
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let patch = json!({ "status": { "conditions": conditions } });
    if let Err(e) = api
        .patch_status(
            &ns.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        debug!(namespace = %ns.name_any(), error = %e, "failed to update namespace conditions");
    }
}
