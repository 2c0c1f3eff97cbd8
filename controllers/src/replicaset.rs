//! The ReplicaSet controller (upstream's `pkg/controller/replicaset`): keeps `spec.replicas`
//! pods from `spec.template` running.
//!
//! Each reconcile (`reconcile`, upstream's `syncReplicaSet`):
//! 1. lists the pods of the namespace from the informer, with this controller's own recent
//!    creations and deletions layered on top (a [`MutationCache`], which does the job of
//!    upstream's expectations);
//! 2. claims the active pods: adopts orphans that match the selector, releases owned pods that
//!    no longer match;
//! 3. creates the missing pods (`generateName: <rs>-`, in slow-start batches, at most
//!    [`BURST_REPLICAS`] per reconcile) or deletes the surplus, picked in upstream's order
//!    ([`crate::pod_state::pods_to_delete`]);
//! 4. writes the status: replicas, fullyLabeledReplicas, readyReplicas, availableReplicas
//!    (with `minReadySeconds` against the cluster [`Clock`]), observedGeneration and the
//!    ReplicaFailure condition.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) {
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let informers = kybernetes_controllers::InformerFactory::new(client.clone(), shutdown.clone());
//! let handle = kybernetes_controllers::spawn_replicaset(client, kybernetes_core::Clock::new(), &informers, shutdown.clone());
//! // ...
//! shutdown.cancel();
//! handle.await.ok();
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kybernetes_core::Clock;
use kybernetes_core::selector::{LabelSelector, SelectorError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use crate::api_values::label_selector;
use crate::controller_ref::{controller_of, controller_ref, is_controlled_by};
use crate::informers::{InformerFactory, SharedInformer, Subscription};
use crate::mutation_cache::{MutationCache, ObservedRevision};
use crate::pod_state::{is_pod_active, is_pod_available, is_pod_ready};
use crate::reconcile::{ErrorBackoff, is_not_found};

/// At most this many pods are created or deleted by one reconcile (upstream's `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;
/// The first batch of a slow-start creation (upstream's `SlowStartInitialBatchSize`).
const SLOW_START_INITIAL_BATCH: usize = 1;
/// How long a recorded write shadows the informer at most.
pub(crate) const MUTATION_TTL: Duration = Duration::from_secs(300);
/// The longest retry delay after errors.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The errors of a ReplicaSet reconcile.
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
    /// The ReplicaSet's selector does not parse.
    #[error("invalid label selector")]
    Selector(#[source] SelectorError),
    /// The pod template has no labels, so its pods could never be selected.
    #[error("unable to create pods, no labels")]
    NoTemplateLabels,
    /// The pod informer stopped.
    #[error("the pod informer stopped")]
    InformerStopped,
}

/// A ReplicaSet reconcile result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn api_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Api { action, source }
}

/// The kind whose pods the controller manages: a ReplicaSet, or a ReplicationController seen
/// as one (upstream runs the ReplicationController controller the same way, through
/// conversion).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OwnerKind {
    ReplicaSet,
    ReplicationController,
}

/// What every ReplicaSet reconcile shares.
pub(crate) struct Context {
    pub(crate) client: Client,
    pub(crate) clock: Clock,
    pub(crate) pods: Store<Pod>,
    pub(crate) replica_sets: Store<ReplicaSet>,
    pub(crate) pod_writes: MutationCache<Pod>,
    pub(crate) rs_writes: MutationCache<ReplicaSet>,
    pub(crate) backoff: ErrorBackoff<ObjectRef<ReplicaSet>>,
    pub(crate) owner: OwnerKind,
    pub(crate) events: crate::event_recorder::EventRecorder,
}

/// Starts the ReplicaSet controller; it stops when `shutdown` is cancelled.
pub fn spawn_replicaset(
    client: Client,
    clock: Clock,
    informers: &InformerFactory,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let pods = informers.pods();
    let run = run(client, clock, pods.clone(), pods.subscribe(), shutdown);
    tokio::spawn(run.instrument(info_span!("replicaset_controller")))
}

async fn run(
    client: Client,
    clock: Clock,
    pods: SharedInformer<Pod>,
    pod_events: Subscription<Pod>,
    shutdown: CancellationToken,
) {
    let controller = Controller::new(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let replica_sets = controller.store();
    let observed = pods.observed();
    let pods = pods.store();
    let events = crate::event_recorder::EventRecorder::new(client.clone(), clock.clone());
    let ctx = Arc::new(Context {
        client,
        clock,
        pods,
        replica_sets: replica_sets.clone(),
        pod_writes: MutationCache::new(observed, MUTATION_TTL),
        rs_writes: MutationCache::new(ObservedRevision::default(), MUTATION_TTL),
        backoff: ErrorBackoff::new(MAX_BACKOFF),
        owner: OwnerKind::ReplicaSet,
        events,
    });
    let controller = controller
        .watches_shared_stream(pod_events.into_trigger_stream(), move |pod| {
            replica_sets_for_pod(&replica_sets, &pod)
        })
        .run(reconcile, error_policy, ctx);
    crate::reconcile::run_until_shutdown(
        controller,
        &shutdown,
        |e| debug!(error = %e, "replicaset controller"),
    )
    .await;
}

/// The ReplicaSets a pod event concerns: its controller if that is a ReplicaSet, or every
/// ReplicaSet of its namespace whose selector matches an orphan (a candidate for adoption).
fn replica_sets_for_pod(replica_sets: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
    let ns = pod.namespace().unwrap_or_default();
    match controller_of(&pod.metadata) {
        Some(r) if r.kind == "ReplicaSet" && r.api_version.starts_with("apps/") => {
            vec![ObjectRef::new(&r.name).within(&ns)]
        }
        Some(_) => Vec::new(),
        None => replica_sets
            .state()
            .iter()
            .filter(|rs| rs.namespace().as_deref() == Some(ns.as_str()))
            .filter(|rs| {
                label_selector(rs.spec.as_ref().map(|s| &s.selector))
                    .is_ok_and(|sel| !sel.is_empty() && sel.matches(pod.labels()))
            })
            .map(|rs| ObjectRef::from_obj(rs.as_ref()))
            .collect(),
    }
}

pub(crate) fn error_policy(rs: Arc<ReplicaSet>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next_delay(ObjectRef::from_obj(rs.as_ref()));
    warn!(replicaset = %rs.name_any(), namespace = ?rs.namespace(), error = %error, source = ?std::error::Error::source(error), ?delay, "sync failed");
    Action::requeue(delay)
}

fn spec_replicas(rs: &ReplicaSet) -> usize {
    rs.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0) as usize
}

fn min_ready_seconds(rs: &ReplicaSet) -> i32 {
    rs.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

impl Context {
    /// Records an event about the owner, a ReplicaSet or the ReplicationController it stands
    /// for, without holding up the pod writes (upstream's recorder is asynchronous too).
    fn record(&self, rs: &ReplicaSet, type_: &'static str, reason: &'static str, message: String) {
        let events = self.events.clone();
        let metadata = rs.metadata.clone();
        let owner = self.owner;
        tokio::spawn(async move {
            match owner {
                OwnerKind::ReplicaSet => {
                    let rs = ReplicaSet {
                        metadata,
                        ..Default::default()
                    };
                    events.record(&rs, type_, reason, message).await
                }
                OwnerKind::ReplicationController => {
                    let rc = ReplicationController {
                        metadata,
                        ..Default::default()
                    };
                    events.record(&rc, type_, reason, message).await
                }
            }
        });
    }

    /// The active pods of a namespace, this controller's writes included.
    fn active_pods(&self, ns: &str) -> Vec<Arc<Pod>> {
        self.pod_writes.list(&self.pods, |p| {
            p.metadata.namespace.as_deref() == Some(ns) && is_pod_active(p)
        })
    }

    /// The pods of the ReplicaSets that share `rs`'s controller (upstream's
    /// `getIndirectlyRelatedPods`), for ranking doubled-up pods.
    fn related_pods(&self, rs: &ReplicaSet, ns: &str) -> Vec<Arc<Pod>> {
        let owner = controller_of(&rs.metadata).map(|r| r.uid.clone());
        let mut uids: Vec<String> = rs.metadata.uid.iter().cloned().collect();
        if let Some(owner) = owner {
            uids = self
                .replica_sets
                .state()
                .iter()
                .filter(|s| {
                    s.namespace().as_deref() == Some(ns)
                        && controller_of(&s.metadata).is_some_and(|r| r.uid == owner)
                })
                .filter_map(|s| s.metadata.uid.clone())
                .collect();
        }
        self.active_pods(ns)
            .into_iter()
            .filter(|p| controller_of(&p.metadata).is_some_and(|r| uids.contains(&r.uid)))
            .collect()
    }
}

/// Upstream's `syncReplicaSet`: claims pods, creates or deletes pods, writes the status.
pub(crate) async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action> {
    ctx.pods
        .wait_until_ready()
        .await
        .map_err(|_| Error::InformerStopped)?;
    let rs = ctx.rs_writes.get(rs.clone()).unwrap_or(rs);
    let key = ObjectRef::from_obj(rs.as_ref());
    let ns = rs.namespace().unwrap_or_default();
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let selector =
        label_selector(rs.spec.as_ref().map(|s| &s.selector)).map_err(Error::Selector)?;

    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let candidates = ctx.active_pods(&ns);
    let owned = claim_pods(&ctx, &rs, &selector, candidates).await?;

    let manage_result = if rs.metadata.deletion_timestamp.is_none() {
        manage_replicas(&ctx, &pods_api, &rs, owned).await
    } else {
        Ok(())
    };

    // The status counts the pods as they are after this reconcile's own writes.
    let owned: Vec<Arc<Pod>> = ctx
        .active_pods(&ns)
        .into_iter()
        .filter(|p| is_controlled_by(&p.metadata, &uid) && selector.matches(p.labels()))
        .collect();
    let now = ctx.clock.now();
    let status = calculate_status(&rs, &owned, manage_result.as_ref().err(), &ctx.clock);
    update_status(&ctx, &rs, status).await?;
    manage_result?;
    ctx.backoff.reset(&key);

    let min_ready = min_ready_seconds(&rs);
    let next_available = owned
        .iter()
        .filter_map(|p| crate::pod_state::until_available(p, min_ready, now))
        .min();
    Ok(match next_available {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// Upstream's `claimPods`: adopts and releases, with a fresh read of the ReplicaSet before the
/// first adoption.
async fn claim_pods(
    ctx: &Context,
    rs: &ReplicaSet,
    selector: &LabelSelector,
    candidates: Vec<Arc<Pod>>,
) -> Result<Vec<Arc<Pod>>> {
    let ns = rs.namespace().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let name = rs.name_any();
    let uid = rs.metadata.uid.clone();
    let claimed =
        match ctx.owner {
            OwnerKind::ReplicaSet => {
                let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
                let can_adopt = || async move {
                    match api.get(&name).await {
                        Ok(fresh) => Ok(fresh.metadata.uid == uid
                            && fresh.metadata.deletion_timestamp.is_none()),
                        Err(e) if is_not_found(&e) => Ok(false),
                        Err(e) => Err(e),
                    }
                };
                crate::controller_ref::claim(
                    &pods_api,
                    rs,
                    selector,
                    candidates,
                    &ctx.pod_writes,
                    can_adopt,
                )
                .await
            }
            OwnerKind::ReplicationController => {
                let api: Api<ReplicationController> = Api::namespaced(ctx.client.clone(), &ns);
                let can_adopt = || async move {
                    match api.get(&name).await {
                        Ok(fresh) => Ok(fresh.metadata.uid == uid
                            && fresh.metadata.deletion_timestamp.is_none()),
                        Err(e) if is_not_found(&e) => Ok(false),
                        Err(e) => Err(e),
                    }
                };
                let owner = ReplicationController {
                    metadata: rs.metadata.clone(),
                    ..Default::default()
                };
                crate::controller_ref::claim(
                    &pods_api,
                    &owner,
                    selector,
                    candidates,
                    &ctx.pod_writes,
                    can_adopt,
                )
                .await
            }
        };
    claimed.map_err(api_err("claim pods"))
}

/// Upstream's `manageReplicas`: creates or deletes pods until `spec.replicas` are active.
async fn manage_replicas(
    ctx: &Context,
    pods_api: &Api<Pod>,
    rs: &ReplicaSet,
    owned: Vec<Arc<Pod>>,
) -> Result<()> {
    let want = spec_replicas(rs);
    let have = owned.len();
    if have < want {
        let count = (want - have).min(BURST_REPLICAS);
        let template = rs
            .spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .unwrap_or_default();
        if template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref())
            .is_none_or(|l| l.is_empty())
        {
            return Err(Error::NoTemplateLabels);
        }
        let pod = pod_from_template(rs, &template, owner_ref(ctx.owner, rs));
        debug!(replicaset = %rs.name_any(), count, "creating pods");
        slow_start_batch(count, || create_pod(ctx, pods_api, rs, &pod)).await
    } else if have > want {
        let count = (have - want).min(BURST_REPLICAS);
        let ns = rs.namespace().unwrap_or_default();
        let related = ctx.related_pods(rs, &ns);
        let victims = crate::pod_state::pods_to_delete(owned, &related, count);
        debug!(replicaset = %rs.name_any(), count, "deleting pods");
        let results = join_all(victims.iter().map(|p| delete_pod(ctx, pods_api, rs, p))).await;
        results.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
    } else {
        Ok(())
    }
}

/// Creates `count` pods in batches of 1, 2, 4, ... and stops after the first batch with an
/// error (upstream's `slowStartBatch`), so a quota or admission failure costs one request, not
/// hundreds.
async fn slow_start_batch<F, Fut>(count: usize, create: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut remaining = count;
    let mut batch = remaining.min(SLOW_START_INITIAL_BATCH);
    while batch > 0 {
        let results = join_all((0..batch).map(|_| create())).await;
        if let Some(e) = results.into_iter().find_map(Result::err) {
            return Err(e);
        }
        remaining -= batch;
        batch = (2 * batch).min(remaining);
    }
    Ok(())
}

/// The pod a ReplicaSet creates from its template (upstream's `GetPodFromTemplate`).
fn pod_from_template(
    rs: &ReplicaSet,
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    owner: OwnerReference,
) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.namespace(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

async fn create_pod(ctx: &Context, api: &Api<Pod>, rs: &ReplicaSet, pod: &Pod) -> Result<()> {
    match api.create(&PostParams::default(), pod).await {
        Ok(created) => {
            let message = format!("Created pod: {}", created.name_any());
            ctx.pod_writes.mutation(created);
            ctx.record(rs, "Normal", "SuccessfulCreate", message);
            Ok(())
        }
        Err(e) => {
            ctx.record(
                rs,
                "Warning",
                "FailedCreate",
                format!("Error creating: {e}"),
            );
            Err(api_err("create pod")(e))
        }
    }
}

async fn delete_pod(ctx: &Context, api: &Api<Pod>, rs: &ReplicaSet, pod: &Pod) -> Result<()> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    let name = pod.name_any();
    match api.delete(&name, &params).await {
        // Graceful deletion: the pod stays, marked as terminating.
        Ok(response) => match response.left() {
            Some(p) if p.metadata.deletion_timestamp.is_some() => ctx.pod_writes.mutation(p),
            _ => ctx.pod_writes.deletion(pod),
        },
        Err(e) if is_not_found(&e) => {
            ctx.pod_writes.deletion(pod);
            return Ok(());
        }
        Err(e) => {
            let message = format!("Error deleting: {e}");
            ctx.record(rs, "Warning", "FailedDelete", message);
            return Err(api_err(format!("delete pod {name}"))(e));
        }
    }
    ctx.record(
        rs,
        "Normal",
        "SuccessfulDelete",
        format!("Deleted pod: {name}"),
    );
    Ok(())
}

/// Upstream's `calculateStatus`.
fn calculate_status(
    rs: &ReplicaSet,
    pods: &[Arc<Pod>],
    manage_err: Option<&Error>,
    clock: &Clock,
) -> ReplicaSetStatus {
    let now = clock.now();
    let template_labels = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let fully_labeled = pods
        .iter()
        .filter(|p| {
            template_labels
                .iter()
                .all(|(k, v)| p.labels().get(k) == Some(v))
        })
        .count();
    let ready = pods.iter().filter(|p| is_pod_ready(p)).count();
    let available = pods
        .iter()
        .filter(|p| is_pod_available(p, min_ready_seconds(rs), now))
        .count();
    let mut conditions = rs
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match manage_err {
        // Only API failures are replica failures; a missing informer is not the ReplicaSet's fault.
        Some(err @ (Error::Api { .. } | Error::NoTemplateLabels)) if !has_failure => {
            let reason = if pods.len() < spec_replicas(rs) {
                "FailedCreate"
            } else {
                "FailedDelete"
            };
            let message = match err {
                Error::Api { source, .. } => source.to_string(),
                other => other.to_string(),
            };
            conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(message),
                last_transition_time: Some(crate::api_values::to_time(now)),
            });
        }
        None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    let nonzero = |n: usize| (n > 0).then_some(n as i32);
    ReplicaSetStatus {
        replicas: pods.len() as i32,
        fully_labeled_replicas: nonzero(fully_labeled),
        ready_replicas: nonzero(ready),
        available_replicas: nonzero(available),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        ..Default::default()
    }
}

/// The controller reference of the owner's pods.
fn owner_ref(kind: OwnerKind, rs: &ReplicaSet) -> OwnerReference {
    match kind {
        OwnerKind::ReplicaSet => controller_ref(rs),
        OwnerKind::ReplicationController => controller_ref(&ReplicationController {
            metadata: rs.metadata.clone(),
            ..Default::default()
        }),
    }
}

/// Writes the status if it changed, through the status subresource.
async fn update_status(ctx: &Context, rs: &ReplicaSet, status: ReplicaSetStatus) -> Result<()> {
    let current = rs.status.clone().unwrap_or_default();
    let unchanged = ReplicaSetStatus {
        terminating_replicas: current.terminating_replicas,
        ..status.clone()
    } == current;
    if unchanged {
        return Ok(());
    }
    let ns = rs.namespace().unwrap_or_default();
    let patch = crate::reconcile::status_merge_patch(
        &status,
        &[
            "replicas",
            "fullyLabeledReplicas",
            "readyReplicas",
            "availableReplicas",
            "observedGeneration",
            "conditions",
        ],
    );
    let params = PatchParams::default();
    let updated = match ctx.owner {
        OwnerKind::ReplicaSet => {
            Api::<ReplicaSet>::namespaced(ctx.client.clone(), &ns)
                .patch_status(&rs.name_any(), &params, &Patch::Merge(&patch))
                .await
        }
        OwnerKind::ReplicationController => {
            Api::<ReplicationController>::namespaced(ctx.client.clone(), &ns)
                .patch_status(&rs.name_any(), &params, &Patch::Merge(&patch))
                .await
                .map(crate::replicationcontroller::as_replica_set)
        }
    };
    match updated {
        Ok(updated) => {
            ctx.rs_writes.mutation(updated);
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(api_err("update replicaset status")(e)),
    }
}
