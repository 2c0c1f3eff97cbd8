//! The Job controller (upstream's `pkg/controller/job`): runs pods from `spec.template` until
//! `completions` of them succeed, at most `parallelism` at a time, and fails the Job after
//! `backoffLimit` failures or `activeDeadlineSeconds`.
//!
//! Pods carry the `batch.kubernetes.io/job-tracking` finalizer, so a finished pod is counted
//! exactly once even if it is deleted at once: each reconcile (`sync::reconcile`, upstream's `syncJob`)
//! 1. records newly finished pods in `status.uncountedTerminatedPods`,
//! 2. removes their finalizers,
//! 3. moves them into `succeeded`/`failed` (and `completedIndexes`);
//!
//! then decides the Job's fate (`FailureTarget` then `Failed`, `SuccessCriteriaMet` then
//! `Complete`, `Suspended`) or creates and deletes pods. Failed pods are replaced after a
//! back-off of 10 s doubling up to 6 minutes, counted from the last failure. The
//! TTL-after-finished controller ([`spawn_ttl_after_finished`]) deletes finished Jobs.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) {
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let clock = kybernetes_core::Clock::new();
//! let informers = kybernetes_controllers::InformerFactory::new(client.clone(), shutdown.clone());
//! let job = kybernetes_controllers::spawn_job(client.clone(), clock.clone(), &informers, shutdown.clone());
//! let ttl = kybernetes_controllers::spawn_ttl_after_finished(client, clock, shutdown.clone());
//! shutdown.cancel();
//! let _ = (job.await, ttl.await);
//! # }
//! ```

pub mod failure_policy;
pub mod pods;
pub mod status;
mod sync;
mod tracking;
mod ttl;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kybernetes_core::Clock;
use kybernetes_core::selector::SelectorError;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use crate::controller_ref::controller_of;
use crate::informers::{InformerFactory, SharedInformer, Subscription};
use crate::mutation_cache::{MutationCache, ObservedRevision};
use crate::reconcile::{ErrorBackoff, is_not_found};
pub use ttl::spawn_ttl_after_finished;

/// How long a recorded write shadows the informer at most.
const MUTATION_TTL: Duration = Duration::from_secs(300);
/// The longest retry delay after errors.
const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(60);

/// The errors of a Job reconcile.
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
    /// The Job's selector does not parse.
    #[error("invalid label selector")]
    Selector(#[source] SelectorError),
    /// The pod informer stopped.
    #[error("the pod informer stopped")]
    InformerStopped,
}

/// A Job reconcile result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn api_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Api { action, source }
}

/// What every Job reconcile shares.
pub(crate) struct Context {
    client: Client,
    clock: Clock,
    /// This controller's event writer, with its own correlator.
    events: crate::event_recorder::EventRecorder,
    pods: Store<Pod>,
    pod_writes: MutationCache<Pod>,
    job_writes: MutationCache<Job>,
    backoff: ErrorBackoff<ObjectRef<Job>>,
}

/// Starts the Job controller; it stops when `shutdown` is cancelled.
pub fn spawn_job(
    client: Client,
    clock: Clock,
    informers: &InformerFactory,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let pods = informers.pods();
    let run = run(client, clock, pods.clone(), pods.subscribe(), shutdown);
    tokio::spawn(run.instrument(info_span!("job_controller")))
}

async fn run(
    client: Client,
    clock: Clock,
    pods: SharedInformer<Pod>,
    pod_events: Subscription<Pod>,
    shutdown: CancellationToken,
) {
    let controller = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default());
    let jobs = controller.store();
    let observed = pods.observed();
    let pods = pods.store();
    let (orphans_tx, orphans_rx) = mpsc::unbounded_channel();
    let pod_events = pod_events
        .into_stream()
        .inspect(move |change| {
            // A finished pod whose Job is gone keeps its finalizer until someone removes it.
            let pod = change.object();
            if pods::has_tracking_finalizer(pod)
                && (pods::is_terminal(pod) || pod.metadata.deletion_timestamp.is_some())
            {
                // The receiver lives as long as this controller; a failed send means shutdown.
                let _ = orphans_tx.send((**pod).clone());
            }
        })
        .flat_map(|change| futures::stream::iter(change.into_triggers()));
    let ctx = Arc::new(Context {
        events: crate::event_recorder::EventRecorder::new(client.clone(), clock.clone()),
        client: client.clone(),
        clock,
        pods,
        pod_writes: MutationCache::new(observed, MUTATION_TTL),
        job_writes: MutationCache::new(ObservedRevision::default(), MUTATION_TTL),
        backoff: ErrorBackoff::new(MAX_ERROR_BACKOFF),
    });
    let orphans = tokio::spawn(
        release_orphan_finalizers(client, jobs.clone(), orphans_rx, shutdown.clone())
            .in_current_span(),
    );
    let jobs_for_pods = jobs.clone();
    let controller = controller
        .watches_shared_stream(pod_events, move |pod| jobs_for_pod(&jobs_for_pods, &pod))
        .run(sync::reconcile, error_policy, ctx);
    crate::reconcile::run_until_shutdown(
        controller,
        &shutdown,
        |e| debug!(error = %e, "job controller"),
    )
    .await;
    debug!("job controller stopped");
    orphans.abort();
    let _ = orphans.await;
}

/// The Jobs a pod event concerns: its controller if that is a Job, or every Job of its
/// namespace whose selector matches an orphan.
fn jobs_for_pod(jobs: &Store<Job>, pod: &Pod) -> Vec<ObjectRef<Job>> {
    let ns = pod.namespace().unwrap_or_default();
    match controller_of(&pod.metadata) {
        Some(r) if r.kind == "Job" && r.api_version.starts_with("batch/") => {
            vec![ObjectRef::new(&r.name).within(&ns)]
        }
        Some(_) => Vec::new(),
        None => jobs
            .state()
            .iter()
            .filter(|j| j.namespace().as_deref() == Some(ns.as_str()))
            .filter(|j| {
                crate::api_values::label_selector(j.spec.as_ref().and_then(|s| s.selector.as_ref()))
                    .is_ok_and(|sel| !sel.is_empty() && sel.matches(pod.labels()))
            })
            .map(|j| ObjectRef::from_obj(j.as_ref()))
            .collect(),
    }
}

/// Removes the tracking finalizer from finished or deleted pods whose Job no longer exists (as
/// upstream's orphan pod handling), so they do not stay forever.
async fn release_orphan_finalizers(
    client: Client,
    jobs: Store<Job>,
    mut orphans: mpsc::UnboundedReceiver<Pod>,
    shutdown: CancellationToken,
) {
    if jobs.wait_until_ready().await.is_err() {
        return;
    }
    loop {
        let pod = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = orphans.recv() => match p { Some(p) => p, None => return },
        };
        let owner = controller_of(&pod.metadata).cloned();
        let ns = pod.namespace().unwrap_or_default();
        let alive = owner.as_ref().is_some_and(|r| {
            jobs.get(&ObjectRef::new(&r.name).within(&ns))
                .is_some_and(|j| j.metadata.uid.as_deref() == Some(r.uid.as_str()))
        });
        if alive {
            continue;
        }
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if let Err(e) = remove_tracking_finalizer(&api, &pod).await {
            warn!(pod = %pod.name_any(), error = %e, "could not remove the job-tracking finalizer of an orphan pod");
        }
    }
}

/// Removes the tracking finalizer from `pod`, guarded by its resourceVersion.
pub(crate) async fn remove_tracking_finalizer(
    api: &Api<Pod>,
    pod: &Pod,
) -> Result<Option<Pod>, kube::Error> {
    let finalizers: Vec<&String> = pod
        .finalizers()
        .iter()
        .filter(|f| *f != pods::TRACKING_FINALIZER)
        .collect();
    let patch = json!({"metadata": {
        "resourceVersion": pod.metadata.resource_version,
        "finalizers": if finalizers.is_empty() { serde_json::Value::Null } else { json!(finalizers) },
    }});
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(p) => Ok(Some(p)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn error_policy(job: Arc<Job>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next_delay(ObjectRef::from_obj(job.as_ref()));
    warn!(job = %job.name_any(), namespace = ?job.namespace(), error = %error, source = ?std::error::Error::source(error), ?delay, "sync failed");
    Action::requeue(delay)
}
