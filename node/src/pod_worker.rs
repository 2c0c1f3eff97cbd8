//! One task per pod (upstream's pod worker): it holds the pod's latest spec, reacts to pod
//! updates, container exits and probe results, runs `syncPod` and writes the status. Nothing
//! polls: the worker sleeps until a message or its next back-off deadline.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{Api, Patch, PatchParams};
use kybernetes_runtime::{PodSandboxConfig, ProbeKind};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use crate::backoff::Backoff;
use crate::context::AgentContext;
use crate::probes::Probes;
use crate::volumes::{CachedToken, PodVolumes};

/// What wakes a pod worker.
#[derive(Debug)]
pub(crate) enum PodWork {
    /// A newer version of the pod from the API.
    Update(Arc<Pod>),
    /// The pod is gone from the API.
    Removed,
    /// One of its containers changed in the runtime (exited).
    ContainerChanged,
    /// A probe changed its verdict.
    Probe {
        /// The container probed.
        container_id: String,
        /// Which probe.
        kind: ProbeKind,
        /// Passing (`true`) or failing.
        ok: bool,
    },
}

/// Why a container waits, as the status reports it (upstream's reason cache).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Waiting {
    pub(crate) reason: String,
    pub(crate) message: String,
}

impl Waiting {
    pub(crate) fn new(reason: &str, message: impl Into<String>) -> Self {
        Waiting {
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The pod's sandbox, once run (or adopted).
#[derive(Clone, Debug)]
pub(crate) struct Sandbox {
    pub(crate) id: String,
    pub(crate) ip: IpAddr,
    pub(crate) config: PodSandboxConfig,
}

/// What the worker does after a sync.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Wait for a message.
    Idle,
    /// Wait for a message or until this instant.
    WakeAt(Instant),
    /// The pod is gone and cleaned up: the worker ends.
    Finished,
}

impl Next {
    /// The earlier of two wake-ups.
    pub(crate) fn min(self, other: Next) -> Next {
        match (self, other) {
            (Next::Finished, _) | (_, Next::Finished) => Next::Finished,
            (Next::WakeAt(a), Next::WakeAt(b)) => Next::WakeAt(a.min(b)),
            (Next::WakeAt(a), Next::Idle) | (Next::Idle, Next::WakeAt(a)) => Next::WakeAt(a),
            (Next::Idle, Next::Idle) => Next::Idle,
        }
    }
}

/// The per-pod state of the node agent.
pub(crate) struct PodWorker {
    pub(crate) ctx: Arc<AgentContext>,
    pub(crate) uid: String,
    pub(crate) pod: Arc<Pod>,
    /// The pod was removed from the API (deleted outright or never to be seen again).
    pub(crate) removed: bool,
    pub(crate) rx: mpsc::UnboundedReceiver<PodWork>,
    pub(crate) tx: mpsc::UnboundedSender<PodWork>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) sandbox: Option<Sandbox>,
    /// Restart back-off per container name, and image pull back-off per `image:<ref>`.
    pub(crate) backoff: Backoff,
    /// Why containers wait, recomputed on every sync.
    pub(crate) waiting: HashMap<String, Waiting>,
    pub(crate) probes: Probes,
    /// Containers have been stopped for deletion.
    pub(crate) killed: bool,
    /// The pod reached Succeeded or Failed; nothing runs again.
    pub(crate) terminal: bool,
    /// The sandbox of a terminal pod was stopped and its network released.
    pub(crate) released: bool,
    /// The pod's volumes, once all of them were set up.
    pub(crate) volumes: Option<PodVolumes>,
    /// Bound tokens of `serviceAccountToken` projections, by `<volume>/<path>`.
    pub(crate) tokens: HashMap<String, CachedToken>,
    /// The last pull error per `image:<ref>` back-off key, for `ImagePullBackOff` messages.
    pub(crate) pull_errors: HashMap<String, String>,
}

fn resource_version(pod: &Pod) -> Option<u64> {
    pod.metadata
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
}

impl PodWorker {
    pub(crate) fn new(
        ctx: Arc<AgentContext>,
        pod: Arc<Pod>,
        shutdown: CancellationToken,
    ) -> (Self, mpsc::UnboundedSender<PodWork>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let backoff = Backoff::new(ctx.config.backoff);
        let worker = PodWorker {
            ctx,
            uid,
            pod,
            removed: false,
            rx,
            tx: tx.clone(),
            shutdown,
            sandbox: None,
            backoff,
            waiting: HashMap::new(),
            probes: Probes::default(),
            killed: false,
            terminal: false,
            released: false,
            volumes: None,
            tokens: HashMap::new(),
            pull_errors: HashMap::new(),
        };
        (worker, tx)
    }

    /// `namespace/name`, for logs.
    pub(crate) fn key(&self) -> String {
        format!(
            "{}/{}",
            self.pod.metadata.namespace.as_deref().unwrap_or(""),
            self.pod.metadata.name.as_deref().unwrap_or("")
        )
    }

    /// `name_namespace(uid)`, as upstream's messages name a pod.
    pub(crate) fn pod_desc(&self) -> String {
        format!(
            "{}_{}({})",
            self.pod.metadata.name.as_deref().unwrap_or(""),
            self.pod.metadata.namespace.as_deref().unwrap_or(""),
            self.uid
        )
    }

    /// Runs until the pod is gone and cleaned up, or the agent stops. Sends the pod UID on
    /// `done` when it ends.
    pub(crate) async fn run(mut self, done: mpsc::UnboundedSender<String>) {
        let span = info_span!("pod_worker", pod = %self.key());
        async {
            let shutdown = self.shutdown.clone();
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    next = self.sync() => next,
                };
                let deadline = match next {
                    Next::Finished => break,
                    Next::Idle => None,
                    Next::WakeAt(at) => Some(at),
                };
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    msg = self.rx.recv() => match msg {
                        Some(m) => self.apply(m),
                        None => break,
                    },
                    _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
                }
                while let Ok(m) = self.rx.try_recv() {
                    self.apply(m);
                }
            }
            self.probes.stop_all();
        }
        .instrument(span)
        .await;
        let _ = done.send(self.uid.clone());
    }

    fn apply(&mut self, msg: PodWork) {
        match msg {
            PodWork::Update(pod) => {
                // Our own status writes return newer objects than the watch may still deliver.
                let newer = match (resource_version(&pod), resource_version(&self.pod)) {
                    (Some(new), Some(cur)) => new >= cur,
                    _ => true,
                };
                if newer {
                    self.pod = pod;
                }
            }
            PodWork::Removed => self.removed = true,
            PodWork::ContainerChanged => {}
            PodWork::Probe {
                container_id,
                kind,
                ok,
            } => self.probes.record(container_id, kind, ok),
        }
    }

    /// Writes the status as the runtime shows it now (before a slow step).
    pub(crate) async fn flush_status(&mut self) {
        if let Ok(history) = self.history().await {
            let status = self.generate_status(&history, false);
            self.write_status(status).await;
        }
    }

    /// Writes `status` through the status subresource if it differs from the pod's current
    /// one. Returns false if the write failed (the caller retries).
    pub(crate) async fn write_status(&mut self, status: PodStatus) -> bool {
        let old = self.pod.status.clone().unwrap_or_default();
        if status == old {
            return true;
        }
        let patch = status_patch(&old, &status);
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            self.pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let body = json!({ "metadata": { "uid": self.uid }, "status": patch });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(pod) if pod.metadata.uid.as_deref() == Some(self.uid.as_str()) => {
                debug!(phase = ?status.phase, "pod status written");
                self.pod = Arc::new(pod);
                true
            }
            Ok(_) => {
                warn!("status written to a pod with another uid");
                true
            }
            Err(kube::Error::Api(s)) if s.code == 404 => true,
            Err(e) => {
                warn!(error = %e, "writing pod status failed; will retry");
                false
            }
        }
    }
}

/// A JSON merge patch turning `old` into `new`: `new` in full, with `null` for top-level
/// fields that `new` drops (lists are replaced whole by a merge patch).
fn status_patch(old: &PodStatus, new: &PodStatus) -> Value {
    let old_v = serde_json::to_value(old).unwrap_or(Value::Null);
    let mut new_v = serde_json::to_value(new).unwrap_or_else(|_| json!({}));
    if let (Some(o), Some(n)) = (old_v.as_object(), new_v.as_object_mut()) {
        for k in o.keys() {
            if !n.contains_key(k) {
                n.insert(k.clone(), Value::Null);
            }
        }
    }
    new_v
}
