//! The [`Runtime`] implementation of [`FakeRuntime`].

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{broadcast, watch};
use tracing::debug;

use super::attach::attach_session;
use super::exec::{ExecContext, exec_session};
use super::{
    FakeContainer, FakeRuntime, FakeSandbox, Inner, PullFailure, Signal, State, fake_image,
    mark_exited, port,
};
use crate::container::{
    ContainerConfig, ContainerEvent, ContainerEventKind, ContainerFilter, ContainerState,
    ContainerStatus,
};
use crate::image::Image;
use crate::labels;
use crate::probe::{ProbeAction, ProbeRequest, ProbeResult};
use crate::runtime::{Runtime, RuntimeVersion};
use crate::sandbox::{PodSandboxConfig, PodSandboxFilter, PodSandboxState, PodSandboxStatus};
use crate::stream::{
    AttachRequest, ContainerStats, ExecRequest, ExecResult, ExecSession, LogLine, LogOptions,
    LogStream, LogStreamKind, PortForwardStream,
};
use crate::{Error, Result};

fn not_found(kind: &'static str, id: &str) -> Error {
    Error::NotFound {
        kind,
        id: id.to_string(),
    }
}

/// Makes a running container exit with `code` (used by scripted exits, stops and tests).
/// `expected_start` guards a scripted exit against a container that was restarted since.
pub(crate) fn exit_container(
    inner: &Inner,
    id: &str,
    code: i32,
    expected_start: Option<tokio::time::Instant>,
) {
    let mut st = inner.lock();
    let Some(c) = st.containers.get_mut(id) else {
        return;
    };
    if !c.status.state.is_running() || expected_start.is_some_and(|s| c.started != Some(s)) {
        return;
    }
    debug!(container = id, code, "fake container exits");
    mark_exited(inner, c, code, None);
}

/// The container, if it is running.
fn running<'a>(st: &'a State, id: &str) -> Result<&'a FakeContainer> {
    let c = st
        .containers
        .get(id)
        .ok_or_else(|| not_found("container", id))?;
    if !c.status.state.is_running() {
        return Err(Error::InvalidState {
            id: id.into(),
            message: "container is not running".into(),
        });
    }
    Ok(c)
}

fn schedule_exit(
    inner: &Arc<Inner>,
    id: String,
    after: Duration,
    code: i32,
    started: tokio::time::Instant,
) {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    tokio::spawn(async move {
        tokio::time::sleep_until(started + after).await;
        if let Some(inner) = weak.upgrade() {
            exit_container(&inner, &id, code, Some(started));
        }
    });
}

async fn pause(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn version(&self) -> Result<RuntimeVersion> {
        Ok(RuntimeVersion {
            runtime_name: "fake".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        })
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
        let latency = self.inner().lock().latencies.run_sandbox;
        pause(latency).await;
        let inner = self.inner();
        let mut st = inner.lock();
        let id = st.new_id("sb");
        let status = PodSandboxStatus {
            id: id.clone(),
            metadata: config.metadata.clone(),
            state: PodSandboxState::Ready,
            created_at: inner.clock.now(),
            ip: config.pod_ip,
            netns_path: config.netns_path.clone(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
        };
        if let Some(uid) = config.labels.get(labels::POD_UID) {
            st.sandboxes_by_pod.insert(uid, &id);
        }
        if let Some(node) = config.labels.get(labels::NODE_NAME) {
            st.sandboxes_by_node.insert(node, &id);
        }
        st.sandboxes.insert(
            id.clone(),
            FakeSandbox {
                status,
                config: config.clone(),
            },
        );
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        let inner = self.inner();
        let mut st = inner.lock();
        let st = &mut *st;
        let Some(sb) = st.sandboxes.get_mut(sandbox_id) else {
            return Ok(());
        };
        sb.status.state = PodSandboxState::NotReady;
        for id in st.containers_by_sandbox.get(sandbox_id) {
            let Some(c) = st.containers.get_mut(id) else {
                continue;
            };
            if c.status.state.is_running() {
                c.signals.push(Signal::Kill);
                mark_exited(inner, c, 137, None);
            }
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        self.stop_pod_sandbox(sandbox_id).await?;
        let ids: Vec<String> = {
            let st = self.inner().lock();
            st.containers_by_sandbox.get(sandbox_id).cloned().collect()
        };
        for id in ids {
            self.remove_container(&id).await?;
        }
        let mut st = self.inner().lock();
        if let Some(sb) = st.sandboxes.remove(sandbox_id) {
            if let Some(uid) = sb.status.labels.get(labels::POD_UID) {
                st.sandboxes_by_pod.remove(uid, sandbox_id);
            }
            if let Some(node) = sb.status.labels.get(labels::NODE_NAME) {
                st.sandboxes_by_node.remove(node, sandbox_id);
            }
        }
        Ok(())
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus> {
        let st = self.inner().lock();
        st.sandboxes
            .get(sandbox_id)
            .map(|s| s.status.clone())
            .ok_or_else(|| not_found("sandbox", sandbox_id))
    }

    async fn list_pod_sandboxes(&self, filter: &PodSandboxFilter) -> Result<Vec<PodSandboxStatus>> {
        let st = self.inner().lock();
        Ok(filter.select(
            &st.sandboxes,
            &st.sandboxes_by_pod,
            &st.sandboxes_by_node,
            |s| &s.status,
        ))
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        _sandbox_config: &PodSandboxConfig,
    ) -> Result<String> {
        let latency = self.inner().lock().latencies.create;
        pause(latency).await;
        let inner = self.inner();
        let mut st = inner.lock();
        let sandbox = st
            .sandboxes
            .get(sandbox_id)
            .ok_or_else(|| not_found("sandbox", sandbox_id))?;
        if sandbox.status.state != PodSandboxState::Ready {
            return Err(Error::InvalidState {
                id: sandbox_id.into(),
                message: "sandbox is not ready".into(),
            });
        }
        let pod_uid = sandbox.config.metadata.uid.clone();
        let node = sandbox.config.labels.get(labels::NODE_NAME).cloned();
        let image_ref = st
            .find_image(&config.image)
            .map(|i| i.reference().to_string())
            .ok_or_else(|| Error::ImageNotFound {
                image: config.image.clone(),
            })?;
        st.created.push(config.clone());
        let script = st.script_for(config);
        if let Some(message) = &script.create_error {
            return Err(Error::Backend {
                context: message.clone(),
                source: None,
            });
        }
        let id = st.new_id("c");
        let status = ContainerStatus::created(
            id.clone(),
            sandbox_id.into(),
            config,
            image_ref,
            inner.clock.now(),
            config.log_path.clone(),
        );
        let c = FakeContainer {
            status,
            config: config.clone(),
            pod_uid,
            node,
            script,
            started: None,
            signals: Vec::new(),
            logs: Vec::new(),
            log_version: watch::channel(0).0,
            probe_calls: Default::default(),
        };
        self.emit(&c, ContainerEventKind::Created);
        if let Some(uid) = c.status.labels.get(labels::POD_UID) {
            st.by_pod.insert(uid, &id);
        }
        st.containers_by_sandbox.insert(sandbox_id, &id);
        st.containers.insert(id.clone(), c);
        Ok(id)
    }

    async fn start_container(&self, container_id: &str) -> Result<()> {
        let latency = self.inner().lock().latencies.start;
        pause(latency).await;
        let inner = self.inner();
        let mut st = inner.lock();
        let c = st
            .containers
            .get_mut(container_id)
            .ok_or_else(|| not_found("container", container_id))?;
        if c.status.state != ContainerState::Created {
            return Err(Error::InvalidState {
                id: container_id.into(),
                message: "container is not in created state".into(),
            });
        }
        let now = inner.clock.now();
        if let Some(message) = c.script.start_error.clone() {
            c.status.state = ContainerState::Exited {
                exit_code: 128,
                reason: "StartError".into(),
                message: message.clone(),
                started_at: None,
                finished_at: now,
            };
            c.log_version.send_modify(|v| *v += 1);
            self.emit(c, ContainerEventKind::Stopped);
            return Err(Error::Backend {
                context: message,
                source: None,
            });
        }
        let started = tokio::time::Instant::now();
        c.status.state = ContainerState::Running { started_at: now };
        c.started = Some(started);
        for line in c.script.start_logs.clone() {
            c.push_log(LogLine {
                time: now,
                stream: LogStreamKind::Stdout,
                line,
            });
        }
        self.emit(c, ContainerEventKind::Started);
        if let Some((after, code)) = c.script.exit {
            schedule_exit(inner, container_id.to_string(), after, code, started);
        }
        Ok(())
    }

    async fn stop_container(&self, container_id: &str, grace: Duration) -> Result<()> {
        let inner = self.inner().clone();
        {
            let mut st = inner.lock();
            let c = st
                .containers
                .get_mut(container_id)
                .ok_or_else(|| not_found("container", container_id))?;
            if !c.status.state.is_running() {
                return Ok(());
            }
            c.signals.push(Signal::Term);
            let now = inner.clock.now();
            for line in c.script.term_logs.clone() {
                c.push_log(LogLine {
                    time: now,
                    stream: LogStreamKind::Stdout,
                    line,
                });
            }
            if !c.script.ignores_term {
                let code = c.script.term_exit_code;
                mark_exited(&inner, c, code, None);
                return Ok(());
            }
        }
        tokio::time::sleep(grace).await;
        let mut st = inner.lock();
        if let Some(c) = st.containers.get_mut(container_id)
            && c.status.state.is_running()
        {
            c.signals.push(Signal::Kill);
            mark_exited(&inner, c, 137, None);
        }
        Ok(())
    }

    async fn remove_container(&self, container_id: &str) -> Result<()> {
        let inner = self.inner();
        let mut st = inner.lock();
        if let Some(c) = st.containers.get_mut(container_id)
            && c.status.state.is_running()
        {
            c.signals.push(Signal::Kill);
            mark_exited(inner, c, 137, None);
        }
        if let Some(c) = st.containers.remove(container_id) {
            if let Some(uid) = c.status.labels.get(labels::POD_UID) {
                st.by_pod.remove(uid, container_id);
            }
            st.containers_by_sandbox
                .remove(&c.status.sandbox_id, container_id);
            self.emit(&c, ContainerEventKind::Deleted);
            st.removed
                .insert(container_id.to_string(), (c.signals, c.logs));
        }
        Ok(())
    }

    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus> {
        let st = self.inner().lock();
        st.containers
            .get(container_id)
            .map(|c| c.status.clone())
            .ok_or_else(|| not_found("container", container_id))
    }

    async fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<ContainerStatus>> {
        let st = self.inner().lock();
        Ok(filter.select(
            &st.containers,
            &st.by_pod,
            Some(&st.containers_by_sandbox),
            |c| &c.status,
        ))
    }

    fn container_events(&self) -> broadcast::Receiver<ContainerEvent> {
        self.inner().events.subscribe()
    }

    fn node_container_events(&self, node: &str) -> broadcast::Receiver<ContainerEvent> {
        super::subscribe_node(self.inner(), node)
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[String],
        _timeout: Duration,
    ) -> Result<ExecResult> {
        let mut st = self.inner().lock();
        st.exec_calls.push(super::ExecCall {
            container_id: container_id.into(),
            cmd: cmd.to_vec(),
        });
        let c = st
            .containers
            .get(container_id)
            .ok_or_else(|| not_found("container", container_id))?;
        if !c.status.state.is_running() {
            return Err(Error::InvalidState {
                id: container_id.into(),
                message: "container is not running".into(),
            });
        }
        Ok(c.script.exec_result(cmd).cloned().unwrap_or_default())
    }

    async fn exec(&self, container_id: &str, request: ExecRequest) -> Result<ExecSession> {
        let (script, ctx) = {
            let st = self.inner().lock();
            let c = running(&st, container_id)?;
            let hostname = st
                .sandboxes
                .get(&c.status.sandbox_id)
                .map(|s| s.config.hostname.clone())
                .unwrap_or_default();
            let ctx = ExecContext {
                env: c.config.env.clone(),
                hostname,
            };
            (c.script.clone(), ctx)
        };
        Ok(exec_session(
            self.inner(),
            container_id,
            request,
            script,
            ctx,
        ))
    }

    async fn attach(&self, container_id: &str, request: AttachRequest) -> Result<ExecSession> {
        let echo = {
            let st = self.inner().lock();
            running(&st, container_id)?.script.echo_stdin
        };
        attach_session(self.inner(), container_id, request, echo)
    }

    async fn port_forward(
        &self,
        sandbox_id: &str,
        port: u16,
    ) -> Result<Box<dyn PortForwardStream>> {
        let responder = {
            let st = self.inner().lock();
            let sandbox = st
                .sandboxes
                .get(sandbox_id)
                .ok_or_else(|| not_found("sandbox", sandbox_id))?;
            if sandbox.status.state != PodSandboxState::Ready {
                return Err(Error::InvalidState {
                    id: sandbox_id.into(),
                    message: "sandbox is not ready".into(),
                });
            }
            st.containers
                .values()
                .filter(|c| c.status.sandbox_id == sandbox_id && c.status.state.is_running())
                .find_map(|c| c.script.ports.get(&port).cloned())
        };
        match responder {
            Some(r) => Ok(port::connect(r, port)),
            None => Err(Error::Backend {
                context: format!(
                    "failed to connect to localhost:{port} inside the pod's network namespace: connection refused"
                ),
                source: None,
            }),
        }
    }

    async fn logs(&self, container_id: &str, options: &LogOptions) -> Result<LogStream> {
        super::logs::log_stream(self.inner(), container_id, options)
    }

    async fn container_stats(&self, container_id: &str) -> Result<ContainerStats> {
        let inner = self.inner();
        let st = inner.lock();
        let c = st
            .containers
            .get(container_id)
            .ok_or_else(|| not_found("container", container_id))?;
        let now = inner.clock.now();
        let (cpu_now, cpu_total, memory) = match &c.status.state {
            ContainerState::Running { started_at } => {
                let s = c.script.usage.sample(*started_at, now);
                (s.cpu_nano_cores, s.cpu_core_nanos, s.memory_bytes)
            }
            _ => (0, 0, 0),
        };
        Ok(ContainerStats {
            container_id: container_id.into(),
            timestamp: now,
            cpu_usage_core_nanos: cpu_total,
            cpu_usage_nano_cores: Some(cpu_now),
            memory_working_set_bytes: memory,
        })
    }

    async fn pull_image(&self, image: &str) -> Result<Image> {
        let latency = {
            let mut st = self.inner().lock();
            st.pulls.push(image.to_string());
            st.latencies.pull
        };
        pause(latency).await;
        let mut st = self.inner().lock();
        match st.pull_failures.get(image) {
            Some(PullFailure::NotFound) => {
                return Err(Error::ImageNotFound {
                    image: image.into(),
                });
            }
            Some(PullFailure::Error(message)) => {
                return Err(Error::ImagePull {
                    image: image.into(),
                    message: message.clone(),
                    source: None,
                });
            }
            None => {}
        }
        if let Some(i) = st.find_image(image) {
            return Ok(i.clone());
        }
        let i = fake_image(image);
        st.images.push(i.clone());
        Ok(i)
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        Ok(self.inner().lock().find_image(image).cloned())
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        Ok(self.inner().lock().images.clone())
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        self.inner().lock().images.retain(|i| !i.answers_to(image));
        Ok(())
    }

    async fn import_image(&self, tarball: Bytes) -> Result<Vec<Image>> {
        self.inner().lock().imports.push(tarball);
        Ok(Vec::new())
    }

    async fn probe(&self, container_id: &str, request: &ProbeRequest) -> ProbeResult {
        let mut st = self.inner().lock();
        let Some(c) = st.containers.get_mut(container_id) else {
            return ProbeResult::Failure(format!("container {container_id} not found"));
        };
        if !c.status.state.is_running() {
            return ProbeResult::Failure("container is not running".into());
        }
        let n = {
            let calls = c.probe_calls.entry(request.kind).or_insert(0);
            *calls += 1;
            *calls - 1
        };
        let running_for = c.started.map(|s| s.elapsed()).unwrap_or_default();
        if let Some(script) = c.script.probes.get(&request.kind) {
            return script.answer(n, running_for);
        }
        if let ProbeAction::Exec { command } = &request.action
            && let Some(r) = c.script.exec_result(command)
        {
            let r = r.clone();
            st.exec_calls.push(super::ExecCall {
                container_id: container_id.into(),
                cmd: command.clone(),
            });
            return if r.exit_code == 0 {
                ProbeResult::Success
            } else {
                ProbeResult::Failure(String::from_utf8_lossy(&r.stdout).trim_end().to_string())
            };
        }
        ProbeResult::Success
    }
}
