//! The StatefulSet controller (upstream's `pkg/controller/statefulset`): pods with stable
//! names `<set>-0..N`, stable hostnames under the governing Service (`hostname`/`subdomain`)
//! and stable storage (a PersistentVolumeClaim `<template>-<set>-<ordinal>` per
//! `volumeClaimTemplates` entry, kept after scale-down).
//!
//! `OrderedReady` creates pod N only once pods 0..N-1 are running and ready, and removes pods
//! from the highest ordinal down, one at a time; `Parallel` does both at once. Every template is
//! a ControllerRevision; `RollingUpdate` replaces pods from the highest ordinal down to
//! `partition`, one at a time once all are ready, and `OnDelete` waits for deletion.
//! `status.currentRevision` catches up with `updateRevision` once every pod runs it.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) {
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let informers = kybernetes_controllers::InformerFactory::new(client.clone(), shutdown.clone());
//! let handle = kybernetes_controllers::spawn_statefulset(client, kybernetes_core::Clock::new(), &informers, shutdown.clone());
//! shutdown.cancel();
//! handle.await.ok();
//! # }
//! ```

mod sync;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kybernetes_core::Clock;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use crate::controller_ref::controller_of;
use crate::informers::{InformerFactory, SharedInformer, Subscription};
use crate::mutation_cache::{MutationCache, ObservedRevision};
use crate::reconcile::ErrorBackoff;

const MUTATION_TTL: Duration = Duration::from_secs(300);
const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(60);

/// The errors of a StatefulSet reconcile.
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
    /// The pod informer stopped.
    #[error("the pod informer stopped")]
    InformerStopped,
}

/// A StatefulSet reconcile result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn api_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Api { action, source }
}

/// What every StatefulSet reconcile shares.
pub(crate) struct Context {
    client: Client,
    clock: Clock,
    /// This controller's event writer, with its own correlator.
    events: crate::event_recorder::EventRecorder,
    pods: Store<Pod>,
    pod_writes: MutationCache<Pod>,
    set_writes: MutationCache<StatefulSet>,
    backoff: ErrorBackoff<ObjectRef<StatefulSet>>,
}

/// Starts the StatefulSet controller; it stops when `shutdown` is cancelled.
pub fn spawn_statefulset(
    client: Client,
    clock: Clock,
    informers: &InformerFactory,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let pods = informers.pods();
    let run = run(client, clock, pods.clone(), pods.subscribe(), shutdown);
    tokio::spawn(run.instrument(info_span!("statefulset_controller")))
}

async fn run(
    client: Client,
    clock: Clock,
    pods: SharedInformer<Pod>,
    pod_events: Subscription<Pod>,
    shutdown: CancellationToken,
) {
    let controller = Controller::new(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let observed = pods.observed();
    let pods = pods.store();
    let ctx = Arc::new(Context {
        events: crate::event_recorder::EventRecorder::new(client.clone(), clock.clone()),
        client,
        clock,
        pods,
        pod_writes: MutationCache::new(observed, MUTATION_TTL),
        set_writes: MutationCache::new(ObservedRevision::default(), MUTATION_TTL),
        backoff: ErrorBackoff::new(MAX_ERROR_BACKOFF),
    });
    let controller = controller
        .watches_shared_stream(pod_events.into_trigger_stream(), |pod| {
            let ns = pod.namespace().unwrap_or_default();
            controller_of(&pod.metadata)
                .filter(|r| r.kind == "StatefulSet" && r.api_version.starts_with("apps/"))
                .map(|r| ObjectRef::new(&r.name).within(&ns))
        })
        .run(sync::reconcile, error_policy, ctx);
    crate::reconcile::run_until_shutdown(
        controller,
        &shutdown,
        |e| debug!(error = %e, "statefulset controller"),
    )
    .await;
    debug!("statefulset controller stopped");
}

fn error_policy(set: Arc<StatefulSet>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next_delay(ObjectRef::from_obj(set.as_ref()));
    warn!(statefulset = %set.name_any(), namespace = ?set.namespace(), error = %error, source = ?std::error::Error::source(error), ?delay, "sync failed");
    Action::requeue(delay)
}
