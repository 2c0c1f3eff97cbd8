//! Upstream's `podWorkers`: watches the pods bound to this node (`spec.nodeName=<node>`),
//! keeps one [`PodWorker`] per pod UID, hands each its pod updates, and routes the runtime's
//! container exits to the right worker.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kybernetes_runtime::{ContainerEvent, ContainerEventKind};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::context::AgentContext;
use crate::pod_worker::{PodWork, PodWorker};
use crate::termination::remove_orphans;

struct PodWorkers {
    ctx: Arc<AgentContext>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    workers: HashMap<String, mpsc::UnboundedSender<PodWork>>,
    /// Pods whose worker finished (deleted and cleaned up) but whose Delete event has not
    /// arrived yet; late updates for them are ignored.
    finished: HashSet<String>,
    done_tx: mpsc::UnboundedSender<String>,
    /// UIDs seen during a (re)list, to find the pods that vanished meanwhile.
    relist: Option<HashSet<String>>,
    orphans_checked: bool,
}

impl PodWorkers {
    fn apply(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        if self.finished.contains(&uid) {
            return;
        }
        let pod = Arc::new(pod);
        if let Some(tx) = self.workers.get(&uid) {
            if tx.send(PodWork::Update(pod.clone())).is_ok() {
                return;
            }
            self.workers.remove(&uid);
        }
        debug!(pod = ?pod.metadata.name, "starting pod worker");
        let (worker, tx) = PodWorker::new(self.ctx.clone(), pod, self.shutdown.clone());
        self.workers.insert(uid, tx);
        self.tracker.spawn(worker.run(self.done_tx.clone()));
    }

    fn remove(&mut self, uid: &str) {
        if let Some(tx) = self.workers.remove(uid) {
            let _ = tx.send(PodWork::Removed);
        }
        self.finished.remove(uid);
    }

    async fn handle(&mut self, event: Event<Pod>) {
        match event {
            Event::Init => self.relist = Some(HashSet::new()),
            Event::InitApply(pod) => {
                if let (Some(seen), Some(uid)) = (self.relist.as_mut(), pod.metadata.uid.clone()) {
                    seen.insert(uid);
                }
                self.apply(pod);
            }
            Event::InitDone => {
                if let Some(seen) = self.relist.take() {
                    let gone: Vec<String> = self
                        .workers
                        .keys()
                        .filter(|uid| !seen.contains(*uid))
                        .cloned()
                        .collect();
                    for uid in gone {
                        self.remove(&uid);
                    }
                }
                if !self.orphans_checked {
                    self.orphans_checked = true;
                    let known: HashSet<String> = self.workers.keys().cloned().collect();
                    remove_orphans(&self.ctx, &known).await;
                }
            }
            Event::Apply(pod) => self.apply(pod),
            Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    self.remove(uid);
                }
            }
        }
    }

    fn route(&mut self, event: Result<ContainerEvent, broadcast::error::RecvError>) -> bool {
        match event {
            Ok(e) if e.kind == ContainerEventKind::Stopped => {
                if let Some(tx) = self.workers.get(&e.pod_uid) {
                    let _ = tx.send(PodWork::ContainerChanged);
                }
                true
            }
            Ok(_) => true,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                debug!(
                    missed = n,
                    "container events lagged; waking every pod worker"
                );
                for tx in self.workers.values() {
                    let _ = tx.send(PodWork::ContainerChanged);
                }
                true
            }
            Err(broadcast::error::RecvError::Closed) => false,
        }
    }
}

/// Runs the pod workers until `shutdown`.
pub(crate) async fn run_pod_workers(
    ctx: Arc<AgentContext>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.name()));
    // The agent never reads the field managers, and they are a large part of every pod.
    let mut pods = watcher::watcher(api, config)
        .default_backoff()
        .modify(|pod: &mut Pod| pod.metadata.managed_fields = None)
        .boxed();
    let mut container_events = Some(ctx.runtime.node_container_events(ctx.name()));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut workers = PodWorkers {
        ctx,
        shutdown: shutdown.clone(),
        tracker,
        workers: HashMap::new(),
        finished: HashSet::new(),
        done_tx,
        relist: None,
        orphans_checked: false,
    };
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            Some(uid) = done_rx.recv() => {
                if workers.workers.remove(&uid).is_some() {
                    workers.finished.insert(uid);
                }
            }
            event = async {
                match container_events.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                if !workers.route(event) {
                    container_events = None;
                }
            }
            event = pods.next() => match event {
                Some(Ok(event)) => workers.handle(event).await,
                Some(Err(e)) => warn!(error = %e, "pod watch failed; retrying"),
                None => return,
            },
        }
    }
}
