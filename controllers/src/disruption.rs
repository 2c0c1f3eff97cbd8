//! The disruption controller (upstream's `pkg/controller/disruption`): keeps each
//! PodDisruptionBudget's status current, which `pods/eviction` reads to allow or refuse an
//! eviction.
//!
//! Each reconcile (upstream's `trySync`):
//! 1. selects the budget's pods from the informer (an empty selector selects the namespace);
//! 2. computes `expectedPods` and `desiredHealthy`: with an integer `minAvailable`, the number of
//!    selected pods and that integer; with a percentage, or with `maxUnavailable`, the scale of
//!    the controllers owning the pods (Deployment through its ReplicaSet, ReplicaSet,
//!    StatefulSet, ReplicationController), each counted once;
//! 3. keeps the `disruptedPods` entries the eviction subresource wrote for pods not yet
//!    deleted, for at most [`DELETION_TIMEOUT`] (cluster clock), and requeues when the first one
//!    expires;
//! 4. counts `currentHealthy` (Ready pods neither terminating nor just evicted) and writes
//!    `disruptionsAllowed = currentHealthy - desiredHealthy` (never negative, and 0 while no pod
//!    is expected), `observedGeneration` and the `DisruptionAllowed` condition
//!    (`SufficientPods` or `InsufficientPods`). The write carries the resourceVersion the
//!    budget was read at, so it never undoes an eviction's decrement.
//!
//! When a sync fails the budget fails safe: no disruption allowed and the condition False with
//! reason `SyncFailed`. Events on the budget follow upstream (`NoPods`, `UnmanagedPods`,
//! `CalculateExpectedPodCountFailed`), and `NotDeleted` on a pod whose eviction never completed.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) {
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let informers = kybernetes_controllers::InformerFactory::new(client.clone(), shutdown.clone());
//! let handle = kybernetes_controllers::spawn_disruption(client, kybernetes_core::Clock::new(), &informers, shutdown.clone());
//! shutdown.cancel();
//! handle.await.ok();
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kybernetes_core::Clock;
use kybernetes_core::selector::SelectorError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use crate::api_values::{from_time, label_selector, scaled_int_or_percent, to_time};
use crate::controller_ref::controller_of;
use crate::informers::{InformerFactory, Subscription};
use crate::pod_state::is_pod_ready;
use crate::reconcile::{ErrorBackoff, is_not_found};
use crate::replicaset::MAX_BACKOFF;

/// How long a pod the eviction subresource recorded in `disruptedPods` may take to be deleted
/// before the budget counts it again (upstream's `DeletionTimeout`).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);
/// The condition the controller maintains.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";

/// The errors of a disruption-controller sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("failed to {action}: {source}")]
    Api {
        /// What the controller was doing.
        action: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The budget's selector does not parse.
    #[error("invalid label selector: {0}")]
    Selector(#[source] SelectorError),
    /// The expected number of pods could not be computed.
    #[error("{0}")]
    ExpectedCount(String),
    /// The pod informer stopped.
    #[error("the pod informer stopped")]
    InformerStopped,
}

/// A disruption-controller result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn api_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Api { action, source }
}

struct Context {
    client: Client,
    clock: Clock,
    /// This controller's event writer, with its own correlator.
    events: crate::event_recorder::EventRecorder,
    pods: Store<Pod>,
    backoff: ErrorBackoff<ObjectRef<PodDisruptionBudget>>,
}

/// Starts the disruption controller; it stops when `shutdown` is cancelled.
pub fn spawn_disruption(
    client: Client,
    clock: Clock,
    informers: &InformerFactory,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let pods = informers.pods();
    let run = run(client, clock, pods.store(), pods.subscribe(), shutdown);
    tokio::spawn(run.instrument(info_span!("disruption_controller")))
}

async fn run(
    client: Client,
    clock: Clock,
    pods: Store<Pod>,
    pod_events: Subscription<Pod>,
    shutdown: CancellationToken,
) {
    let controller = Controller::new(
        Api::<PodDisruptionBudget>::all(client.clone()),
        watcher::Config::default(),
    );
    let budgets = controller.store();
    let ctx = Arc::new(Context {
        events: crate::event_recorder::EventRecorder::new(client.clone(), clock.clone()),
        client,
        clock,
        pods,
        backoff: ErrorBackoff::new(MAX_BACKOFF),
    });
    let controller = controller
        .watches_shared_stream(pod_events.into_trigger_stream(), move |pod| {
            budgets_for_pod(&budgets, &pod)
        })
        .run(reconcile, error_policy, ctx);
    crate::reconcile::run_until_shutdown(
        controller,
        &shutdown,
        |e| debug!(error = %e, "disruption controller"),
    )
    .await;
}

/// The budgets of the pod's namespace whose selector matches it.
fn budgets_for_pod(
    budgets: &Store<PodDisruptionBudget>,
    pod: &Pod,
) -> Vec<ObjectRef<PodDisruptionBudget>> {
    let ns = pod.namespace();
    budgets
        .state()
        .iter()
        .filter(|b| b.namespace() == ns)
        .filter(|b| {
            let sel = b.spec.as_ref().and_then(|s| s.selector.as_ref());
            label_selector(sel).is_ok_and(|sel| sel.matches(pod.labels()))
        })
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

fn error_policy(pdb: Arc<PodDisruptionBudget>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next_delay(ObjectRef::from_obj(pdb.as_ref()));
    warn!(pdb = %pdb.name_any(), namespace = ?pdb.namespace(), error = %error, ?delay, "sync failed");
    Action::requeue(delay)
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, ctx: Arc<Context>) -> Result<Action> {
    ctx.pods
        .wait_until_ready()
        .await
        .map_err(|_| Error::InformerStopped)?;
    let key = ObjectRef::from_obj(pdb.as_ref());
    match try_sync(&ctx, &pdb).await {
        Ok(recheck) => {
            ctx.backoff.reset(&key);
            Ok(recheck.map_or_else(Action::await_change, Action::requeue))
        }
        // A lost race with an eviction: the informer brings the newer budget.
        Err(e @ Error::Api { .. }) if is_conflict(&e) => Err(e),
        Err(e) => {
            fail_safe(&ctx, &pdb, &e).await?;
            Err(e)
        }
    }
}

fn is_conflict(e: &Error) -> bool {
    matches!(e, Error::Api { source: kube::Error::Api(s), .. } if s.code == 409)
}

/// Upstream's `trySync`; returns when the budget must be looked at again (the first
/// `disruptedPods` entry to expire).
async fn try_sync(ctx: &Context, pdb: &PodDisruptionBudget) -> Result<Option<Duration>> {
    let ns = pdb.namespace().unwrap_or_default();
    let spec = pdb.spec.clone().unwrap_or_default();
    let selector = match label_selector(spec.selector.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            let message = format!("Failed to get pods: {e}");
            record(ctx, pdb, "Warning", "NoPods", message).await;
            return Err(Error::Selector(e));
        }
    };
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()) && selector.matches(p.labels()))
        .collect();
    if pods.is_empty() {
        record(
            ctx,
            pdb,
            "Normal",
            "NoPods",
            "No matching pods found".into(),
        )
        .await;
    }
    let (expected, desired, unmanaged) = match expected_pod_count(ctx, pdb, &pods).await {
        Ok(counts) => counts,
        Err(e) => {
            let message = format!("Failed to calculate the number of expected pods: {e}");
            record(
                ctx,
                pdb,
                "Warning",
                "CalculateExpectedPodCountFailed",
                message,
            )
            .await;
            return Err(e);
        }
    };
    if !unmanaged.is_empty() {
        debug!(pdb = %pdb.name_any(), ?unmanaged, "pods without a controller");
        let message = format!(
            "Pods selected by this PodDisruptionBudget (selector: {selector}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value."
        );
        record(ctx, pdb, "Warning", "UnmanagedPods", message).await;
    }
    let now = ctx.clock.now();
    let (disrupted, recheck, expired) = disrupted_pods(pdb, &pods, now);
    for pod in expired {
        let message = format!(
            "Pod was expected by PDB {ns}/{} to be deleted but it wasn't",
            pdb.name_any()
        );
        record(ctx, pod.as_ref(), "Warning", "NotDeleted", message).await;
    }
    let healthy = current_healthy(&pods, &disrupted);
    update_status(ctx, pdb, healthy, desired, expected, disrupted).await?;
    Ok(recheck.map(|at| (at - now).to_std().unwrap_or_default()))
}

/// Upstream's `getExpectedPodCount`: `(expectedPods, desiredHealthy, unmanaged pod names)`.
async fn expected_pod_count(
    ctx: &Context,
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
) -> Result<(i32, i32, Vec<String>)> {
    let spec = pdb.spec.clone().unwrap_or_default();
    let scaled = |v, total| scaled_int_or_percent(v, total, true).map_err(Error::ExpectedCount);
    if let Some(max) = &spec.max_unavailable {
        let (expected, unmanaged) = expected_scale(ctx, pods).await?;
        let desired = (expected - scaled(max, expected)?).max(0);
        return Ok((expected, desired, unmanaged));
    }
    match &spec.min_available {
        Some(min @ k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(_)) => {
            let (expected, unmanaged) = expected_scale(ctx, pods).await?;
            Ok((expected, scaled(min, expected)?, unmanaged))
        }
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => {
            Ok((pods.len().try_into().unwrap_or(i32::MAX), *n, Vec::new()))
        }
        None => Ok((0, 0, Vec::new())),
    }
}

/// Upstream's `getExpectedScale`: the summed scale of the controllers owning `pods`, each
/// counted once, and the pods that have no controller.
async fn expected_scale(ctx: &Context, pods: &[Arc<Pod>]) -> Result<(i32, Vec<String>)> {
    let mut scales: HashMap<String, i32> = HashMap::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let Some(owner) = controller_of(&pod.metadata) else {
            unmanaged.push(pod.name_any());
            continue;
        };
        if scales.contains_key(&owner.uid) {
            continue;
        }
        let ns = pod.namespace().unwrap_or_default();
        match controller_scale(ctx, owner, &ns).await? {
            Some((uid, scale)) => {
                scales.insert(uid, scale);
            }
            None => {
                return Err(Error::ExpectedCount(format!(
                    "found no controllers for pod {:?}",
                    pod.name_any()
                )));
            }
        }
    }
    let total = scales.values().fold(0i32, |a, b| a.saturating_add(*b));
    Ok((total, unmanaged))
}

/// The uid and `spec.replicas` of the scalable controller behind a pod's controller
/// reference (upstream's finders): a ReplicaSet owned by a Deployment stands for the
/// Deployment. `None` when the reference names no such object (or one with another uid).
async fn controller_scale(
    ctx: &Context,
    owner: &OwnerReference,
    ns: &str,
) -> Result<Option<(String, i32)>> {
    let group = owner.api_version.split_once('/').map_or("", |(g, _)| g);
    let replicas = |r: Option<i32>| r.unwrap_or(1);
    match (group, owner.kind.as_str()) {
        ("apps", "ReplicaSet") => {
            let Some(rs) = get::<ReplicaSet>(ctx, ns, &owner.name, &owner.uid).await? else {
                return Ok(None);
            };
            match controller_of(&rs.metadata) {
                Some(d) if d.kind == "Deployment" && d.api_version.starts_with("apps/") => {
                    let dep = get::<Deployment>(ctx, ns, &d.name, &d.uid).await?;
                    Ok(dep.map(|dep| {
                        let n = dep.spec.as_ref().and_then(|s| s.replicas);
                        (d.uid.clone(), replicas(n))
                    }))
                }
                _ => Ok(Some((
                    owner.uid.clone(),
                    replicas(rs.spec.as_ref().and_then(|s| s.replicas)),
                ))),
            }
        }
        ("apps", "StatefulSet") => Ok(get::<StatefulSet>(ctx, ns, &owner.name, &owner.uid)
            .await?
            .map(|s| {
                (
                    owner.uid.clone(),
                    replicas(s.spec.as_ref().and_then(|s| s.replicas)),
                )
            })),
        ("", "ReplicationController") => {
            Ok(
                get::<ReplicationController>(ctx, ns, &owner.name, &owner.uid)
                    .await?
                    .map(|s| {
                        (
                            owner.uid.clone(),
                            replicas(s.spec.as_ref().and_then(|s| s.replicas)),
                        )
                    }),
            )
        }
        ("apps", "DaemonSet") => Err(Error::ExpectedCount(
            "daemonsets.apps does not implement the scale subresource".into(),
        )),
        ("batch", "Job") => Err(Error::ExpectedCount(
            "jobs.batch does not implement the scale subresource".into(),
        )),
        _ => Ok(None),
    }
}

/// The object `name` if it exists with this uid.
async fn get<K>(ctx: &Context, ns: &str, name: &str, uid: &str) -> Result<Option<K>>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    match api.get(name).await {
        Ok(obj) if obj.meta().uid.as_deref() == Some(uid) => Ok(Some(obj)),
        Ok(_) => Ok(None),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(api_err(format!("get {} {ns}/{name}", K::kind(&())))(e)),
    }
}

/// What [`disrupted_pods`] finds: the entries still waiting, when the first expires, and the
/// pods whose entry expired.
type DisruptedPods = (BTreeMap<String, Time>, Option<DateTime<Utc>>, Vec<Arc<Pod>>);

/// Upstream's `buildDisruptedPodMap`: the entries still waiting for their pod's deletion, when
/// the first of them expires, and the pods whose entry expired.
fn disrupted_pods(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    now: DateTime<Utc>,
) -> DisruptedPods {
    let mut kept = BTreeMap::new();
    let mut recheck: Option<DateTime<Utc>> = None;
    let mut expired = Vec::new();
    let Some(recorded) = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()) else {
        return (kept, recheck, expired);
    };
    let timeout = chrono::Duration::from_std(DELETION_TIMEOUT).unwrap_or_default();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(at) = recorded.get(&pod.name_any()) else {
            continue;
        };
        let deadline = from_time(at) + timeout;
        if deadline < now {
            expired.push(pod.clone());
        } else {
            recheck = Some(recheck.map_or(deadline, |r| r.min(deadline)));
            kept.insert(pod.name_any(), at.clone());
        }
    }
    (kept, recheck, expired)
}

/// Upstream's `countHealthyPods`: Ready pods neither terminating nor just evicted.
fn current_healthy(pods: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>) -> i32 {
    let n = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !disrupted.contains_key(&p.name_any()))
        .filter(|p| is_pod_ready(p))
        .count();
    n.try_into().unwrap_or(i32::MAX)
}

/// Upstream's `apimeta.SetStatusCondition`: the transition time moves only when the status
/// does.
fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(c) => {
            if c.status == new.status {
                new.last_transition_time = c.last_transition_time.clone();
            }
            *c = new;
        }
        None => conditions.push(new),
    }
}

/// Upstream's `UpdateDisruptionAllowedCondition`.
fn disruption_allowed_condition(status: &mut PodDisruptionBudgetStatus, now: DateTime<Utc>) {
    let (value, reason) = if status.disruptions_allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    set_condition(
        conditions,
        Condition {
            type_: DISRUPTION_ALLOWED.into(),
            status: value.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: status.observed_generation,
            last_transition_time: to_time(now),
        },
    );
}

/// Upstream's `updatePdbStatus`: writes the computed status unless it is already current.
async fn update_status(
    ctx: &Context,
    pdb: &PodDisruptionBudget,
    current_healthy: i32,
    desired_healthy: i32,
    expected_pods: i32,
    disrupted: BTreeMap<String, Time>,
) -> Result<()> {
    // A budget that expects no pods allows nothing, so pods appearing before the next sync are
    // protected.
    let mut allowed = current_healthy - desired_healthy;
    if expected_pods <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let old = pdb.status.clone().unwrap_or_default();
    let mut status = PodDisruptionBudgetStatus {
        current_healthy,
        desired_healthy,
        expected_pods,
        disruptions_allowed: allowed,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: pdb.metadata.generation,
        conditions: old.conditions.clone(),
    };
    disruption_allowed_condition(&mut status, ctx.clock.now());
    if old == status {
        return Ok(());
    }
    write_status(ctx, pdb, status).await
}

/// Upstream's `failSafe`: a budget whose status cannot be computed allows no disruption.
async fn fail_safe(ctx: &Context, pdb: &PodDisruptionBudget, err: &Error) -> Result<()> {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = 0;
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let observed = status.observed_generation;
    set_condition(
        conditions,
        Condition {
            type_: DISRUPTION_ALLOWED.into(),
            status: "False".into(),
            reason: "SyncFailed".into(),
            message: err.to_string(),
            observed_generation: observed,
            last_transition_time: to_time(ctx.clock.now()),
        },
    );
    if pdb.status.as_ref() == Some(&status) {
        return Ok(());
    }
    write_status(ctx, pdb, status).await
}

/// A status update at the budget's resourceVersion: a budget an eviction changed since it was
/// read conflicts, and the informer delivers the newer one.
async fn write_status(
    ctx: &Context,
    pdb: &PodDisruptionBudget,
    status: PodDisruptionBudgetStatus,
) -> Result<()> {
    let ns = pdb.namespace().unwrap_or_default();
    let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
    let mut new = pdb.clone();
    new.metadata.managed_fields = None;
    new.status = Some(status);
    match api
        .replace_status(&pdb.name_any(), &PostParams::default(), &new)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(api_err(format!("update status of {ns}/{}", pdb.name_any()))(e)),
    }
}

/// Records an event with the cluster clock.
async fn record<K>(ctx: &Context, obj: &K, type_: &str, reason: &str, message: String)
where
    K: kube::Resource<DynamicType = ()>,
{
    ctx.events.record(obj, type_, reason, message).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, ready: bool, terminating: bool) -> Arc<Pod> {
        let now = to_time(Utc::now());
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                deletion_timestamp: terminating.then(|| now.clone()),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn healthy_pods_exclude_terminating_unready_and_just_evicted_ones() {
        let pods = [
            pod("a", true, false),
            pod("b", true, false),
            pod("c", false, false),
            pod("d", true, true),
        ];
        let disrupted = BTreeMap::from([("b".to_string(), to_time(Utc::now()))]);
        assert_eq!(current_healthy(&pods, &disrupted), 1);
    }

    #[test]
    fn disrupted_pods_expire_after_the_deletion_timeout() {
        let now = Utc::now();
        let pods = [
            pod("fresh", true, false),
            pod("stale", true, false),
            pod("gone", true, true),
        ];
        let pdb = PodDisruptionBudget {
            status: Some(PodDisruptionBudgetStatus {
                disrupted_pods: Some(BTreeMap::from([
                    (
                        "fresh".to_string(),
                        to_time(now - chrono::Duration::seconds(30)),
                    ),
                    (
                        "stale".to_string(),
                        to_time(now - chrono::Duration::seconds(121)),
                    ),
                    ("gone".to_string(), to_time(now)),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (kept, recheck, expired) = disrupted_pods(&pdb, &pods, now);
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["fresh"]);
        let expected_recheck = from_time(&to_time(now - chrono::Duration::seconds(30)))
            + chrono::Duration::seconds(120);
        assert_eq!(recheck, Some(expected_recheck));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].name_any(), "stale");
    }
}
