//! The garbage collector: deletes objects whose owners are gone, following ownerReferences
//! with upstream's three propagation policies.
//!
//! - **Background** (the default): once an owner is deleted (or its uid no longer matches),
//!   every dependent whose owners are all gone is deleted. A dependent that still has a live
//!   owner only loses the dangling ownerReference.
//! - **Foreground**: an owner with a deletionTimestamp and the `foregroundDeletion`
//!   finalizer has its dependents deleted (in the foreground too); once no dependent with
//!   `blockOwnerDeletion: true` is left, the finalizer is removed and the API server deletes the
//!   owner.
//! - **Orphan**: an owner with a deletionTimestamp and the `orphan` finalizer has its
//!   ownerReference removed from every dependent, then the finalizer is removed.
//!
//! The parts are upstream's: resource *monitors* (one metadata-only watch per deletable
//! resource found by discovery, re-read every [`GarbageCollectorConfig::discovery_period`] so
//! custom resources are collected too) feed a *graph builder*, which keeps the owner →
//! dependents graph and queues work for the `attemptToDelete` and `attemptToOrphan` workers.
//! Workers decide on objects read live from the API server, and write with uid or
//! resourceVersion preconditions.
//!
//! ```no_run
//! # async fn run(client: kube::Client) {
//! use kybernetes_controllers::garbage_collector::{GarbageCollectorConfig, spawn_garbage_collector};
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let gc = spawn_garbage_collector(client, kybernetes_core::Clock::new(), GarbageCollectorConfig::default(), shutdown.clone());
//! // ...
//! shutdown.cancel();
//! gc.await.ok();
//! # }
//! ```

mod attempt;
mod graph;
mod monitor;
pub(crate) mod queue;
mod resources;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use kube::Client;
use kybernetes_core::Clock;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span};

pub use graph::{FOREGROUND_FINALIZER, ORPHAN_FINALIZER};

use attempt::{Collector, run_worker};
use graph::{Graph, GraphEvent};
use queue::WorkQueue;
use resources::ResourceTable;

/// An error while collecting one object; the object is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("api request failed: {0}")]
    Api(#[source] kube::Error),
    /// An ownerReference names a kind that discovery does not know (yet).
    #[error("no resource is served for {api_version} {kind}")]
    UnknownKind {
        /// The ownerReference's apiVersion.
        api_version: String,
        /// The ownerReference's kind.
        kind: String,
    },
}

/// Settings of the garbage collector.
#[derive(Clone, Debug)]
pub struct GarbageCollectorConfig {
    /// Workers of the `attemptToDelete` queue (upstream `--concurrent-gc-syncs`, 20).
    pub workers: usize,
    /// How often discovery is read again to watch resources that appeared (upstream 30 s).
    pub discovery_period: Duration,
    /// Resources never watched, as `(group, plural)`: upstream ignores events.
    pub ignored_resources: Vec<(String, String)>,
}

impl Default for GarbageCollectorConfig {
    fn default() -> Self {
        GarbageCollectorConfig {
            workers: 20,
            discovery_period: Duration::from_secs(30),
            ignored_resources: vec![
                (String::new(), "events".to_string()),
                ("events.k8s.io".to_string(), "events".to_string()),
            ],
        }
    }
}

/// Starts the garbage collector. It runs until `shutdown` is cancelled, and never stops on
/// API errors: failed items are retried with backoff. The clock is unused (the collector
/// needs no wall time) and taken for a uniform signature.
pub fn spawn_garbage_collector(
    client: Client,
    clock: Clock,
    config: GarbageCollectorConfig,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let _ = clock;
    tokio::spawn(run(client, config, shutdown).instrument(info_span!("garbage_collector")))
}

async fn run(client: Client, config: GarbageCollectorConfig, shutdown: CancellationToken) {
    info!("garbage collector starting");
    let graph = Arc::new(Mutex::new(Graph::default()));
    let resources = Arc::new(RwLock::new(ResourceTable::default()));
    let (events_tx, events_rx) = mpsc::channel(1024);
    let collector = Arc::new(Collector {
        client: client.clone(),
        graph: graph.clone(),
        resources: resources.clone(),
        events: events_tx.clone(),
        attempt_to_delete: WorkQueue::new(shutdown.clone()),
        attempt_to_orphan: WorkQueue::new(shutdown.clone()),
        absent_owners: Mutex::new(HashSet::new()),
    });
    let mut tasks = JoinSet::new();
    tasks.spawn(build_graph(collector.clone(), events_rx, shutdown.clone()));
    for _ in 0..config.workers.max(1) {
        let c = collector.clone();
        tasks.spawn(async move {
            let q = c.attempt_to_delete.clone();
            run_worker(q, |uid| {
                let c = c.clone();
                async move { c.attempt_to_delete(&uid).await }
            })
            .await
        });
    }
    for _ in 0..(config.workers / 4).max(1) {
        let c = collector.clone();
        tasks.spawn(async move {
            let q = c.attempt_to_orphan.clone();
            run_worker(q, |uid| {
                let c = c.clone();
                async move { c.attempt_to_orphan(&uid).await }
            })
            .await
        });
    }
    tasks.spawn(monitor::run_monitors(
        client,
        resources,
        events_tx,
        config.ignored_resources.clone(),
        config.discovery_period,
        shutdown.clone(),
    ));
    while tasks.join_next().await.is_some() {}
    info!("garbage collector stopped");
}

/// The graph builder: applies every monitor event to the graph and queues the work it
/// creates (upstream `runProcessGraphChanges`).
async fn build_graph(
    collector: Arc<Collector>,
    mut events: mpsc::Receiver<GraphEvent>,
    shutdown: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = shutdown.cancelled() => return,
        };
        let Some(event) = event else { return };
        let work = {
            let table = collector
                .resources
                .read()
                .unwrap_or_else(|p| p.into_inner());
            let scope = |api_version: &str, kind: &str| table.namespaced(api_version, kind);
            let mut graph = collector.graph.lock().unwrap_or_else(|p| p.into_inner());
            graph.process(event, &scope)
        };
        for uid in work.attempt_to_delete {
            collector.attempt_to_delete.add(uid);
        }
        for uid in work.attempt_to_orphan {
            collector.attempt_to_orphan.add(uid);
        }
    }
}
