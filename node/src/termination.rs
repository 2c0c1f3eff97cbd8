//! Stopping pods: graceful deletion (`preStop` hook, SIGTERM, SIGKILL after the grace period,
//! network teardown, sandbox removal, then the final delete with `gracePeriodSeconds=0`),
//! clean-up of pods deleted outright, and releasing the sandbox of finished pods.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, Preconditions};
use kybernetes_runtime::{PodSandboxFilter, labels};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::context::AgentContext;
use crate::events::EventType;
use crate::pod_worker::{Next, PodWorker};

/// Upstream never gives a container less than this between SIGTERM and SIGKILL.
const MIN_GRACE: Duration = Duration::from_secs(2);

impl PodWorker {
    /// The grace period of a pod being deleted: `deletionGracePeriodSeconds`, else the pod's.
    fn deletion_grace_period(&self) -> Duration {
        match self.pod.metadata.deletion_grace_period_seconds {
            Some(g) => Duration::from_secs(g.max(0) as u64),
            None => self.pod_grace_period(),
        }
    }

    /// Stops one container: `preStop` hook (if asked), then SIGTERM and SIGKILL after what
    /// is left of `grace`.
    async fn stop_one(
        &self,
        spec: &Container,
        id: &str,
        message: &str,
        grace: Duration,
        pre_stop: bool,
    ) {
        self.ctx.recorder.pod(
            &self.pod,
            Some(&spec.name),
            EventType::Normal,
            "Killing",
            message,
        );
        let started = Instant::now();
        if pre_stop
            && let Some(hook) = spec.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
            && let Err(m) = self.run_hook(spec, id, hook, grace).await
        {
            self.ctx.recorder.pod(
                &self.pod,
                Some(&spec.name),
                EventType::Warning,
                "FailedPreStopHook",
                m,
            );
        }
        let remaining = grace.saturating_sub(started.elapsed()).max(MIN_GRACE);
        if let Err(e) = self.ctx.runtime.stop_container(id, remaining).await {
            warn!(container = %spec.name, error = %e, "stopping container failed");
        }
    }

    /// Kills one container (liveness failure, spec change, failed hook).
    pub(crate) async fn kill_container(
        &mut self,
        spec: &Container,
        id: &str,
        message: &str,
        grace: Duration,
        pre_stop: bool,
    ) {
        self.probes.forget(id);
        self.stop_one(spec, id, message, grace, pre_stop).await;
    }

    /// Stops every running container of the pod at once.
    async fn kill_running(&mut self, grace: Duration, pre_stop: bool) {
        self.probes.stop_all();
        let Ok(history) = self.history().await else {
            return;
        };
        let specs: Vec<Container> = self
            .pod
            .spec
            .as_ref()
            .map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let mut stops = Vec::new();
        for c in history.values().flatten().filter(|c| c.state.is_running()) {
            let spec = specs
                .iter()
                .find(|s| s.name == c.metadata.name)
                .cloned()
                .unwrap_or_else(|| Container {
                    name: c.metadata.name.clone(),
                    ..Default::default()
                });
            let message = format!("Stopping container {}", spec.name);
            stops.push((spec, c.id.clone(), message));
        }
        let this = &*self;
        futures::future::join_all(
            stops
                .iter()
                .map(|(spec, id, message)| this.stop_one(spec, id, message, grace, pre_stop)),
        )
        .await;
    }

    /// Graceful deletion. Returns `Finished` once the pod is deleted from the API.
    pub(crate) async fn terminate(&mut self) -> Next {
        if !self.killed {
            info!("terminating pod");
            let grace = self.deletion_grace_period();
            self.kill_running(grace, true).await;
            self.killed = true;
        }
        if let Ok(history) = self.history().await {
            let status = self.generate_status(&history, true);
            if !self.write_status(status).await {
                return self.retry_soon();
            }
        }
        self.remove_runtime_objects().await;
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            self.pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &dp).await {
            Ok(_) => Next::Finished,
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Next::Finished,
            Err(e) => {
                warn!(error = %e, "deleting pod failed; will retry");
                self.retry_soon()
            }
        }
    }

    /// Clean-up of a pod that disappeared from the API without us (force deletion).
    pub(crate) async fn clean_up_removed(&mut self) -> Next {
        if !self.killed {
            let grace = self
                .pod
                .metadata
                .deletion_grace_period_seconds
                .map(|g| Duration::from_secs(g.max(0) as u64))
                .unwrap_or_default();
            self.kill_running(grace, false).await;
            self.killed = true;
        }
        self.remove_runtime_objects().await;
        Next::Finished
    }

    /// A pod that reached Succeeded or Failed: stop its sandbox and release its IP once.
    /// Its exited containers stay (for logs) until the pod is deleted.
    pub(crate) async fn release_terminal(&mut self) -> Next {
        if self.released {
            return Next::Idle;
        }
        self.probes.stop_all();
        let grace = self.pod_grace_period();
        self.kill_running(grace, false).await;
        for id in self.sandbox_ids().await {
            if let Err(e) = self.ctx.runtime.stop_pod_sandbox(&id).await {
                warn!(error = %e, "stopping sandbox failed");
            }
        }
        if !self.host_network_pod() {
            let _ = self
                .ctx
                .network
                .teardown_pod(self.ctx.name(), &self.uid)
                .await;
        }
        self.sandbox = None;
        self.released = true;
        Next::Idle
    }

    fn host_network_pod(&self) -> bool {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false)
    }

    async fn sandbox_ids(&self) -> Vec<String> {
        let filter = PodSandboxFilter::default()
            .label(labels::POD_UID, &self.uid)
            .label(labels::NODE_NAME, self.ctx.name());
        match self.ctx.runtime.list_pod_sandboxes(&filter).await {
            Ok(v) => v.into_iter().map(|s| s.id).collect(),
            Err(e) => {
                warn!(error = %e, "listing sandboxes failed");
                Vec::new()
            }
        }
    }

    /// Stops and removes the pod's sandboxes (and so its containers) and releases its IP.
    async fn remove_runtime_objects(&mut self) {
        let ids = self.sandbox_ids().await;
        for id in &ids {
            if let Err(e) = self.ctx.runtime.stop_pod_sandbox(id).await {
                warn!(error = %e, "stopping sandbox failed");
            }
        }
        if !self.host_network_pod()
            && let Err(e) = self
                .ctx
                .network
                .teardown_pod(self.ctx.name(), &self.uid)
                .await
        {
            warn!(error = %e, "network teardown failed");
        }
        for id in &ids {
            if let Err(e) = self.ctx.runtime.remove_pod_sandbox(id).await {
                warn!(error = %e, "removing sandbox failed");
            }
        }
        self.sandbox = None;
        self.tear_down_volumes();
    }
}

/// Removes the sandboxes this node ran for pods that no longer exist (the agent was down
/// while they were deleted).
pub(crate) async fn remove_orphans(ctx: &AgentContext, known: &HashSet<String>) {
    crate::volumes::remove_orphaned_pod_dirs(&ctx.root_dir, known);
    let filter = PodSandboxFilter::default().label(labels::NODE_NAME, ctx.name());
    let sandboxes = match ctx.runtime.list_pod_sandboxes(&filter).await {
        Ok(v) => v,
        Err(e) => {
            warn!(error = %e, "listing sandboxes for orphans failed");
            return;
        }
    };
    for sb in sandboxes {
        let uid = sb.labels.get(labels::POD_UID).cloned().unwrap_or_default();
        if known.contains(&uid) {
            continue;
        }
        debug!(sandbox = %sb.id, pod_uid = %uid, "removing orphaned sandbox");
        let _ = ctx.runtime.stop_pod_sandbox(&sb.id).await;
        let _ = ctx.network.teardown_pod(ctx.name(), &uid).await;
        let _ = ctx.runtime.remove_pod_sandbox(&sb.id).await;
    }
}
