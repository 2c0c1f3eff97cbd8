//! The ReplicationController controller (upstream's `pkg/controller/replication`): the
//! ReplicaSet controller run on ReplicationControllers seen as ReplicaSets, as upstream does
//! through its conversion adapters. The map selector becomes `matchLabels` (the template's
//! labels when it is empty, as upstream defaults it); pods get a `v1/ReplicationController`
//! controller reference and the status is written to the ReplicationController.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) {
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let informers = kybernetes_controllers::InformerFactory::new(client.clone(), shutdown.clone());
//! let handle = kybernetes_controllers::spawn_replicationcontroller(client, kybernetes_core::Clock::new(), &informers, shutdown.clone());
//! shutdown.cancel();
//! handle.await.ok();
//! # }
//! ```

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{
    ReplicaSet, ReplicaSetCondition, ReplicaSetSpec, ReplicaSetStatus,
};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kybernetes_core::Clock;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span};

use crate::controller_ref::controller_of;
use crate::informers::{InformerFactory, SharedInformer, Subscription};
use crate::mutation_cache::{MutationCache, ObservedRevision};
use crate::reconcile::ErrorBackoff;
use crate::replicaset::{self, Context, MAX_BACKOFF, MUTATION_TTL, OwnerKind};

/// Starts the ReplicationController controller; it stops when `shutdown` is cancelled.
pub fn spawn_replicationcontroller(
    client: Client,
    clock: Clock,
    informers: &InformerFactory,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let pods = informers.pods();
    let run = run(client, clock, pods.clone(), pods.subscribe(), shutdown);
    tokio::spawn(run.instrument(info_span!("replicationcontroller_controller")))
}

/// The ReplicaSet a ReplicationController behaves as.
pub(crate) fn as_replica_set(rc: ReplicationController) -> ReplicaSet {
    let spec = rc.spec.unwrap_or_default();
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone());
    let selector = spec.selector.filter(|s| !s.is_empty()).or(template_labels);
    let status = rc.status.map(|s| ReplicaSetStatus {
        replicas: s.replicas,
        fully_labeled_replicas: s.fully_labeled_replicas,
        ready_replicas: s.ready_replicas,
        available_replicas: s.available_replicas,
        observed_generation: s.observed_generation,
        conditions: s.conditions.map(|cs| {
            cs.into_iter()
                .map(|c| ReplicaSetCondition {
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                    last_transition_time: c.last_transition_time,
                })
                .collect()
        }),
        ..Default::default()
    });
    ReplicaSet {
        metadata: rc.metadata,
        spec: Some(ReplicaSetSpec {
            replicas: spec.replicas,
            min_ready_seconds: spec.min_ready_seconds,
            selector: LabelSelector {
                match_labels: selector,
                match_expressions: None,
            },
            template: spec.template,
        }),
        status,
    }
}

async fn run(
    client: Client,
    clock: Clock,
    pods: SharedInformer<Pod>,
    pod_events: Subscription<Pod>,
    shutdown: CancellationToken,
) {
    let controller = Controller::new(
        Api::<ReplicationController>::all(client.clone()),
        watcher::Config::default(),
    );
    let observed = pods.observed();
    let pods = pods.store();
    // ReplicationControllers have no owning controller whose siblings would rank pods.
    let (replica_sets, _unused_writer) = reflector::store::<ReplicaSet>();
    let events = crate::event_recorder::EventRecorder::new(client.clone(), clock.clone());
    let ctx = Arc::new(Context {
        client,
        clock,
        pods,
        replica_sets,
        pod_writes: MutationCache::new(observed, MUTATION_TTL),
        rs_writes: MutationCache::new(ObservedRevision::default(), MUTATION_TTL),
        backoff: ErrorBackoff::new(MAX_BACKOFF),
        owner: OwnerKind::ReplicationController,
        events,
    });
    let rcs = controller.store();
    let controller = controller
        .watches_shared_stream(pod_events.into_trigger_stream(), move |pod| {
            let ns = pod.namespace().unwrap_or_default();
            match controller_of(&pod.metadata) {
                Some(r) if r.kind == "ReplicationController" && r.api_version == "v1" => {
                    vec![ObjectRef::new(&r.name).within(&ns)]
                }
                Some(_) => Vec::new(),
                None => rcs
                    .state()
                    .iter()
                    .filter(|rc| rc.namespace().as_deref() == Some(ns.as_str()))
                    .filter(|rc| {
                        let rs = as_replica_set(rc.as_ref().clone());
                        crate::api_values::label_selector(rs.spec.as_ref().map(|s| &s.selector))
                            .is_ok_and(|sel| !sel.is_empty() && sel.matches(pod.labels()))
                    })
                    .map(|rc| ObjectRef::from_obj(rc.as_ref()))
                    .collect(),
            }
        })
        .run(
            |rc: Arc<ReplicationController>, ctx: Arc<Context>| async move {
                replicaset::reconcile(Arc::new(as_replica_set(rc.as_ref().clone())), ctx).await
            },
            |rc: Arc<ReplicationController>,
             error: &replicaset::Error,
             ctx: Arc<Context>|
             -> Action {
                replicaset::error_policy(Arc::new(as_replica_set(rc.as_ref().clone())), error, ctx)
            },
            ctx,
        );
    crate::reconcile::run_until_shutdown(
        controller,
        &shutdown,
        |e| debug!(error = %e, "replicationcontroller controller"),
    )
    .await;
}
