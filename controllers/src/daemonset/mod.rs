//! The DaemonSet controller (upstream's `pkg/controller/daemon`): one pod from the template on
//! every eligible node.
//!
//! A node is eligible when it matches the template's `nodeSelector` and required node affinity
//! and every `NoSchedule`/`NoExecute` taint is tolerated, counting the tolerations every daemon
//! pod gets ([`placement::add_daemon_tolerations`]). A pod is pinned to its node by node
//! affinity on `metadata.name` and bound by the scheduler, as upstream. Template changes roll
//! out node by node (`RollingUpdate` with `maxUnavailable` or `maxSurge`) or wait for manual
//! deletion (`OnDelete`); every template is kept as a ControllerRevision whose hash labels the
//! pods (`controller-revision-hash`).
//!
//! ```no_run
//! # async fn demo(client: kube::Client) {
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let informers = kybernetes_controllers::InformerFactory::new(client.clone(), shutdown.clone());
//! let handle = kybernetes_controllers::spawn_daemonset(client, kybernetes_core::Clock::new(), &informers, shutdown.clone());
//! shutdown.cancel();
//! handle.await.ok();
//! # }
//! ```

pub mod placement;
pub mod revision;
mod sync;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kybernetes_core::Clock;
use kybernetes_core::selector::SelectorError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use crate::controller_ref::controller_of;
use crate::informers::{InformerFactory, SharedInformer, Subscription};
use crate::mutation_cache::{MutationCache, ObservedRevision};
use crate::reconcile::ErrorBackoff;

const MUTATION_TTL: Duration = Duration::from_secs(300);
const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(60);

/// The errors of a DaemonSet reconcile.
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
    /// The DaemonSet's selector does not parse.
    #[error("invalid label selector")]
    Selector(#[source] SelectorError),
    /// An informer stopped.
    #[error("an informer stopped")]
    InformerStopped,
}

/// A DaemonSet reconcile result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn api_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Api { action, source }
}

/// What every DaemonSet reconcile shares.
pub(crate) struct Context {
    client: Client,
    clock: Clock,
    /// This controller's event writer, with its own correlator.
    events: crate::event_recorder::EventRecorder,
    pods: Store<Pod>,
    nodes: Store<Node>,
    pod_writes: MutationCache<Pod>,
    ds_writes: MutationCache<DaemonSet>,
    backoff: ErrorBackoff<ObjectRef<DaemonSet>>,
}

/// Starts the DaemonSet controller; it stops when `shutdown` is cancelled.
pub fn spawn_daemonset(
    client: Client,
    clock: Clock,
    informers: &InformerFactory,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let (pods, nodes) = (informers.pods(), informers.nodes());
    let informed = Informed {
        pod_events: pods.subscribe(),
        node_events: nodes.subscribe(),
        pods: pods.clone(),
        nodes: nodes.store(),
    };
    let run = run(client, clock, informed, shutdown);
    tokio::spawn(run.instrument(info_span!("daemonset_controller")))
}

/// The shared caches and subscriptions the controller reads.
struct Informed {
    pods: SharedInformer<Pod>,
    nodes: Store<Node>,
    pod_events: Subscription<Pod>,
    node_events: Subscription<Node>,
}

async fn run(client: Client, clock: Clock, informed: Informed, shutdown: CancellationToken) {
    let controller = Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let daemon_sets = controller.store();
    let observed = informed.pods.observed();
    let pods = informed.pods.store();
    let nodes = informed.nodes;
    let ctx = Arc::new(Context {
        events: crate::event_recorder::EventRecorder::new(client.clone(), clock.clone()),
        client,
        clock,
        pods,
        nodes,
        pod_writes: MutationCache::new(observed, MUTATION_TTL),
        ds_writes: MutationCache::new(ObservedRevision::default(), MUTATION_TTL),
        backoff: ErrorBackoff::new(MAX_ERROR_BACKOFF),
    });
    let all = daemon_sets.clone();
    let placements: Mutex<HashMap<String, u64>> = Mutex::new(HashMap::new());
    let controller = controller
        .watches_shared_stream(informed.pod_events.into_trigger_stream(), |pod| {
            let ns = pod.namespace().unwrap_or_default();
            controller_of(&pod.metadata)
                .filter(|r| r.kind == "DaemonSet" && r.api_version.starts_with("apps/"))
                .map(|r| ObjectRef::new(&r.name).within(&ns))
        })
        // A new node, or a change of its labels or taints, may concern every DaemonSet; its
        // heartbeats do not.
        .watches_shared_stream(informed.node_events.into_trigger_stream(), move |node| {
            let key = placement_key(&node);
            let mut seen = placements.lock().unwrap_or_else(|e| e.into_inner());
            if seen.insert(node.name_any(), key) == Some(key) {
                return Vec::new();
            }
            all.state()
                .iter()
                .map(|ds| ObjectRef::from_obj(ds.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(sync::reconcile, error_policy, ctx);
    crate::reconcile::run_until_shutdown(
        controller,
        &shutdown,
        |e| debug!(error = %e, "daemonset controller"),
    )
    .await;
    debug!("daemonset controller stopped");
}

/// A digest of what placement reads of a node: its labels and taints.
fn placement_key(node: &Node) -> u64 {
    let mut h = DefaultHasher::new();
    node.metadata.labels.hash(&mut h);
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref());
    serde_json::to_string(&taints)
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

fn error_policy(ds: Arc<DaemonSet>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next_delay(ObjectRef::from_obj(ds.as_ref()));
    warn!(daemonset = %ds.name_any(), namespace = ?ds.namespace(), error = %error, source = ?std::error::Error::source(error), ?delay, "sync failed");
    Action::requeue(delay)
}
