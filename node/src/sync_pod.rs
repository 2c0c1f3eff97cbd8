//! `syncPod`: bring one pod's runtime state to what its spec asks for, as upstream's
//! `computePodActions` + `SyncPod`:
//!
//! 1. run (or adopt) the sandbox, after the `Network` gave the pod its IP;
//! 2. kill containers whose liveness or startup probe failed, or whose spec changed;
//! 3. run the init containers one at a time, in order;
//! 4. start or restart the app containers, following `restartPolicy` with back-off;
//! 5. write the status if it changed.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use kybernetes_net::PodNetworkRequest;
use kybernetes_runtime::{
    ContainerFilter, ContainerState, ContainerStatus, PodSandboxConfig, PodSandboxFilter,
    PodSandboxMetadata, PodSandboxState, PortMapping, ProbeKind, labels,
};
use tracing::{debug, warn};

use crate::container_start::container_hash;
use crate::events::EventType;
use crate::pod_worker::{Next, PodWorker, Sandbox, Waiting};
use crate::probes::RunningContainer;

/// A pod's containers in the runtime, by container name, newest attempt first.
pub(crate) type History = HashMap<String, Vec<ContainerStatus>>;

/// How soon a failed API or runtime call is retried.
pub(crate) const RETRY: Duration = Duration::from_secs(1);

pub(crate) fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

pub(crate) fn is_terminal_phase(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// Whether a container that exited with `exit_code` is restarted under the pod's policy.
pub(crate) fn should_restart(pod: &Pod, exit_code: i32) -> bool {
    match restart_policy(pod) {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

impl PodWorker {
    pub(crate) fn retry_soon(&self) -> Next {
        Next::WakeAt(tokio::time::Instant::now() + RETRY)
    }

    /// One `syncPod` pass. Returns when to run the next one.
    pub(crate) async fn sync(&mut self) -> Next {
        if self.removed {
            return self.clean_up_removed().await;
        }
        if self.pod.metadata.deletion_timestamp.is_some() {
            return self.terminate().await;
        }
        if is_terminal_phase(self.pod.status.as_ref().and_then(|s| s.phase.as_deref())) {
            self.terminal = true;
        }
        if self.terminal {
            return self.release_terminal().await;
        }
        self.waiting.clear();
        if let Err(next) = self.mount_volumes().await {
            let status = self.generate_status(&History::new(), false);
            self.write_status(status).await;
            return next;
        }
        if let Err(next) = self.ensure_sandbox().await {
            let history = self.history().await.unwrap_or_default();
            let status = self.generate_status(&history, false);
            self.write_status(status).await;
            return next;
        }
        let Ok(mut history) = self.history().await else {
            return self.retry_soon();
        };
        if self.kill_unhealthy(&history).await {
            let Ok(h) = self.history().await else {
                return self.retry_soon();
            };
            history = h;
        }
        let mut next = self.volume_resync();
        let mut acted = false;
        if self
            .sync_init_containers(&history, &mut next, &mut acted)
            .await
        {
            self.sync_app_containers(&history, &mut next, &mut acted)
                .await;
        }
        if acted {
            let Ok(h) = self.history().await else {
                return self.retry_soon();
            };
            history = h;
        }
        self.reconcile_probes(&history);
        let status = self.generate_status(&history, false);
        let terminal = is_terminal_phase(status.phase.as_deref());
        if !self.write_status(status).await {
            return next.min(self.retry_soon());
        }
        if terminal {
            self.terminal = true;
            return self.release_terminal().await;
        }
        next
    }

    /// The pod's containers in the runtime.
    pub(crate) async fn history(&self) -> Result<History, kybernetes_runtime::Error> {
        let filter = ContainerFilter::default().label(labels::POD_UID, &self.uid);
        let list = self
            .ctx
            .runtime
            .list_containers(&filter)
            .await
            .inspect_err(|e| warn!(error = %e, "listing containers failed"))?;
        let mut history: History = HashMap::new();
        for c in list {
            history.entry(c.metadata.name.clone()).or_default().push(c);
        }
        for v in history.values_mut() {
            v.sort_by(|a, b| {
                b.metadata
                    .attempt
                    .cmp(&a.metadata.attempt)
                    .then(b.created_at.cmp(&a.created_at))
            });
        }
        Ok(history)
    }

    fn host_network(&self) -> bool {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false)
    }

    /// The ports every container of the pod declares, as CRI's `port_mappings`.
    fn port_mappings(&self) -> Vec<PortMapping> {
        let Some(spec) = self.pod.spec.as_ref() else {
            return Vec::new();
        };
        spec.init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                Some(PortMapping {
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    container_port: u16::try_from(p.container_port).ok()?,
                    host_port: p
                        .host_port
                        .and_then(|h| u16::try_from(h).ok())
                        .filter(|h| *h != 0),
                    host_ip: p.host_ip.clone().filter(|h| !h.is_empty()),
                })
            })
            .collect()
    }

    fn sandbox_config(
        &self,
        attempt: u32,
        net: &kybernetes_net::PodNetwork,
        new: bool,
    ) -> PodSandboxConfig {
        let meta = &self.pod.metadata;
        let name = meta.name.clone().unwrap_or_default();
        let namespace = meta.namespace.clone().unwrap_or_default();
        let mut sandbox_labels = meta.labels.clone().unwrap_or_default();
        sandbox_labels.insert(labels::POD_NAME.into(), name.clone());
        sandbox_labels.insert(labels::POD_NAMESPACE.into(), namespace.clone());
        sandbox_labels.insert(labels::POD_UID.into(), self.uid.clone());
        sandbox_labels.insert(labels::NODE_NAME.into(), self.ctx.name().to_string());
        let hostname = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| name.clone());
        PodSandboxConfig {
            metadata: PodSandboxMetadata {
                name: name.clone(),
                namespace: namespace.clone(),
                uid: self.uid.clone(),
                attempt,
            },
            hostname,
            log_directory: format!("/var/log/pods/{namespace}_{name}_{}", self.uid).into(),
            netns_path: net.netns.clone(),
            pod_ip: Some(net.ip),
            labels: sandbox_labels,
            annotations: meta.annotations.clone().unwrap_or_default(),
            port_mappings: self.port_mappings(),
            dns_config: Some(self.sandbox_dns(new)),
        }
    }

    /// Sets up the pod network and runs the sandbox, or adopts a ready one left by an earlier
    /// run of the agent.
    async fn ensure_sandbox(&mut self) -> Result<(), Next> {
        if self.sandbox.is_some() {
            return Ok(());
        }
        let ctx = self.ctx.clone();
        let filter = PodSandboxFilter::default()
            .label(labels::POD_UID, &self.uid)
            .label(labels::NODE_NAME, ctx.name());
        let existing = match ctx.runtime.list_pod_sandboxes(&filter).await {
            Ok(v) => v,
            Err(e) => return Err(self.sandbox_failed(format!("listing sandboxes: {e}"))),
        };
        let net = if self.host_network() {
            kybernetes_net::PodNetwork {
                ip: ctx.node_ip,
                netns: ctx.node_netns.clone(),
            }
        } else {
            let req = PodNetworkRequest {
                namespace: self.pod.metadata.namespace.clone().unwrap_or_default(),
                name: self.pod.metadata.name.clone().unwrap_or_default(),
                uid: self.uid.clone(),
                hostname: self
                    .pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.hostname.clone())
                    .unwrap_or_else(|| self.pod.metadata.name.clone().unwrap_or_default()),
                subdomain: self.pod.spec.as_ref().and_then(|s| s.subdomain.clone()),
            };
            match ctx.network.setup_pod(ctx.name(), &req).await {
                Ok(n) => n,
                Err(e) => return Err(self.sandbox_failed(format!("network: {e}"))),
            }
        };
        if let Some(ready) = existing
            .iter()
            .filter(|s| s.state == PodSandboxState::Ready)
            .max_by_key(|s| (s.metadata.attempt, s.created_at))
        {
            debug!(sandbox = %ready.id, "adopting running sandbox");
            let config = self.sandbox_config(ready.metadata.attempt, &net, false);
            self.sandbox = Some(Sandbox {
                id: ready.id.clone(),
                ip: net.ip,
                config,
            });
            return Ok(());
        }
        let attempt = existing
            .iter()
            .map(|s| s.metadata.attempt + 1)
            .max()
            .unwrap_or(0);
        let config = self.sandbox_config(attempt, &net, true);
        match ctx.runtime.run_pod_sandbox(&config).await {
            Ok(id) => {
                self.sandbox = Some(Sandbox {
                    id,
                    ip: net.ip,
                    config,
                });
                Ok(())
            }
            Err(e) => Err(self.sandbox_failed(format!("{e}"))),
        }
    }

    fn sandbox_failed(&mut self, message: String) -> Next {
        warn!(%message, "pod sandbox failed");
        self.ctx.recorder.pod(
            &self.pod,
            None,
            EventType::Warning,
            "FailedCreatePodSandBox",
            format!("Failed to create pod sandbox: {message}"),
        );
        let now = self.ctx.now();
        let delay = self.backoff.next("sandbox", now, now);
        Next::WakeAt(tokio::time::Instant::now() + delay.min(self.ctx.config.backoff.initial))
    }

    fn app_containers(&self) -> Vec<Container> {
        self.pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default()
    }

    fn init_containers(&self) -> Vec<Container> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.clone())
            .unwrap_or_default()
    }

    /// Kills running app containers whose liveness or startup probe failed or whose spec
    /// changed. Returns whether it killed any.
    async fn kill_unhealthy(&mut self, history: &History) -> bool {
        let mut killed = false;
        for spec in self.app_containers() {
            let Some(latest) = history.get(&spec.name).and_then(|h| h.first()) else {
                continue;
            };
            if !latest.state.is_running() {
                continue;
            }
            let changed = latest
                .annotations
                .get(labels::CONTAINER_HASH)
                .is_some_and(|h| *h != container_hash(&spec));
            let (message, grace) = if changed {
                self.backoff.reset(&spec.name);
                (
                    format!(
                        "Container {} definition changed, will be restarted",
                        spec.name
                    ),
                    None,
                )
            } else {
                match self.probes.failed(&latest.id) {
                    Some(ProbeKind::Startup) => (
                        format!(
                            "Container {} failed startup probe, will be restarted",
                            spec.name
                        ),
                        spec.startup_probe
                            .as_ref()
                            .and_then(|p| p.termination_grace_period_seconds),
                    ),
                    Some(_) => (
                        format!(
                            "Container {} failed liveness probe, will be restarted",
                            spec.name
                        ),
                        spec.liveness_probe
                            .as_ref()
                            .and_then(|p| p.termination_grace_period_seconds),
                    ),
                    None => continue,
                }
            };
            let grace = grace
                .map(|g| Duration::from_secs(g.max(0) as u64))
                .unwrap_or_else(|| self.pod_grace_period());
            self.kill_container(&spec, &latest.id, &message, grace, true)
                .await;
            killed = true;
        }
        killed
    }

    /// Runs the init containers in order. Returns true once all of them succeeded.
    async fn sync_init_containers(
        &mut self,
        history: &History,
        next: &mut Next,
        acted: &mut bool,
    ) -> bool {
        for spec in self.init_containers() {
            let latest = history.get(&spec.name).and_then(|h| h.first());
            match latest.map(|c| &c.state) {
                Some(ContainerState::Exited { exit_code: 0, .. }) => continue,
                Some(ContainerState::Running { .. }) | Some(ContainerState::Unknown) => {
                    return false;
                }
                Some(ContainerState::Created) => {
                    if let Some(c) = latest {
                        self.start_created(&spec, &c.id, acted).await;
                    }
                    return false;
                }
                Some(ContainerState::Exited { .. }) if restart_policy(&self.pod) == "Never" => {
                    return false;
                }
                _ => {
                    let h = history.get(&spec.name).cloned().unwrap_or_default();
                    self.start_or_restart(&spec, true, &h, next, acted).await;
                    return false;
                }
            }
        }
        true
    }

    /// Starts app containers that never ran and restarts exited ones the policy restarts.
    async fn sync_app_containers(&mut self, history: &History, next: &mut Next, acted: &mut bool) {
        for spec in self.app_containers() {
            let h = history.get(&spec.name).cloned().unwrap_or_default();
            match h.first().map(|c| &c.state) {
                None => self.start_or_restart(&spec, false, &h, next, acted).await,
                Some(ContainerState::Created) => {
                    let id = h[0].id.clone();
                    self.start_created(&spec, &id, acted).await;
                }
                Some(ContainerState::Exited { exit_code, .. })
                    if should_restart(&self.pod, *exit_code) =>
                {
                    self.start_or_restart(&spec, false, &h, next, acted).await;
                }
                _ => {}
            }
        }
    }

    /// Starts a container left in `Created` (an agent stopped between create and start).
    async fn start_created(&mut self, spec: &Container, id: &str, acted: &mut bool) {
        *acted = true;
        match self.ctx.runtime.start_container(id).await {
            Ok(()) => self.ctx.recorder.pod(
                &self.pod,
                Some(&spec.name),
                EventType::Normal,
                "Started",
                format!("Started container {}", spec.name),
            ),
            Err(e) => {
                self.waiting.insert(
                    spec.name.clone(),
                    Waiting::new("RunContainerError", e.to_string()),
                );
            }
        }
    }

    /// Starts the next attempt of a container, unless its restart back-off holds it.
    async fn start_or_restart(
        &mut self,
        spec: &Container,
        is_init: bool,
        history: &[ContainerStatus],
        next: &mut Next,
        acted: &mut bool,
    ) {
        let latest = history.first();
        let now = self.ctx.now();
        if let Some(ContainerState::Exited { finished_at, .. }) = latest.map(|c| &c.state) {
            if let Some(until) = self.backoff.in_backoff_since(&spec.name, *finished_at, now) {
                let delay = self.backoff.current(&spec.name).unwrap_or_default();
                let desc = self.pod_desc();
                self.waiting.insert(
                    spec.name.clone(),
                    Waiting::new(
                        "CrashLoopBackOff",
                        format!(
                            "back-off {delay:?} restarting failed container={} pod={desc}",
                            spec.name
                        ),
                    ),
                );
                self.ctx.recorder.pod(
                    &self.pod,
                    Some(&spec.name),
                    EventType::Warning,
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {} in pod {desc}",
                        spec.name
                    ),
                );
                *next = std::mem::replace(next, Next::Idle)
                    .min(Next::WakeAt(self.ctx.instant_at(until)));
                return;
            }
            self.backoff.next(&spec.name, *finished_at, now);
        }
        let attempt = latest.map(|c| c.metadata.attempt + 1).unwrap_or(0);
        *acted = true;
        match self.start_container(spec, is_init, attempt).await {
            Ok(_) => {
                // Keep the previous attempt (for lastState); remove older ones.
                for old in history.iter().skip(1) {
                    let _ = self.ctx.runtime.remove_container(&old.id).await;
                }
            }
            Err((waiting, retry)) => {
                self.waiting.insert(spec.name.clone(), waiting);
                *next = std::mem::replace(next, Next::Idle).min(retry);
            }
        }
    }

    /// Starts or stops probe tasks to match the running app containers.
    fn reconcile_probes(&mut self, history: &History) {
        let specs = self.app_containers();
        let running: Vec<RunningContainer<'_>> = specs
            .iter()
            .filter_map(|spec| {
                let latest = history.get(&spec.name)?.first()?;
                match &latest.state {
                    ContainerState::Running { started_at } => Some(RunningContainer {
                        spec,
                        id: &latest.id,
                        started_at: *started_at,
                    }),
                    _ => None,
                }
            })
            .collect();
        let pod_ip = self.sandbox.as_ref().map(|s| s.ip);
        let (ctx, tx, pod) = (self.ctx.clone(), self.tx.clone(), self.pod.clone());
        self.probes.reconcile(&ctx, &tx, &pod, &running, pod_ip);
    }
}
