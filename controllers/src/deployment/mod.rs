//! The Deployment controller (upstream's `pkg/controller/deployment`): rolls a deployment's pod
//! template out through ReplicaSets.
//!
//! Each revision of the template gets a ReplicaSet named `<deployment>-<pod-template-hash>`
//! whose selector, labels and pods carry the `pod-template-hash` label
//! ([`revision::pod_template_hash`]). A reconcile (`reconcile`, upstream's `syncDeployment`):
//! 1. claims the ReplicaSets that match the selector (adopts orphans, releases the rest);
//! 2. if the deployment is paused or was only scaled, scales the ReplicaSets proportionally
//!    (`sync.rs`) and writes the status;
//! 3. otherwise rolls out: `rolling.rs` (maxSurge / maxUnavailable) or
//!    `recreate.rs` (old pods gone before new ones start);
//! 4. writes the status, the Progressing condition with `progressDeadlineSeconds`, and the
//!    Available condition (`progress.rs`), then trims old ReplicaSets beyond
//!    `revisionHistoryLimit`.
//!
//! A rollback (`kubectl rollout undo`) writes an old template back; the ReplicaSet with that
//! template is reused and gets the next revision (`rollback.rs`).
//!
//! ```no_run
//! # async fn demo(client: kube::Client) {
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let clock = kybernetes_core::Clock::new();
//! let informers = kybernetes_controllers::InformerFactory::new(client.clone(), shutdown.clone());
//! let rs = kybernetes_controllers::spawn_replicaset(client.clone(), clock.clone(), &informers, shutdown.clone());
//! let deploy = kybernetes_controllers::spawn_deployment(client, clock, &informers, shutdown.clone());
//! // ...
//! shutdown.cancel();
//! let _ = tokio::join!(rs, deploy);
//! # }
//! ```

mod progress;
mod recreate;
pub mod replicas;
pub mod revision;
mod rollback;
mod rolling;
mod sync;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kybernetes_core::Clock;
use kybernetes_core::selector::{LabelSelector, SelectorError};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use crate::api_values::label_selector;
use crate::controller_ref::controller_of;
use crate::informers::{InformerFactory, Subscription};
use crate::mutation_cache::{MutationCache, ObservedRevision};
use crate::reconcile::{ErrorBackoff, is_not_found};
use replicas::Fenceposts;

/// How long a recorded write shadows the informer at most.
const MUTATION_TTL: Duration = Duration::from_secs(300);
/// The longest retry delay after errors.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// While a rollout is in flight the deployment is looked at again this often, even without
/// events.
const ROLLOUT_RESYNC: Duration = Duration::from_secs(2);

/// The errors of a Deployment reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("failed to {action}")]
    Api {
        /// What the controller was doing.
        action: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The deployment's selector does not parse.
    #[error("invalid label selector")]
    Selector(#[source] SelectorError),
    /// maxSurge / maxUnavailable are invalid (the API server does not validate them yet).
    #[error("invalid rolling update strategy: {0}")]
    InvalidStrategy(String),
    /// The new ReplicaSet's name is taken by a ReplicaSet with another template; the
    /// collision count was raised and the next attempt uses another hash.
    #[error("hash collision creating replica set {0}")]
    HashCollision(String),
    /// An informer stopped.
    #[error("an informer stopped")]
    InformerStopped,
}

/// A Deployment reconcile result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn api_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Api { action, source }
}

/// What every Deployment reconcile shares.
pub(crate) struct Context {
    client: Client,
    clock: Clock,
    /// This controller's event writer, with its own correlator.
    events: crate::event_recorder::EventRecorder,
    replica_sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    rs_writes: MutationCache<ReplicaSet>,
    deployment_writes: MutationCache<Deployment>,
    backoff: ErrorBackoff<ObjectRef<Deployment>>,
}

/// Starts the Deployment controller; it stops when `shutdown` is cancelled. It needs the
/// ReplicaSet controller ([`crate::spawn_replicaset`]) to turn ReplicaSets into pods.
pub fn spawn_deployment(
    client: Client,
    clock: Clock,
    informers: &InformerFactory,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let pods = informers.pods();
    let run = run(client, clock, pods.store(), pods.subscribe(), shutdown);
    tokio::spawn(run.instrument(info_span!("deployment_controller")))
}

async fn run(
    client: Client,
    clock: Clock,
    pods: Store<Pod>,
    pod_events: Subscription<Pod>,
    shutdown: CancellationToken,
) {
    let controller = Controller::new(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    );
    let deployments = controller.store();
    let (replica_sets, rs_writer) = reflector::store();
    let rs_observed = ObservedRevision::default();
    let rs_events = crate::mutation_cache::observed_watch(
        Api::<ReplicaSet>::all(client.clone()),
        |rs: &mut ReplicaSet| rs.metadata.managed_fields = None,
        rs_writer,
        rs_observed.clone(),
    );
    let ctx = Arc::new(Context {
        events: crate::event_recorder::EventRecorder::new(client.clone(), clock.clone()),
        client,
        clock,
        replica_sets: replica_sets.clone(),
        pods,
        rs_writes: MutationCache::new(rs_observed, MUTATION_TTL),
        deployment_writes: MutationCache::new(ObservedRevision::default(), MUTATION_TTL),
        backoff: ErrorBackoff::new(MAX_BACKOFF),
    });
    let for_rs = deployments.clone();
    let controller = controller
        .watches_stream(rs_events, move |rs| {
            deployments_for_replica_set(&for_rs, &rs)
        })
        .watches_shared_stream(pod_events.into_trigger_stream(), move |pod| {
            recreate_deployment_for_pod(&replica_sets, &deployments, &pod)
        })
        .run(reconcile, error_policy, ctx);
    crate::reconcile::run_until_shutdown(
        controller,
        &shutdown,
        |e| debug!(error = %e, "deployment controller"),
    )
    .await;
}

fn selector_of(d: &Deployment) -> Option<LabelSelector> {
    label_selector(d.spec.as_ref().map(|s| &s.selector)).ok()
}

/// The deployments a ReplicaSet event concerns: its controller, or for an orphan every
/// deployment of the namespace whose selector matches it (upstream's `getDeploymentsForReplicaSet`).
fn deployments_for_replica_set(
    deployments: &Store<Deployment>,
    rs: &ReplicaSet,
) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.namespace().unwrap_or_default();
    match controller_of(&rs.metadata) {
        Some(r) if r.kind == "Deployment" => vec![ObjectRef::new(&r.name).within(&ns)],
        Some(_) => Vec::new(),
        None => deployments
            .state()
            .iter()
            .filter(|d| d.namespace().as_deref() == Some(ns.as_str()))
            .filter(|d| selector_of(d).is_some_and(|s| !s.is_empty() && s.matches(rs.labels())))
            .map(|d| ObjectRef::from_obj(d.as_ref()))
            .collect(),
    }
}

/// The Recreate deployment whose pod changed: a Recreate rollout waits for old pods to go.
fn recreate_deployment_for_pod(
    rss: &Store<ReplicaSet>,
    deployments: &Store<Deployment>,
    pod: &Pod,
) -> Option<ObjectRef<Deployment>> {
    let ns = pod.namespace()?;
    let owner = controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet")?;
    let rs = rss.get(&ObjectRef::new(&owner.name).within(&ns))?;
    let d_ref = controller_of(&rs.metadata).filter(|r| r.kind == "Deployment")?;
    let d = deployments.get(&ObjectRef::new(&d_ref.name).within(&ns))?;
    (!replicas::is_rolling_update(&d)).then(|| ObjectRef::from_obj(d.as_ref()))
}

fn error_policy(d: Arc<Deployment>, error: &Error, ctx: Arc<Context>) -> Action {
    if let Error::InvalidStrategy(_) = error {
        warn!(deployment = %d.name_any(), namespace = ?d.namespace(), error = %error, "not rolling out");
        return Action::await_change();
    }
    let delay = ctx.backoff.next_delay(ObjectRef::from_obj(d.as_ref()));
    warn!(deployment = %d.name_any(), namespace = ?d.namespace(), error = %error, source = ?std::error::Error::source(error), ?delay, "sync failed");
    Action::requeue(delay)
}

/// Upstream's `syncDeployment`.
pub(crate) async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action> {
    ctx.replica_sets
        .wait_until_ready()
        .await
        .map_err(|_| Error::InformerStopped)?;
    ctx.pods
        .wait_until_ready()
        .await
        .map_err(|_| Error::InformerStopped)?;
    let d = ctx.deployment_writes.get(d.clone()).unwrap_or(d);
    let key = ObjectRef::from_obj(d.as_ref());
    let fence = replicas::fenceposts(&d)?;
    let mut rollout = Rollout::new(&ctx, (*d).clone(), fence);
    rollout.sync_deployment().await?;
    ctx.backoff.reset(&key);
    Ok(rollout.next_action())
}

/// One reconcile of one deployment: the deployment as it is being updated, and the helpers
/// that write it and its ReplicaSets.
pub(crate) struct Rollout<'a> {
    ctx: &'a Context,
    d: Deployment,
    fence: Fenceposts,
    rs_api: Api<ReplicaSet>,
    d_api: Api<Deployment>,
    requeue: Option<Duration>,
}

impl<'a> Rollout<'a> {
    fn new(ctx: &'a Context, d: Deployment, fence: Fenceposts) -> Self {
        let ns = d.namespace().unwrap_or_default();
        Rollout {
            rs_api: Api::namespaced(ctx.client.clone(), &ns),
            d_api: Api::namespaced(ctx.client.clone(), &ns),
            ctx,
            d,
            fence,
            requeue: None,
        }
    }

    fn name(&self) -> String {
        self.d.name_any()
    }

    fn desired(&self) -> i32 {
        replicas::deployment_replicas(&self.d)
    }

    fn paused(&self) -> bool {
        self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
    }

    /// Asks for another look after `after` (the soonest request wins).
    fn requeue_after(&mut self, after: Duration) {
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    fn next_action(&mut self) -> Action {
        let status = self.d.status.clone().unwrap_or_default();
        if !self.paused() && !progress::deployment_complete(&self.d, &status) {
            self.requeue_after(ROLLOUT_RESYNC);
        }
        match self.requeue {
            Some(after) => Action::requeue(after),
            None => Action::await_change(),
        }
    }

    async fn sync_deployment(&mut self) -> Result<()> {
        let selector =
            label_selector(self.d.spec.as_ref().map(|s| &s.selector)).map_err(Error::Selector)?;
        if selector.is_empty() {
            return self.selecting_all().await;
        }
        let rs_list = self.replica_sets_for_deployment(&selector).await?;
        if self.d.metadata.deletion_timestamp.is_some() {
            return self.sync_status_only(rs_list).await;
        }
        self.check_paused_conditions().await?;
        if self.paused() || self.is_scaling_event(&rs_list).await? {
            return self.sync(rs_list).await;
        }
        if replicas::is_rolling_update(&self.d) {
            self.rollout_rolling(rs_list).await
        } else {
            let pod_map = self.pod_map(&rs_list);
            self.rollout_recreate(rs_list, pod_map).await
        }
    }

    /// A deployment with an empty selector would select every pod: upstream refuses it.
    async fn selecting_all(&mut self) -> Result<()> {
        self.event(
            "Warning",
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.".into(),
        );
        let mut status = self.d.status.clone().unwrap_or_default();
        if status.observed_generation < self.d.metadata.generation {
            status.observed_generation = self.d.metadata.generation;
            self.write_status(status).await?;
        }
        Ok(())
    }

    /// The ReplicaSets this deployment controls, after adoption and release (upstream's
    /// `getReplicaSetsForDeployment`).
    async fn replica_sets_for_deployment(
        &mut self,
        selector: &LabelSelector,
    ) -> Result<Vec<ReplicaSet>> {
        let ns = self.d.namespace().unwrap_or_default();
        let candidates = self.ctx.rs_writes.list(&self.ctx.replica_sets, |rs| {
            rs.metadata.namespace.as_deref() == Some(&ns)
        });
        let d_api = self.d_api.clone();
        let name = self.name();
        let uid = self.d.metadata.uid.clone();
        let can_adopt = || async move {
            match d_api.get(&name).await {
                Ok(fresh) => {
                    Ok(fresh.metadata.uid == uid && fresh.metadata.deletion_timestamp.is_none())
                }
                Err(e) if is_not_found(&e) => Ok(false),
                Err(e) => Err(e),
            }
        };
        let claimed = crate::controller_ref::claim(
            &self.rs_api,
            &self.d,
            selector,
            candidates,
            &self.ctx.rs_writes,
            can_adopt,
        )
        .await
        .map_err(api_err("claim replica sets"))?;
        Ok(claimed.into_iter().map(|rs| (*rs).clone()).collect())
    }

    /// The pods of each ReplicaSet, by ReplicaSet uid (upstream's `getPodMapForDeployment`).
    fn pod_map(&self, rs_list: &[ReplicaSet]) -> HashMap<String, Vec<Arc<Pod>>> {
        let ns = self.d.namespace().unwrap_or_default();
        let mut map: HashMap<String, Vec<Arc<Pod>>> = rs_list
            .iter()
            .filter_map(|rs| rs.metadata.uid.clone())
            .map(|uid| (uid, Vec::new()))
            .collect();
        for pod in self.ctx.pods.state() {
            if pod.metadata.namespace.as_deref() != Some(&ns) {
                continue;
            }
            if let Some(r) = controller_of(&pod.metadata)
                && let Some(pods) = map.get_mut(&r.uid)
            {
                pods.push(pod);
            }
        }
        map
    }

    /// Writes the deployment's status (the whole of it that this controller manages).
    async fn write_status(&mut self, status: DeploymentStatus) -> Result<()> {
        let patch = crate::reconcile::status_merge_patch(
            &status,
            &[
                "observedGeneration",
                "replicas",
                "updatedReplicas",
                "readyReplicas",
                "availableReplicas",
                "unavailableReplicas",
                "collisionCount",
                "conditions",
            ],
        );
        let updated = self
            .d_api
            .patch_status(&self.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err("update deployment status"))?;
        self.ctx.deployment_writes.mutation(updated.clone());
        self.d = updated;
        Ok(())
    }

    /// Sets the deployment's revision annotation (upstream's `SetDeploymentRevision`, which
    /// upstream persists with the status write; here it is a metadata patch).
    async fn write_revision(&mut self, revision: &str) -> Result<()> {
        if self
            .d
            .annotations()
            .get(revision::REVISION_ANNOTATION)
            .map(String::as_str)
            == Some(revision)
        {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {revision::REVISION_ANNOTATION: revision}}});
        let updated = self
            .d_api
            .patch(&self.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err("update deployment revision"))?;
        self.ctx.deployment_writes.mutation(updated.clone());
        self.d = updated;
        Ok(())
    }

    /// Records an event about the deployment without waiting for it.
    fn event(&self, type_: &'static str, reason: &'static str, message: String) {
        let (events, d) = (self.ctx.events.clone(), self.d.clone());
        tokio::spawn(async move { events.record(&d, type_, reason, message).await });
    }
}
