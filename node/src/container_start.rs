//! Starting one container, as upstream's `startContainer`: pull the image (following
//! `imagePullPolicy`, with back-off), build the environment, create the container, start
//! it, run its `postStart` hook.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use kybernetes_runtime::{
    ContainerConfig, ContainerMetadata, ContainerResources, ProbeAction, ProbeKind, ProbeRequest,
    labels,
};
use tokio::time::Instant;

use crate::env::{EnvInputs, make_environment};
use crate::events::EventType;
use crate::expansion::expand;
use crate::pod_worker::{Next, PodWorker, Waiting};
use crate::probes::handler_action;
use crate::service_env::service_environment;
use kybernetes_core::quantity::parse_milli;

/// A stable hash of a container's spec (FNV-1a over its JSON), to notice spec changes.
pub(crate) fn container_hash(spec: &Container) -> String {
    let json = serde_json::to_vec(spec).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in json {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn default_pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or("");
    if !last.contains('@') && (!last.contains(':') || last.ends_with(":latest")) {
        "Always"
    } else {
        "IfNotPresent"
    }
}

fn resources(spec: &Container) -> ContainerResources {
    let r = spec.resources.clone().unwrap_or_default();
    let get = |list: &Option<
        BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
               key: &str| {
        list.as_ref()
            .and_then(|l| l.get(key))
            .and_then(|q| parse_milli(&q.0))
            .map(|v| v.max(0))
    };
    let bytes =
        |milli: Option<i128>| milli.map(|m| u64::try_from((m + 999) / 1000).unwrap_or(u64::MAX));
    let millis = |v: Option<i128>| v.map(|m| u64::try_from(m).unwrap_or(u64::MAX));
    ContainerResources {
        cpu_request_millis: millis(get(&r.requests, "cpu")),
        cpu_limit_millis: millis(get(&r.limits, "cpu")),
        memory_request_bytes: bytes(get(&r.requests, "memory")),
        memory_limit_bytes: bytes(get(&r.limits, "memory")),
    }
}

impl PodWorker {
    /// The pod's termination grace period (`terminationGracePeriodSeconds`, 30 s by default).
    pub(crate) fn pod_grace_period(&self) -> Duration {
        let secs = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }

    /// Creates and starts attempt `attempt` of `spec`. On failure, returns why the container
    /// waits and when to try again.
    pub(crate) async fn start_container(
        &mut self,
        spec: &Container,
        is_init: bool,
        attempt: u32,
    ) -> Result<String, (Waiting, Next)> {
        let ctx = self.ctx.clone();
        let Some(sandbox) = self.sandbox.clone() else {
            return Err((Waiting::new("ContainerCreating", ""), self.retry_soon()));
        };
        self.ensure_image(spec).await?;
        let retry = Next::WakeAt(Instant::now() + ctx.config.backoff.initial);
        let inputs = EnvInputs {
            pod: &self.pod,
            container: spec,
            pod_ip: Some(sandbox.ip),
            host_ip: ctx.node_ip,
            allocatable_milli: ctx.allocatable_milli,
        };
        let services =
            match service_environment(&ctx.services, ctx.network.as_ref(), &self.pod).await {
                Ok(s) => s,
                Err(e) => return Err(self.config_error(spec, e.0, retry)),
            };
        let env = match make_environment(&ctx.client, &inputs, &services).await {
            Ok(env) => env,
            Err(e) => return Err(self.config_error(spec, e.0, retry)),
        };
        let mounts = match self.container_mounts(spec).and_then(|mut m| {
            m.extend(self.etc_hosts_mount(&m, &sandbox)?);
            Ok(m)
        }) {
            Ok(m) => m,
            Err(message) => return Err(self.config_error(spec, message, retry)),
        };
        if let Err(message) = self.verify_non_root(spec).await {
            return Err(self.config_error(spec, message, retry));
        }
        let mut config = self.container_config(spec, is_init, attempt, env);
        config.mounts = mounts;
        let id = match ctx
            .runtime
            .create_container(&sandbox.id, &config, &sandbox.config)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                ctx.recorder.pod(
                    &self.pod,
                    Some(&spec.name),
                    EventType::Warning,
                    "Failed",
                    format!("Error: {e}"),
                );
                return Err((Waiting::new("CreateContainerError", e.to_string()), retry));
            }
        };
        ctx.recorder.pod(
            &self.pod,
            Some(&spec.name),
            EventType::Normal,
            "Created",
            format!("Created container: {}", spec.name),
        );
        if let Err(e) = ctx.runtime.start_container(&id).await {
            ctx.recorder.pod(
                &self.pod,
                Some(&spec.name),
                EventType::Warning,
                "Failed",
                format!("Error: {e}"),
            );
            return Err((Waiting::new("RunContainerError", e.to_string()), retry));
        }
        ctx.recorder.pod(
            &self.pod,
            Some(&spec.name),
            EventType::Normal,
            "Started",
            format!("Started container {}", spec.name),
        );
        if let Some(hook) = spec.lifecycle.as_ref().and_then(|l| l.post_start.as_ref())
            && let Err(message) = self
                .run_hook(spec, &id, hook, self.pod_grace_period())
                .await
        {
            ctx.recorder.pod(
                &self.pod,
                Some(&spec.name),
                EventType::Warning,
                "FailedPostStartHook",
                message.clone(),
            );
            self.kill_container(
                spec,
                &id,
                &format!("FailedPostStartHook: {message}"),
                self.pod_grace_period(),
                false,
            )
            .await;
        }
        Ok(id)
    }

    /// Records why the config of `spec` could not be made (`CreateContainerConfigError`), as
    /// the kubelet's `Failed` event and waiting reason.
    fn config_error(&self, spec: &Container, message: String, retry: Next) -> (Waiting, Next) {
        self.ctx.recorder.pod(
            &self.pod,
            Some(&spec.name),
            EventType::Warning,
            "Failed",
            format!("Error: {message}"),
        );
        (Waiting::new("CreateContainerConfigError", message), retry)
    }

    /// Checks `runAsNonRoot` against the user the image of `spec` names.
    async fn verify_non_root(&self, spec: &Container) -> Result<(), String> {
        let image = spec.image.clone().unwrap_or_default();
        let status = self
            .ctx
            .runtime
            .image_status(&image)
            .await
            .map_err(|e| format!("image status of {image}: {e}"))?
            .unwrap_or_default();
        crate::security_context::verify_run_as_non_root(&self.pod, spec, &status, &self.pod_desc())
    }

    /// Makes sure the image of `spec` is present, pulling it as `imagePullPolicy` says.
    async fn ensure_image(&mut self, spec: &Container) -> Result<(), (Waiting, Next)> {
        let ctx = self.ctx.clone();
        let image = spec.image.clone().unwrap_or_default();
        let policy = spec
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| default_pull_policy(&image).into());
        let present = ctx
            .runtime
            .image_status(&image)
            .await
            .ok()
            .flatten()
            .is_some();
        let pull = match policy.as_str() {
            "Never" if !present => {
                let message =
                    format!("Container image \"{image}\" is not present with pull policy of Never");
                ctx.recorder.pod(
                    &self.pod,
                    Some(&spec.name),
                    EventType::Warning,
                    "ErrImageNeverPull",
                    message.clone(),
                );
                return Err((
                    Waiting::new("ErrImageNeverPull", message),
                    Next::WakeAt(Instant::now() + ctx.config.backoff.initial),
                ));
            }
            "Never" => false,
            "IfNotPresent" => !present,
            _ => true,
        };
        if !pull {
            ctx.recorder.pod(
                &self.pod,
                Some(&spec.name),
                EventType::Normal,
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
            );
            return Ok(());
        }
        let key = format!("image:{image}");
        let now = ctx.now();
        if let Some(until) = self.backoff.in_backoff_since_update(&key, now) {
            ctx.recorder.pod(
                &self.pod,
                Some(&spec.name),
                EventType::Normal,
                "BackOff",
                format!("Back-off pulling image \"{image}\""),
            );
            ctx.recorder.pod(
                &self.pod,
                Some(&spec.name),
                EventType::Warning,
                "Failed",
                "Error: ImagePullBackOff",
            );
            // The status carries the last pull's error, so the reason stays visible.
            let mut message = format!("Back-off pulling image \"{image}\"");
            if let Some(previous) = self.pull_errors.get(&key) {
                message = format!("{message}: {previous}");
            }
            return Err((
                Waiting::new("ImagePullBackOff", message),
                Next::WakeAt(ctx.instant_at(until)),
            ));
        }
        if !present {
            // A real pull takes a while: show ContainerCreating and the pod IP meanwhile.
            self.flush_status().await;
        }
        ctx.recorder.pod(
            &self.pod,
            Some(&spec.name),
            EventType::Normal,
            "Pulling",
            format!("Pulling image \"{image}\""),
        );
        let secrets = match crate::pull_secrets::pod_pull_secrets(&ctx.client, &self.pod).await {
            Ok(s) => s,
            Err(message) => return Err(self.pull_failed(spec, &image, &key, message)),
        };
        if !secrets.missing.is_empty() {
            ctx.recorder.pod(
                &self.pod,
                None,
                EventType::Warning,
                "FailedToRetrieveImagePullSecret",
                format!(
                    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                    secrets.missing.join(", ")
                ),
            );
        }
        let started = Instant::now();
        match ctx.runtime.pull_image_with(&image, &secrets.auth).await {
            Ok(img) => {
                self.backoff.reset(&key);
                self.pull_errors.remove(&key);
                let took = started.elapsed();
                ctx.recorder.pod(
                    &self.pod,
                    Some(&spec.name),
                    EventType::Normal,
                    "Pulled",
                    format!("Successfully pulled image \"{image}\" in {took:?} ({took:?} including waiting). Image size: {} bytes.", img.size_bytes),
                );
                Ok(())
            }
            Err(e) => Err(self.pull_failed(spec, &image, &key, e.to_string())),
        }
    }

    /// Records a failed pull of `image` (`ErrImagePull`) and starts its back-off; the
    /// message is kept for the `ImagePullBackOff` that follows, as upstream's is.
    fn pull_failed(
        &mut self,
        spec: &Container,
        image: &str,
        key: &str,
        message: String,
    ) -> (Waiting, Next) {
        let ctx = self.ctx.clone();
        let now = ctx.now();
        let delay = self.backoff.next(key, now, now);
        ctx.recorder.pod(
            &self.pod,
            Some(&spec.name),
            EventType::Warning,
            "Failed",
            format!("Failed to pull image \"{image}\": {message}"),
        );
        ctx.recorder.pod(
            &self.pod,
            Some(&spec.name),
            EventType::Warning,
            "Failed",
            "Error: ErrImagePull",
        );
        self.pull_errors.insert(key.to_string(), message.clone());
        // Look again soon, so the status moves on to ImagePullBackOff as upstream's does.
        let again = delay.min(Duration::from_secs(1));
        (
            Waiting::new("ErrImagePull", message),
            Next::WakeAt(Instant::now() + again),
        )
    }

    /// The runtime config of attempt `attempt` of `spec`.
    fn container_config(
        &self,
        spec: &Container,
        is_init: bool,
        attempt: u32,
        env: Vec<(String, String)>,
    ) -> ContainerConfig {
        let meta = &self.pod.metadata;
        let lookup = |k: &str| {
            env.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        let expand_all = |v: &Option<Vec<String>>| {
            v.iter()
                .flatten()
                .map(|s| expand(s, lookup))
                .collect::<Vec<_>>()
        };
        let command = expand_all(&spec.command);
        let args = expand_all(&spec.args);
        let mut container_labels = BTreeMap::new();
        container_labels.insert(
            labels::POD_NAME.to_string(),
            meta.name.clone().unwrap_or_default(),
        );
        container_labels.insert(
            labels::POD_NAMESPACE.to_string(),
            meta.namespace.clone().unwrap_or_default(),
        );
        container_labels.insert(labels::POD_UID.to_string(), self.uid.clone());
        container_labels.insert(labels::CONTAINER_NAME.to_string(), spec.name.clone());
        let mut annotations = BTreeMap::new();
        annotations.insert(labels::CONTAINER_HASH.to_string(), container_hash(spec));
        annotations.insert(
            labels::CONTAINER_RESTART_COUNT.to_string(),
            attempt.to_string(),
        );
        annotations.insert(
            labels::POD_TERMINATION_GRACE_PERIOD.to_string(),
            self.pod_grace_period().as_secs().to_string(),
        );
        if is_init {
            annotations.insert(labels::CONTAINER_INIT.to_string(), "true".into());
        }
        ContainerConfig {
            metadata: ContainerMetadata {
                name: spec.name.clone(),
                attempt,
            },
            image: spec.image.clone().unwrap_or_default(),
            command,
            args,
            working_dir: spec.working_dir.clone(),
            env,
            mounts: Vec::new(),
            resources: resources(spec),
            tty: spec.tty.unwrap_or(false),
            stdin: spec.stdin.unwrap_or(false),
            stdin_once: spec.stdin_once.unwrap_or(false),
            labels: container_labels,
            annotations,
            log_path: format!("{}/{attempt}.log", spec.name).into(),
            security: crate::security_context::container_security(&self.pod, spec),
        }
    }

    /// Runs a lifecycle hook (`exec`, `httpGet`, `tcpSocket` or `sleep`) within `timeout`.
    pub(crate) async fn run_hook(
        &self,
        spec: &Container,
        container_id: &str,
        hook: &LifecycleHandler,
        timeout: Duration,
    ) -> Result<(), String> {
        if let Some(sleep) = &hook.sleep {
            tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(timeout)).await;
            return Ok(());
        }
        let pod_ip = self.sandbox.as_ref().map(|s| s.ip);
        let Some(action) = handler_action(
            hook.exec.as_ref(),
            hook.http_get.as_ref(),
            hook.tcp_socket.as_ref(),
            None,
            spec,
            pod_ip,
        ) else {
            return Ok(());
        };
        match &action {
            ProbeAction::Exec { command } => match self
                .ctx
                .runtime
                .exec_sync(container_id, command, timeout)
                .await
            {
                Ok(r) if r.exit_code == 0 => Ok(()),
                Ok(r) => Err(format!(
                    "Exec lifecycle hook ({command:?}) for Container \"{}\" in Pod \"{}\" failed - exit code {}: {}",
                    spec.name,
                    self.pod_desc(),
                    r.exit_code,
                    String::from_utf8_lossy(&r.stdout).trim_end()
                )),
                Err(e) => Err(format!(
                    "Exec lifecycle hook ({command:?}) for Container \"{}\" failed - error: {e}",
                    spec.name
                )),
            },
            _ => {
                let req = ProbeRequest {
                    kind: ProbeKind::Hook,
                    action: action.clone(),
                    timeout,
                };
                match self.ctx.runtime.probe(container_id, &req).await {
                    kybernetes_runtime::ProbeResult::Success => Ok(()),
                    kybernetes_runtime::ProbeResult::Failure(m) => Err(format!(
                        "HTTP lifecycle hook for Container \"{}\" failed - error: {m}",
                        spec.name
                    )),
                }
            }
        }
    }
}
