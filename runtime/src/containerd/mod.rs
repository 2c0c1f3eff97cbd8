//! [`ContainerdRuntime`]: a [`Runtime`](crate::Runtime) backed by a containerd daemon (1.6 or
//! later), through containerd's own gRPC services (not CRI).
//!
//! It connects to a socket and keeps everything in its own containerd namespace (default
//! `kybernetes`), so it never sees or touches what other clients of the same daemon run.
//!
//! What works so far:
//! - **images**: [`import_image`](crate::Runtime::import_image) loads an OCI image-layout
//!   tarball (what `ctr images import` does: content, then an image record, then the layers
//!   unpacked into the snapshotter, overlayfs by default); `image_status`, `list_images` and
//!   `remove_image` read and change containerd's image store. `pull_image` (and
//!   `pull_image_with`, with the credentials of the pod's `imagePullSecrets`) fetches from an
//!   OCI distribution registry as containerd's own client does (see `registry.rs`) into the
//!   same content store and snapshotter; a registry that is unreachable, lacks the image or
//!   refuses access fails the pull with [`Error::ImagePull`](crate::Error::ImagePull), which
//!   the node agent reports as `ErrImagePull`.
//! - **sandboxes**: every container of a pod joins the pod's network namespace: the one the
//!   `Network` prepared (`netns_path`), or, when it gave none, a fresh one with loopback up
//!   that the runtime bind-mounts under its root and removes with the sandbox.
//!   [`shutdown`](crate::Runtime::shutdown) removes everything it started.
//! - **restarts**: sandboxes and the containers' states are kept in containerd too (JSON
//!   extensions of container records; containerd 1.6 has no sandbox objects), so a runtime
//!   that connects to the namespace recovers what an earlier one left running, reattaching
//!   to its tasks; [`detach`](crate::Runtime::detach) lets go of everything without stopping
//!   it. See `recovery.rs`.
//! - **containers**: an OCI runtime spec from the container config over the image config
//!   (`Entrypoint`/`Cmd` by Docker's rules, `Env`, `WorkingDir`, a numeric `User`), bind
//!   mounts for the volumes the node agent prepared, CPU shares and quota and a memory limit
//!   as cgroup settings; a snapshot of the image as its root filesystem; a task under the
//!   `io.containerd.runc.v2` shim whose stdout and stderr go through FIFOs into the CRI log
//!   file under the runtime's root; TERM, the grace period, then KILL on stop; the exit code,
//!   and `OOMKilled` when the cgroup's OOM killer ended it.
//! - **probes**: `tcpSocket` and `httpGet` probes of a pod in a namespace made here connect
//!   from inside it (to loopback for the pod IP), since nothing on the host routes there.
//! - **exec**: a process added to the container's task with the container's environment,
//!   user and working directory; its streams through FIFOs; with a terminal, one output
//!   stream and resizes through `Tasks.ResizePty` (see `exec.rs`).
//! - **attach**: the main process's output as it is written (the log pumps tee it), its
//!   stdin when the spec says `stdin: true` (a FIFO the runtime keeps open), and its
//!   terminal with `tty: true`, with `stdinOnce` as containerd's CRI has it (see
//!   `task_io.rs` and `attach.rs`).
//! - **port-forward**: a TCP connection to loopback inside the pod's network namespace,
//!   opened on a thread that entered it and handed to tokio (see `port_forward.rs`).
//! - **stats**: CPU time and the memory working set from the container's cgroup (v1 or v2).
//! - **securityContext**: see `spec.rs`, `user.rs` and `capabilities.rs`.

mod attach;
mod containers;
mod exec;
mod images;
mod port_forward;
mod probes;
mod recovery;
mod registry;
mod sandboxes;
mod stats;
mod task_io;

use crate::oci::{backend, netns, spec, user};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use containerd_client::services::v1::version_client::VersionClient;
use containerd_client::tonic::metadata::MetadataValue;
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{self, Code, Request, Status};
use kybernetes_core::Clock;
use tokio::sync::{broadcast, watch};

use crate::container::{
    ContainerConfig, ContainerEvent, ContainerEventKind, ContainerFilter, ContainerState,
    ContainerStatus,
};
use crate::image::Image;
use crate::probe::{ProbeRequest, ProbeResult};
use crate::pull_auth::PullAuth;
use crate::runtime::{Runtime, RuntimeVersion};
use crate::sandbox::{PodSandboxConfig, PodSandboxFilter, PodSandboxStatus};
use crate::stream::{
    AttachRequest, ContainerStats, ExecRequest, ExecResult, ExecSession, LogOptions, LogStream,
    PortForwardStream,
};
use crate::{Error, Result};

/// The containerd namespace a runtime works in unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "kybernetes";

/// The snapshotter images are unpacked into unless told otherwise.
pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";

/// Builds a [`ContainerdRuntime`].
#[derive(Debug)]
#[must_use]
pub struct ContainerdRuntimeBuilder {
    namespace: String,
    snapshotter: String,
    root: Option<PathBuf>,
    clock: Option<Clock>,
    recover: bool,
}

impl Default for ContainerdRuntimeBuilder {
    fn default() -> Self {
        ContainerdRuntimeBuilder {
            namespace: DEFAULT_NAMESPACE.into(),
            snapshotter: DEFAULT_SNAPSHOTTER.into(),
            root: None,
            clock: None,
            recover: true,
        }
    }
}

impl ContainerdRuntimeBuilder {
    /// The containerd namespace to work in (default [`DEFAULT_NAMESPACE`]).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The snapshotter to unpack images into (default [`DEFAULT_SNAPSHOTTER`]); `native`
    /// works where overlayfs cannot be mounted.
    pub fn snapshotter(mut self, snapshotter: impl Into<String>) -> Self {
        self.snapshotter = snapshotter.into();
        self
    }

    /// Where the containers' logs (under `pods/`), their output FIFOs and the pods' own
    /// network namespaces go (created if missing, kept on drop). Default: a fresh directory
    /// under the system temp dir, removed on drop.
    pub fn root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.root = Some(dir.into());
        self
    }

    /// The clock wall times come from (default: a new [`Clock`]; the cluster's own is
    /// better, so times agree with the API objects).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Whether [`connect`](Self::connect) recovers the sandboxes and containers an earlier
    /// runtime left in the namespace and reattaches to their tasks (default: yes). A
    /// short-lived client of a namespace another runtime serves (an image import) says no, so
    /// it neither watches nor reads the output of containers that are not its own.
    pub fn recover(mut self, recover: bool) -> Self {
        self.recover = recover;
        self
    }

    /// Connects to the containerd socket at `socket` and checks that the daemon answers.
    pub async fn connect(self, socket: impl AsRef<std::path::Path>) -> Result<ContainerdRuntime> {
        let socket = socket.as_ref();
        let namespace = MetadataValue::try_from(self.namespace.as_str()).map_err(|e| {
            backend(
                format!(
                    "containerd namespace {:?} is not a valid header value",
                    self.namespace
                ),
                e,
            )
        })?;
        let channel = containerd_client::connect(socket)
            .await
            .map_err(|e| backend(format!("connect to containerd at {}", socket.display()), e))?;
        static NEXT_ROOT: AtomicU64 = AtomicU64::new(0);
        let (root, owns_root) = match self.root {
            Some(r) => (r, false),
            None => {
                let n = NEXT_ROOT.fetch_add(1, Ordering::Relaxed);
                let dir = std::env::temp_dir()
                    .join(format!("kybernetes-containerd-{}-{n}", std::process::id()));
                (dir, true)
            }
        };
        let runtime = ContainerdRuntime {
            channel,
            namespace,
            snapshotter: self.snapshotter,
            events: broadcast::channel(16 * 1024).0,
            inner: Arc::new(Inner {
                clock: self.clock.unwrap_or_default(),
                root,
                owns_root,
                state: Mutex::new(State::default()),
            }),
        };
        runtime.version().await?;
        // What an earlier runtime on this namespace left running is adopted, not orphaned.
        if self.recover {
            recovery::recover(&runtime).await?;
        }
        Ok(runtime)
    }
}

/// A [`Runtime`] whose containers run on a containerd daemon; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct ContainerdRuntime {
    channel: Channel,
    namespace: MetadataValue<tonic::metadata::Ascii>,
    snapshotter: String,
    events: broadcast::Sender<ContainerEvent>,
    inner: Arc<Inner>,
}

/// What the runtime keeps in memory: its sandboxes and the states of its containers.
#[derive(Debug)]
struct Inner {
    clock: Clock,
    root: PathBuf,
    owns_root: bool,
    state: Mutex<State>,
}

impl Inner {
    /// Locks the state. A panic while holding the lock leaves the state usable, so poisoning
    /// is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Sandboxes still here were never removed (the runtime was dropped without a
        // shutdown, e.g. by a test that failed): the namespaces made for them are mounts,
        // which would outlive this process and keep the root from being removed.
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        for sandbox in st.sandboxes.values().filter(|s| s.owns_netns) {
            netns::remove(&sandbox.netns);
        }
        if self.owns_root
            && let Err(e) = std::fs::remove_dir_all(&self.root)
        {
            tracing::debug!(root = %self.root.display(), error = %e, "could not remove the containerd runtime's root");
        }
    }
}

#[derive(Debug, Default)]
struct State {
    sandboxes: BTreeMap<String, ContainerdSandbox>,
    containers: BTreeMap<String, ContainerdContainer>,
    /// Container ids by pod UID, so listing a pod's containers stays cheap.
    by_pod: crate::index::IdIndex,
}

#[derive(Debug)]
struct ContainerdSandbox {
    status: PodSandboxStatus,
    config: PodSandboxConfig,
    /// The network namespace its containers join.
    netns: PathBuf,
    /// Whether the runtime made that namespace (and removes it with the sandbox).
    owns_netns: bool,
    /// The pod's directory: its containers' logs.
    dir: PathBuf,
}

#[derive(Debug)]
struct ContainerdContainer {
    status: ContainerStatus,
    pod_uid: String,
    log_file: PathBuf,
    /// Bumped on every log line and state change, for log followers and stoppers.
    version: Arc<watch::Sender<u64>>,
    /// The mounts of its root filesystem snapshot, which a task create needs.
    rootfs: Vec<containerd_client::types::Mount>,
    cgroups_path: String,
    /// The OCI process spec it runs, which an exec starts from.
    process: serde_json::Value,
    /// Its main process's terminal and stdin, and the ends an attach joins.
    streams: task_io::MainStreams,
    /// The last CPU sample, for the CPU rate.
    cpu_rate: crate::stream::CpuRate,
    /// The task watching its exit, while it runs.
    watcher: Option<tokio::task::AbortHandle>,
}

/// A new container or sandbox id, unique across runtimes and processes sharing a daemon.
fn new_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{:08x}{:012x}{:04x}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros() & 0xffff_ffff_ffff,
        NEXT.fetch_add(1, Ordering::Relaxed) & 0xffff
    )
}

fn not_found(kind: &'static str, id: &str) -> Error {
    Error::NotFound {
        kind,
        id: id.to_string(),
    }
}

impl ContainerdRuntime {
    /// Sends a lifecycle event about `c`. No subscriber yet (no node agent) is fine: events
    /// are hints, state is listed.
    fn emit(&self, c: &ContainerdContainer, kind: ContainerEventKind) {
        let _ = self.events.send(ContainerEvent {
            container_id: c.status.id.clone(),
            sandbox_id: c.status.sandbox_id.clone(),
            pod_uid: c.pod_uid.clone(),
            kind,
            time: self.inner.clock.now(),
        });
    }

    /// The root directory (logs under `pods/`).
    pub fn root(&self) -> &std::path::Path {
        &self.inner.root
    }

    /// A builder, to choose the namespace or the snapshotter.
    pub fn builder() -> ContainerdRuntimeBuilder {
        ContainerdRuntimeBuilder::default()
    }

    /// Connects to the containerd socket at `socket` with the default namespace and
    /// snapshotter.
    pub async fn connect(socket: impl AsRef<std::path::Path>) -> Result<ContainerdRuntime> {
        ContainerdRuntime::builder().connect(socket).await
    }

    /// A request in this runtime's namespace, and in `lease` if given (content written under
    /// a lease is not garbage-collected until the lease goes).
    fn request<T>(&self, message: T, lease: Option<&str>) -> Result<Request<T>> {
        let mut request = Request::new(message);
        let md = request.metadata_mut();
        md.insert("containerd-namespace", self.namespace.clone());
        if let Some(lease) = lease {
            let value = MetadataValue::try_from(lease)
                .map_err(|e| backend(format!("lease id {lease:?}"), e))?;
            md.insert("containerd-lease", value);
        }
        Ok(request)
    }
}

/// An [`Error::Backend`] for a failed gRPC call to containerd.
fn grpc(context: impl Into<String>, status: Status) -> Error {
    backend(context, status)
}

/// Whether a gRPC status says the thing asked for does not exist.
fn is_not_found(status: &Status) -> bool {
    status.code() == Code::NotFound
}

#[async_trait]
impl Runtime for ContainerdRuntime {
    async fn version(&self) -> Result<RuntimeVersion> {
        let response = VersionClient::new(self.channel.clone())
            .version(self.request((), None)?)
            .await
            .map_err(|s| grpc("containerd version", s))?
            .into_inner();
        Ok(RuntimeVersion {
            runtime_name: "containerd".into(),
            runtime_version: response.version,
            runtime_api_version: "v1".into(),
        })
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
        sandboxes::run(self, config).await
    }
    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        sandboxes::stop(self, sandbox_id).await
    }
    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        sandboxes::remove(self, sandbox_id).await
    }
    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus> {
        self.inner
            .lock()
            .sandboxes
            .get(sandbox_id)
            .map(|s| s.status.clone())
            .ok_or_else(|| not_found("sandbox", sandbox_id))
    }
    async fn list_pod_sandboxes(&self, filter: &PodSandboxFilter) -> Result<Vec<PodSandboxStatus>> {
        Ok(self
            .inner
            .lock()
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
        containers::create(self, sandbox_id, config).await
    }
    async fn start_container(&self, container_id: &str) -> Result<()> {
        containers::start(self, container_id).await
    }
    async fn stop_container(&self, container_id: &str, grace: Duration) -> Result<()> {
        containers::stop(self, container_id, grace).await
    }
    async fn remove_container(&self, container_id: &str) -> Result<()> {
        containers::remove(self, container_id).await
    }
    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus> {
        self.inner
            .lock()
            .containers
            .get(container_id)
            .map(|c| c.status.clone())
            .ok_or_else(|| not_found("container", container_id))
    }
    async fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<ContainerStatus>> {
        let st = self.inner.lock();
        Ok(filter.select(&st.containers, &st.by_pod, None, |c| &c.status))
    }
    fn container_events(&self) -> broadcast::Receiver<ContainerEvent> {
        self.events.subscribe()
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecResult> {
        exec::exec_sync(self, container_id, cmd, timeout).await
    }
    async fn exec(&self, container_id: &str, request: ExecRequest) -> Result<ExecSession> {
        exec::exec(self, container_id, request).await
    }
    async fn attach(&self, container_id: &str, request: AttachRequest) -> Result<ExecSession> {
        attach::attach(self, container_id, request).await
    }
    async fn port_forward(
        &self,
        sandbox_id: &str,
        port: u16,
    ) -> Result<Box<dyn PortForwardStream>> {
        port_forward::connect(self, sandbox_id, port).await
    }
    async fn logs(&self, container_id: &str, options: &LogOptions) -> Result<LogStream> {
        let (path, version) = {
            let st = self.inner.lock();
            let c = st
                .containers
                .get(container_id)
                .ok_or_else(|| not_found("container", container_id))?;
            (c.log_file.clone(), c.version.subscribe())
        };
        let (inner, id) = (self.inner.clone(), container_id.to_string());
        let writing = Box::new(move || {
            inner.lock().containers.get(&id).is_some_and(|c| {
                matches!(
                    c.status.state,
                    ContainerState::Created | ContainerState::Running { .. }
                )
            })
        });
        crate::process::logs::follow_file(container_id, path, version, writing, options).await
    }
    async fn probe(&self, container_id: &str, request: &ProbeRequest) -> ProbeResult {
        probes::run(self, container_id, request).await
    }
    async fn container_stats(&self, container_id: &str) -> Result<ContainerStats> {
        stats::container_stats(self, container_id).await
    }

    async fn pull_image(&self, image: &str) -> Result<Image> {
        registry::pull(self, image, &PullAuth::anonymous()).await
    }
    async fn pull_image_with(&self, image: &str, auth: &PullAuth) -> Result<Image> {
        registry::pull(self, image, auth).await
    }
    async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        images::status(self, image).await
    }
    async fn list_images(&self) -> Result<Vec<Image>> {
        images::list(self).await
    }
    async fn remove_image(&self, image: &str) -> Result<()> {
        images::remove(self, image).await
    }
    async fn import_image(&self, tarball: Bytes) -> Result<Vec<Image>> {
        images::import(self, tarball).await
    }

    async fn detach(&self) -> Result<()> {
        recovery::detach(self)
    }

    async fn shutdown(&self) -> Result<()> {
        // A cluster that shuts down takes what it started with it rather than leaving it
        // running unowned; `detach` is the way to leave it for a later runtime.
        let ids: Vec<String> = self.inner.lock().sandboxes.keys().cloned().collect();
        for id in &ids {
            sandboxes::remove(self, id).await?;
        }
        Ok(())
    }
}
