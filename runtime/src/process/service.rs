//! The [`Runtime`] implementation of [`ProcessRuntime`].

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rustix::process::Signal;
use tokio::sync::{broadcast, watch};
use tracing::debug;

use super::exec::{ExecTarget, exec, exec_sync};
use super::spawn::{self, kill_group};
use super::{Inner, ProcessContainer, ProcessRuntime, ProcessSandbox, RUNTIME_NAME, not_found};
use crate::container::{
    ContainerConfig, ContainerEvent, ContainerEventKind, ContainerFilter, ContainerState,
    ContainerStatus,
};
use crate::image::{Image, synthetic_image};
use crate::probe::{self, ProbeAction, ProbeRequest, ProbeResult};
use crate::runtime::{Runtime, RuntimeVersion};
use crate::sandbox::{PodSandboxConfig, PodSandboxFilter, PodSandboxState, PodSandboxStatus};
use crate::security::ContainerSecurity;
use crate::stream::{
    AttachRequest, ContainerStats, ExecRequest, ExecResult, ExecSession, LogOptions, LogStream,
    PortForwardStream,
};
use crate::{Error, Result};

/// How long a killed container may take to be reaped before a stop gives up waiting.
const REAP: Duration = Duration::from_secs(10);

/// `PATH` for containers that set none: the host's, else the usual one.
fn default_path() -> String {
    std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into())
}

/// The host ports a sandbox claims: in the host network every declared port is one.
fn claims(config: &PodSandboxConfig) -> Vec<(String, u16)> {
    config
        .port_mappings
        .iter()
        .map(|p| (p.protocol.clone(), p.host_port.unwrap_or(p.container_port)))
        .collect()
}

impl ProcessRuntime {
    /// Waits until container `id` is no longer running (or is gone), up to `limit`.
    async fn wait_exited(&self, id: &str, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let mut version: watch::Receiver<u64> = {
            let st = self.inner.lock();
            match st.containers.get(id) {
                Some(c) => c.version.subscribe(),
                None => return true,
            }
        };
        loop {
            let running = self
                .inner
                .lock()
                .containers
                .get(id)
                .is_some_and(|c| c.status.state.is_running());
            if !running {
                return true;
            }
            match tokio::time::timeout_at(deadline, version.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return true,
                Err(_) => return false,
            }
        }
    }

    /// Kills container `id` at once and waits for it to be reaped.
    async fn kill_now(&self, id: &str) {
        let pid = self.inner.lock().containers.get(id).and_then(|c| c.pid);
        if let Some(pid) = pid {
            self.signal(id, pid, Signal::KILL).await;
            if !self.wait_exited(id, REAP).await {
                // runc itself (or a process that left the group) held on: the group goes.
                kill_group(pid, Signal::KILL);
                debug!(container = id, "killed container not reaped in time");
            }
        }
    }

    /// Signals container `id` whose main process is `pid`: TERM goes to the main process
    /// only, as runtimes signal a container's init, KILL to its whole group. In isolated
    /// mode runc signals the container's init (and KILL to a pid namespace's init ends
    /// every process in it); before runc has the container, the foreground runc gets the
    /// signal and forwards it.
    pub(crate) async fn signal(&self, id: &str, pid: u32, signal: Signal) {
        if let Some(iso) = &self.inner.isolation {
            let name = if signal == Signal::KILL {
                "KILL"
            } else {
                "TERM"
            };
            if iso.kill(id, name).await {
                return;
            }
        }
        if signal == Signal::KILL {
            kill_group(pid, signal);
        } else {
            spawn::signal_main(pid, signal);
        }
    }

    fn sandbox_dir(&self, id: &str, config: &PodSandboxConfig) -> PathBuf {
        let name = config
            .log_directory
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| id.to_string());
        self.inner.root.join("pods").join(name)
    }

    fn check_ports(&self, st: &super::State, config: &PodSandboxConfig) -> Result<()> {
        let wanted = claims(config);
        // In isolated mode a pod the Network gave no namespace gets one of its own.
        let own_netns = self.inner.isolation.is_some() && config.netns_path.is_none();
        if wanted.is_empty() || own_netns {
            return Ok(());
        }
        for other in st.sandboxes.values() {
            // Ports clash only within one network namespace (the host's, or a node's that
            // hostNetwork pods share).
            if other.status.state != PodSandboxState::Ready
                || other.config.metadata.uid == config.metadata.uid
                || other.netns != config.netns_path
            {
                continue;
            }
            let taken = claims(&other.config);
            if let Some((protocol, port)) = wanted.iter().find(|w| taken.contains(w)) {
                return Err(Error::Backend {
                    context: format!(
                        "port {port}/{protocol} is already claimed by pod {}/{} (host network: every containerPort is a host port)",
                        other.config.metadata.namespace, other.config.metadata.name
                    ),
                    source: None,
                });
            }
        }
        Ok(())
    }

    fn new_container(
        &self,
        sandbox: &ProcessSandbox,
        config: &ContainerConfig,
    ) -> Result<ProcessContainer> {
        if let Some(iso) = &self.inner.isolation {
            return self.new_isolated(iso, sandbox, config);
        }
        let argv = self.inner.argv(config);
        if argv.is_empty() {
            return Err(Error::Backend {
                context: format!(
                    "container {:?} has no command, and image {:?} maps to none (host mode runs the container's command and args)",
                    config.metadata.name, config.image
                ),
                source: None,
            });
        }
        let user = process_user(&config.security)?;
        self.inner.note_mounts(config);
        let working_dir = config
            .working_dir
            .as_ref()
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| sandbox.dir.clone());
        if !working_dir.is_dir() {
            return Err(Error::Backend {
                context: format!("working directory {} does not exist", working_dir.display()),
                source: None,
            });
        }
        let mut env = vec![
            ("PATH".to_string(), default_path()),
            ("HOSTNAME".to_string(), sandbox.config.hostname.clone()),
        ];
        env.extend(config.env.iter().cloned());
        let (id, image_ref) = self.new_id_for(config)?;
        Ok(self.container_record(
            id,
            sandbox,
            config,
            image_ref,
            ProcessContainerParts {
                argv,
                env,
                working_dir,
                netns: sandbox.netns.clone(),
                user,
                bundle: None,
            },
        ))
    }

    /// A new container id, and the reference of the (pulled) image `config` names.
    pub(crate) fn new_id_for(&self, config: &ContainerConfig) -> Result<(String, String)> {
        let mut st = self.inner.lock();
        let image_ref = st
            .find_image(&config.image)
            .map(|i| i.reference().to_string())
            .ok_or_else(|| Error::ImageNotFound {
                image: config.image.clone(),
            })?;
        Ok((st.new_id(), image_ref))
    }

    /// The record of a new container of `sandbox`.
    pub(crate) fn container_record(
        &self,
        id: String,
        sandbox: &ProcessSandbox,
        config: &ContainerConfig,
        image_ref: String,
        parts: ProcessContainerParts,
    ) -> ProcessContainer {
        let log_path = config.log_path_or_default();
        ProcessContainer {
            status: ContainerStatus::created(
                id,
                sandbox.status.id.clone(),
                config,
                image_ref,
                self.inner.clock.now(),
                log_path.clone(),
            ),
            pod_uid: sandbox.config.metadata.uid.clone(),
            argv: parts.argv,
            env: parts.env,
            working_dir: parts.working_dir,
            log_file: sandbox.dir.join(log_path),
            netns: parts.netns,
            pid: None,
            version: std::sync::Arc::new(watch::channel(0).0),
            cpu_rate: Default::default(),
            open_stdin: config.stdin,
            stdin_once: config.stdin_once,
            stdin: None,
            user: parts.user,
            bundle: parts.bundle,
        }
    }
}

/// What differs between a host-mode and an isolated container record.
pub(crate) struct ProcessContainerParts {
    pub(crate) argv: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) working_dir: PathBuf,
    pub(crate) netns: Option<PathBuf>,
    pub(crate) user: Option<(u32, u32)>,
    pub(crate) bundle: Option<super::isolated::Bundle>,
}

/// The uid and gid a local process runs as under `security`. A local process shares the
/// node's filesystem, capabilities and groups, so only `runAsUser` and `runAsGroup` apply
/// (and changing user needs an agent that runs as root); every other setting is refused
/// by name rather than silently ignored. `privileged` asks for no more than a process of
/// the agent already has.
fn process_user(security: &ContainerSecurity) -> Result<Option<(u32, u32)>> {
    let refused = [
        (
            !security.supplemental_groups.is_empty(),
            "supplementalGroups and fsGroup",
        ),
        (security.readonly_rootfs, "readOnlyRootFilesystem"),
        (
            !security.add_capabilities.is_empty() || !security.drop_capabilities.is_empty(),
            "capabilities",
        ),
        (security.no_new_privs, "allowPrivilegeEscalation: false"),
    ];
    if let Some((_, what)) = refused.iter().find(|(asked, _)| *asked) {
        return Err(Error::Unsupported(format!(
            "securityContext {what} on local processes"
        )));
    }
    if security.run_as_user.is_none() && security.run_as_group.is_none() {
        return Ok(None);
    }
    let own_uid = rustix::process::geteuid().as_raw();
    let own_gid = rustix::process::getegid().as_raw();
    let id = |v: i64, what: &str| {
        u32::try_from(v).map_err(|_| Error::Backend {
            context: format!("{what} {v} is not a valid id"),
            source: None,
        })
    };
    let uid = security
        .run_as_user
        .map(|u| id(u, "runAsUser"))
        .transpose()?
        .unwrap_or(own_uid);
    let gid = security
        .run_as_group
        .map(|g| id(g, "runAsGroup"))
        .transpose()?
        .unwrap_or(own_gid);
    if own_uid != 0 && (uid != own_uid || gid != own_gid) {
        return Err(Error::Unsupported(format!(
            "securityContext runAsUser {uid} / runAsGroup {gid} on local processes of an agent that is not root (it runs as {own_uid}:{own_gid})"
        )));
    }
    Ok(Some((uid, gid)))
}

/// Records that a container could not start, as upstream runtimes report it.
fn mark_start_error(inner: &Inner, id: &str, message: String) {
    let mut st = inner.lock();
    if let Some(c) = st.containers.get_mut(id) {
        c.status.state = ContainerState::Exited {
            exit_code: 128,
            reason: "StartError".into(),
            message,
            started_at: None,
            finished_at: inner.clock.now(),
        };
        c.version.send_modify(|v| *v += 1);
        inner.emit(c, ContainerEventKind::Stopped);
    }
}

#[async_trait]
impl Runtime for ProcessRuntime {
    async fn version(&self) -> Result<RuntimeVersion> {
        Ok(RuntimeVersion {
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        })
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
        self.check_ports(&self.inner.lock(), config)?;
        let id = self.inner.lock().new_id();
        let dir = self.sandbox_dir(&id, config);
        std::fs::create_dir_all(&dir)
            .map_err(|e| super::backend_io(format!("create pod directory {}", dir.display()), e))?;
        let (netns, owns_netns) = match &self.inner.isolation {
            Some(iso) => {
                let (path, owned) = iso.sandbox_netns(&id, config, &dir).await?;
                (Some(path), owned)
            }
            None => (config.netns_path.clone(), false),
        };
        let status = PodSandboxStatus {
            id: id.clone(),
            metadata: config.metadata.clone(),
            state: PodSandboxState::Ready,
            created_at: self.inner.clock.now(),
            ip: config.pod_ip,
            netns_path: netns.clone(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
        };
        let mut st = self.inner.lock();
        // Checked again with the insert under one lock: two pods may claim a port at once.
        if let Err(e) = self.check_ports(&st, config) {
            if let (Some(iso), Some(path), true) = (&self.inner.isolation, &netns, owns_netns) {
                iso.remove_netns(path);
            }
            return Err(e);
        }
        st.sandboxes.insert(
            id.clone(),
            ProcessSandbox {
                status,
                config: config.clone(),
                dir,
                netns,
                owns_netns,
            },
        );
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        let ids: Vec<String> = {
            let mut st = self.inner.lock();
            let Some(sb) = st.sandboxes.get_mut(sandbox_id) else {
                return Ok(());
            };
            sb.status.state = PodSandboxState::NotReady;
            st.containers
                .values()
                .filter(|c| c.status.sandbox_id == sandbox_id)
                .map(|c| c.status.id.clone())
                .collect()
        };
        for id in ids {
            self.kill_now(&id).await;
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        self.stop_pod_sandbox(sandbox_id).await?;
        let ids: Vec<String> = {
            let st = self.inner.lock();
            st.containers
                .values()
                .filter(|c| c.status.sandbox_id == sandbox_id)
                .map(|c| c.status.id.clone())
                .collect()
        };
        for id in ids {
            self.remove_container(&id).await?;
        }
        let removed = {
            let mut st = self.inner.lock();
            let removed = st.sandboxes.remove(sandbox_id);
            let owned_netns = removed
                .as_ref()
                .filter(|r| r.owns_netns)
                .and_then(|r| r.netns.clone());
            // The directory is the pod's: keep it while another sandbox of the pod uses it.
            (
                removed.filter(|r| st.sandboxes.values().all(|s| s.dir != r.dir)),
                owned_netns,
            )
        };
        let (removed, owned_netns) = removed;
        if let Some((iso, path)) = self.inner.isolation.as_ref().zip(owned_netns) {
            iso.remove_netns(&path);
        }
        if let Some(sb) = removed
            && let Err(e) = std::fs::remove_dir_all(&sb.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            debug!(dir = %sb.dir.display(), error = %e, "removing a pod directory failed");
        }
        Ok(())
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus> {
        let st = self.inner.lock();
        st.sandboxes
            .get(sandbox_id)
            .map(|s| s.status.clone())
            .ok_or_else(|| not_found("sandbox", sandbox_id))
    }

    async fn list_pod_sandboxes(&self, filter: &PodSandboxFilter) -> Result<Vec<PodSandboxStatus>> {
        let st = self.inner.lock();
        Ok(st
            .sandboxes
            .values()
            .filter(|s| filter.matches(&s.status))
            .map(|s| s.status.clone())
            .collect())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        _sandbox_config: &PodSandboxConfig,
    ) -> Result<String> {
        let container = {
            let st = self.inner.lock();
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
            let sandbox = ProcessSandbox {
                status: sandbox.status.clone(),
                config: sandbox.config.clone(),
                dir: sandbox.dir.clone(),
                netns: sandbox.netns.clone(),
                owns_netns: sandbox.owns_netns,
            };
            drop(st);
            self.new_container(&sandbox, config)?
        };
        let id = container.status.id.clone();
        self.inner.emit(&container, ContainerEventKind::Created);
        let mut st = self.inner.lock();
        st.by_pod.insert(&container.pod_uid, &id);
        st.containers.insert(id.clone(), container);
        Ok(id)
    }

    async fn start_container(&self, container_id: &str) -> Result<()> {
        {
            let st = self.inner.lock();
            let c = st
                .containers
                .get(container_id)
                .ok_or_else(|| not_found("container", container_id))?;
            if c.status.state != ContainerState::Created {
                return Err(Error::InvalidState {
                    id: container_id.into(),
                    message: "container is not in created state".into(),
                });
            }
        }
        match spawn::start(&self.inner, container_id) {
            Ok(pid) => {
                debug!(container = container_id, pid, "container process started");
                self.wait_created(container_id).await
            }
            Err(e) => {
                mark_start_error(&self.inner, container_id, e.to_string());
                Err(e)
            }
        }
    }

    async fn stop_container(&self, container_id: &str, grace: Duration) -> Result<()> {
        let pid = {
            let st = self.inner.lock();
            let c = st
                .containers
                .get(container_id)
                .ok_or_else(|| not_found("container", container_id))?;
            match (c.status.state.is_running(), c.pid) {
                (true, Some(pid)) => pid,
                _ => return Ok(()),
            }
        };
        // TERM goes to the container's init only; the KILL after the grace period takes
        // every process.
        self.signal(container_id, pid, Signal::TERM).await;
        if self.wait_exited(container_id, grace).await {
            return Ok(());
        }
        debug!(
            container = container_id,
            ?grace,
            "grace period over; killing"
        );
        self.kill_now(container_id).await;
        Ok(())
    }

    async fn remove_container(&self, container_id: &str) -> Result<()> {
        self.kill_now(container_id).await;
        let removed = {
            let mut st = self.inner.lock();
            let removed = st.containers.remove(container_id);
            if let Some(c) = &removed {
                st.by_pod.remove(&c.pod_uid, container_id);
            }
            removed
        };
        if let Some(c) = removed {
            if let (Some(iso), Some(bundle)) = (&self.inner.isolation, &c.bundle) {
                iso.delete(container_id).await;
                super::isolated::bundle::remove(bundle);
            }
            self.inner.emit(&c, ContainerEventKind::Deleted);
            if let Err(e) = std::fs::remove_file(&c.log_file)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                debug!(file = %c.log_file.display(), error = %e, "removing a container log failed");
            }
        }
        Ok(())
    }

    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus> {
        let st = self.inner.lock();
        st.containers
            .get(container_id)
            .map(|c| c.status.clone())
            .ok_or_else(|| not_found("container", container_id))
    }

    async fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<ContainerStatus>> {
        let st = self.inner.lock();
        Ok(filter.select(&st.containers, &st.by_pod, None, |c| &c.status))
    }

    fn container_events(&self) -> broadcast::Receiver<ContainerEvent> {
        self.inner.events.subscribe()
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecResult> {
        let target = ExecTarget::of(&self.inner, container_id)?;
        exec_sync(target, cmd, timeout).await
    }

    async fn exec(&self, container_id: &str, request: ExecRequest) -> Result<ExecSession> {
        let target = ExecTarget::of(&self.inner, container_id)?;
        exec(target, request)
    }

    async fn attach(&self, container_id: &str, request: AttachRequest) -> Result<ExecSession> {
        super::attach::attach_session(&self.inner, container_id, request).await
    }

    async fn port_forward(
        &self,
        sandbox_id: &str,
        port: u16,
    ) -> Result<Box<dyn PortForwardStream>> {
        let netns = {
            let st = self.inner.lock();
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
            sandbox.netns.clone()
        };
        if let (Some(_), Some(netns)) = (&self.inner.isolation, netns) {
            return self.isolated_port_forward(netns, port).await;
        }
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => Ok(Box::new(s)),
            Err(e) => Err(Error::Backend {
                context: format!("failed to connect to localhost:{port} in the host network: {e}"),
                source: Some(Box::new(e)),
            }),
        }
    }

    async fn logs(&self, container_id: &str, options: &LogOptions) -> Result<LogStream> {
        super::logs::log_stream(&self.inner, container_id, options).await
    }

    async fn container_stats(&self, container_id: &str) -> Result<ContainerStats> {
        let (pid, bundle) = {
            let st = self.inner.lock();
            let c = st
                .containers
                .get(container_id)
                .ok_or_else(|| not_found("container", container_id))?;
            (
                c.pid.filter(|_| c.status.state.is_running()),
                c.bundle.clone(),
            )
        };
        let (cpu, memory) = match (pid, bundle) {
            // The container's cgroup holds every process of it.
            (Some(_), Some(bundle)) => {
                tokio::task::spawn_blocking(move || super::isolated::Isolation::usage(&bundle))
                    .await
                    .map_err(|e| Error::Backend {
                        context: "reading a container's cgroup".into(),
                        source: Some(Box::new(e)),
                    })??
            }
            (Some(pid), None) => {
                tokio::task::spawn_blocking(move || super::stats::group_usage(pid))
                    .await
                    .map_err(|e| Error::Backend {
                        context: "reading /proc".into(),
                        source: Some(Box::new(e)),
                    })?
            }
            (None, _) => (0, 0),
        };
        let now = tokio::time::Instant::now();
        let rate = {
            let mut st = self.inner.lock();
            st.containers
                .get_mut(container_id)
                .and_then(|c| c.cpu_rate.sample(now, cpu))
        };
        Ok(ContainerStats {
            container_id: container_id.into(),
            timestamp: self.inner.clock.now(),
            cpu_usage_core_nanos: cpu,
            cpu_usage_nano_cores: rate,
            memory_working_set_bytes: memory,
        })
    }

    async fn pull_image(&self, image: &str) -> Result<Image> {
        if self.inner.isolation.is_some() {
            self.import_pending().await?;
        }
        // Nothing to download: an image names what to run (a mapping, or the container's
        // own command, on the host's files in isolated mode), so every pull succeeds and
        // records it.
        let mut st = self.inner.lock();
        if let Some(i) = st.find_image(image) {
            return Ok(i.clone());
        }
        let i = synthetic_image(image);
        st.images.push(i.clone());
        Ok(i)
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        Ok(self.inner.lock().find_image(image).cloned())
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        Ok(self.inner.lock().images.clone())
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        self.inner.lock().images.retain(|i| !i.answers_to(image));
        if let Some(iso) = &self.inner.isolation {
            iso.remove_image(image);
        }
        Ok(())
    }

    async fn import_image(&self, tarball: Bytes) -> Result<Vec<Image>> {
        if self.inner.isolation.is_some() {
            return self.isolated_import(tarball).await;
        }
        Err(Error::Unsupported(
            "importing OCI archives in host mode (map images to commands with ProcessRuntimeBuilder::image)".into(),
        ))
    }

    async fn probe(&self, container_id: &str, request: &ProbeRequest) -> ProbeResult {
        if self.inner.isolation.is_some() {
            return self.isolated_probe(container_id, request).await;
        }
        // In the host network the pod's address is this host: probes aimed at the pod IP
        // the network assigned go to loopback, where the process listens.
        let pod_ip = {
            let st = self.inner.lock();
            st.containers
                .get(container_id)
                .and_then(|c| st.sandboxes.get(&c.status.sandbox_id))
                .and_then(|s| s.config.pod_ip)
                .map(|ip| ip.to_string())
        };
        let local = |host: &String| {
            if host.is_empty() || Some(host) == pod_ip.as_ref() {
                "127.0.0.1".to_string()
            } else {
                host.clone()
            }
        };
        let mut request = request.clone();
        match &mut request.action {
            ProbeAction::TcpSocket { host, .. }
            | ProbeAction::HttpGet { host, .. }
            | ProbeAction::Grpc { host, .. } => *host = local(host),
            ProbeAction::Exec { .. } => {}
        }
        probe::run_default(self, container_id, &request).await
    }

    async fn shutdown(&self) -> Result<()> {
        let ids: Vec<String> = {
            let st = self.inner.lock();
            st.containers
                .values()
                .filter(|c| c.status.state.is_running())
                .map(|c| c.status.id.clone())
                .collect()
        };
        for id in &ids {
            let pid = self.inner.lock().containers.get(id).and_then(|c| c.pid);
            if let Some(pid) = pid {
                self.signal(id, pid, Signal::KILL).await;
            }
        }
        for id in &ids {
            self.wait_exited(id, REAP).await;
        }
        if self.inner.isolation.is_some() {
            self.isolated_teardown().await;
        }
        debug!(
            containers = ids.len(),
            "process runtime stopped its containers"
        );
        Ok(())
    }
}
