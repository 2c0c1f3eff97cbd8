//! [`ProcessRuntime`]: a daemonless [`Runtime`](crate::Runtime) whose containers are local
//! processes.
//!
//! In **host** mode ([`ProcessRuntime::host`]) it works unprivileged and every pod shares the
//! host's network, filesystem and users:
//!
//! - a container runs its `command` + `args` (or what its image maps to, see
//!   [`ImageCommand`]) in its own process group, with only the container's environment (plus
//!   `PATH` and `HOSTNAME`) and its `workingDir` (default: a directory per pod under the
//!   runtime's root);
//! - stdout and stderr go to one log file per container instance, in the CRI log format, kept
//!   until the container is removed, so `previous` logs work;
//! - stopping sends SIGTERM to the main process, waits out the grace period, then SIGKILL
//!   to the group; a container whose main process exits has the rest of its group killed,
//!   as a container's processes die with its init;
//! - `exec` runs a command in the container's process group with its environment and
//!   working directory; `port_forward` connects to `127.0.0.1:port`; `httpGet` and
//!   `tcpSocket` probes aimed at the pod's IP go to `127.0.0.1`;
//! - a pod that declares a port another pod on this runtime already declared is refused
//!   (in the host network every `containerPort` is a host port);
//! - volumes are not mounted (host mode sees the host's filesystem).
//!
//! [`Runtime::shutdown`](crate::Runtime::shutdown), which the cluster calls when it stops,
//! kills every process the runtime started; dropping the tokio runtime that runs it does too.
//!
//! In **isolated** mode ([`ProcessRuntime::isolated`], root only) each container runs under
//! `runc` instead: its own mount, pid, ipc and uts namespaces, the pod's network namespace
//! (the `Network`'s, or a fresh one with `lo` up), its resources as cgroup limits (a memory
//! limit OOM-kills, and the status says `OOMKilled`), volumes bind-mounted, and as root
//! filesystem either an image unpacked from an OCI archive
//! ([`ProcessRuntimeBuilder::image_archive`], `import_image`) or the host's, read-only.
//! Logs, restarts, exec (`runc exec`), attach and probes work as in host mode; shutdown
//! removes every runc container, mount, cgroup and namespace it made. `docs/runtimes.md`
//! has the details.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> kybernetes_runtime::Result<()> {
//! use futures::StreamExt;
//! use kybernetes_runtime::process::{ImageCommand, ProcessRuntime};
//! use kybernetes_runtime::*;
//!
//! let runtime = ProcessRuntime::builder()
//!     // `image: shell` runs its command through `sh -c`.
//!     .image("shell", ImageCommand::prefix(["/bin/sh", "-c"]))
//!     .build();
//! let sandbox = PodSandboxConfig { hostname: "demo".into(), ..Default::default() };
//! let sid = runtime.run_pod_sandbox(&sandbox).await?;
//! runtime.pull_image("shell").await?;
//! let config = ContainerConfig {
//!     metadata: ContainerMetadata { name: "hello".into(), attempt: 0 },
//!     image: "shell".into(),
//!     command: vec!["echo hello from $HOSTNAME".into()],
//!     ..Default::default()
//! };
//! let id = runtime.create_container(&sid, &config, &sandbox).await?;
//! let mut events = runtime.container_events();
//! runtime.start_container(&id).await?;
//! while let Ok(e) = events.recv().await {
//!     if e.kind == ContainerEventKind::Stopped { break; }
//! }
//! assert_eq!(runtime.container_status(&id).await?.state.exit_code(), Some(0));
//! let lines: Vec<LogLine> = runtime.logs(&id, &LogOptions::default()).await?.collect().await;
//! assert_eq!(lines[0].line, "hello from demo");
//! runtime.shutdown().await?;
//! # Ok(()) }
//! ```

mod attach;
mod exec;
pub(crate) mod isolated;
pub(crate) mod logs;
pub(crate) mod service;
pub(crate) mod spawn;
mod stats;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use kybernetes_core::Clock;
use tokio::sync::{broadcast, watch};

use crate::Error;
use crate::container::{ContainerConfig, ContainerEvent, ContainerEventKind, ContainerStatus};
use crate::image::{Image, normalize_reference};
use crate::sandbox::{PodSandboxConfig, PodSandboxStatus};

/// What an image runs, for images mapped with [`ProcessRuntimeBuilder::image`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageCommand {
    /// Docker's `ENTRYPOINT` and `CMD`: the container's `command` replaces the entrypoint
    /// (and drops the default args), its `args` replace the default args.
    Entrypoint {
        /// The image's entrypoint.
        entrypoint: Vec<String>,
        /// The image's default arguments.
        cmd: Vec<String>,
    },
    /// Put before the container's `command` + `args`, for multi-call binaries: with
    /// `prefix(["/bin/busybox"])`, `command: [sh, -c, …]` runs `/bin/busybox sh -c …`.
    Prefix(Vec<String>),
}

impl ImageCommand {
    /// An image whose entrypoint is `entrypoint`, with no default arguments.
    pub fn entrypoint<S: Into<String>>(entrypoint: impl IntoIterator<Item = S>) -> Self {
        ImageCommand::Entrypoint {
            entrypoint: entrypoint.into_iter().map(Into::into).collect(),
            cmd: Vec::new(),
        }
    }

    /// An image whose `command` + `args` run after `prefix`.
    pub fn prefix<S: Into<String>>(prefix: impl IntoIterator<Item = S>) -> Self {
        ImageCommand::Prefix(prefix.into_iter().map(Into::into).collect())
    }

    /// The argv of a container from this image.
    pub(crate) fn argv(&self, command: &[String], args: &[String]) -> Vec<String> {
        match self {
            ImageCommand::Entrypoint { entrypoint, cmd } => {
                let (head, default_args) = if command.is_empty() {
                    (entrypoint.as_slice(), cmd.as_slice())
                } else {
                    (command, &[][..])
                };
                let tail = if args.is_empty() { default_args } else { args };
                head.iter().chain(tail).cloned().collect()
            }
            ImageCommand::Prefix(prefix) => {
                prefix.iter().chain(command).chain(args).cloned().collect()
            }
        }
    }
}

/// Builds a [`ProcessRuntime`].
#[derive(Debug, Default)]
#[must_use]
pub struct ProcessRuntimeBuilder {
    root: Option<PathBuf>,
    images: HashMap<String, ImageCommand>,
    clock: Option<Clock>,
    isolated: bool,
    runc: Option<PathBuf>,
    archives: Vec<PathBuf>,
}

impl ProcessRuntimeBuilder {
    /// Where logs and the pods' working directories go (created if missing, kept on
    /// shutdown). Default: a fresh directory under the system temp dir, removed on shutdown.
    pub fn root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.root = Some(dir.into());
        self
    }

    /// What containers of `image` run (the reference as written in the pod spec, or its
    /// normalized form `docker.io/library/…:latest`). Unmapped images run the container's
    /// `command` + `args` as given.
    pub fn image(mut self, image: impl Into<String>, command: ImageCommand) -> Self {
        self.images.insert(image.into(), command);
        self
    }

    /// Isolated mode (needs root): every container runs under `runc` in its own mount, pid,
    /// ipc and uts namespaces and its pod's network namespace, with cgroup limits; see
    /// [`ProcessRuntime::isolated`].
    pub fn isolated(mut self) -> Self {
        self.isolated = true;
        self
    }

    /// The runc binary isolated mode runs (default: `runc` on `PATH`).
    pub fn runc(mut self, path: impl Into<PathBuf>) -> Self {
        self.runc = Some(path.into());
        self
    }

    /// An OCI archive (an image layout in a tarball, as `skopeo copy … oci-archive:` or
    /// `docker save` of a recent Docker writes) whose images isolated mode runs with their
    /// own root filesystem. It is read and unpacked on the first image pull; `import_image`
    /// adds archives at run time.
    pub fn image_archive(mut self, path: impl Into<PathBuf>) -> Self {
        self.archives.push(path.into());
        self
    }

    /// The clock wall times come from (default: a new [`Clock`]; the cluster's own is
    /// better, so times agree with the API objects).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The runtime. The root directory is created when the first pod runs. Must be called
    /// inside a tokio runtime unless a clock was given.
    pub fn build(self) -> ProcessRuntime {
        static NEXT_ROOT: AtomicU64 = AtomicU64::new(0);
        let (root, owns_root) = match self.root {
            Some(r) => (r, false),
            None => {
                let n = NEXT_ROOT.fetch_add(1, Ordering::Relaxed);
                let dir = std::env::temp_dir()
                    .join(format!("kybernetes-processes-{}-{n}", std::process::id()));
                (dir, true)
            }
        };
        let (events, _) = broadcast::channel(16 * 1024);
        let isolation = self.isolated.then(|| {
            let runc = self
                .runc
                .unwrap_or_else(|| PathBuf::from(isolated::DEFAULT_RUNC));
            isolated::Isolation::new(&root, runc, self.archives)
        });
        ProcessRuntime {
            inner: Arc::new(Inner {
                clock: self.clock.unwrap_or_default(),
                isolation,
                root,
                owns_root,
                images: self.images,
                state: Mutex::new(State::default()),
                events,
                warned_mounts: AtomicBool::new(false),
            }),
        }
    }
}

/// A container runtime of local processes, with no daemon (see the [module docs](self)).
/// Cheap to clone: clones share the processes, so keep one handle (for
/// [`container_pid`](Self::container_pid)) and give another to the cluster.
#[derive(Clone)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ProcessRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRuntime")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

impl ProcessRuntime {
    /// Host mode with the defaults: unprivileged, the host network, a temp root, no image
    /// mappings. Must be called inside a tokio runtime (it creates a [`Clock`]).
    pub fn host() -> Self {
        Self::builder().build()
    }

    /// A builder with options (root directory, image mappings, clock, isolated mode).
    pub fn builder() -> ProcessRuntimeBuilder {
        ProcessRuntimeBuilder::default()
    }

    /// Isolated mode with the defaults (needs root): `runc` from `PATH`, a temp root, no
    /// image mappings or archives. See the [module docs](self). Must be called inside a
    /// tokio runtime (it creates a [`Clock`]).
    pub fn isolated() -> Self {
        Self::builder().isolated().build()
    }

    /// Whether this runtime runs its containers in isolated mode.
    pub fn is_isolated(&self) -> bool {
        self.inner.isolation.is_some()
    }

    /// In isolated mode, runc's state directory (`runc --root <it> list` lists the
    /// containers) and the cgroup every container's cgroup is under (relative to each
    /// hierarchy's root).
    pub fn isolation_paths(&self) -> Option<(&Path, &str)> {
        let iso = self.inner.isolation.as_ref()?;
        Some((iso.state_dir(), iso.cgroup_parent()))
    }

    /// The root directory (logs under `pods/`).
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The process id of a running container's main process (its process group id).
    pub fn container_pid(&self, container_id: &str) -> Option<u32> {
        let id = container_id
            .strip_prefix(RUNTIME_NAME)
            .and_then(|s| s.strip_prefix("://"))
            .unwrap_or(container_id);
        let st = self.inner.lock();
        let c = st.containers.get(id)?;
        if c.status.state.is_running() {
            c.pid
        } else {
            None
        }
    }

    /// The pids of every container process this runtime started that still runs.
    pub fn running_pids(&self) -> Vec<u32> {
        let st = self.inner.lock();
        st.containers
            .values()
            .filter(|c| c.status.state.is_running())
            .filter_map(|c| c.pid)
            .collect()
    }
}

/// The runtime's name: container ids read `process://<id>`.
pub(crate) const RUNTIME_NAME: &str = "process";

pub(crate) struct Inner {
    pub(crate) clock: Clock,
    pub(crate) root: PathBuf,
    owns_root: bool,
    images: HashMap<String, ImageCommand>,
    /// Isolated mode's state; `None` in host mode.
    pub(crate) isolation: Option<isolated::Isolation>,
    pub(crate) state: Mutex<State>,
    pub(crate) events: broadcast::Sender<ContainerEvent>,
    warned_mounts: AtomicBool,
}

impl Inner {
    /// Locks the state. A panic while holding the lock leaves the state usable, so poisoning
    /// is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The builder's mapping of `image`, if any.
    pub(crate) fn mapping(&self, image: &str) -> Option<&ImageCommand> {
        self.images
            .get(image)
            .or_else(|| self.images.get(&normalize_reference(image)))
    }

    /// The argv of a container: its image's mapping applied to `command` + `args`.
    pub(crate) fn argv(&self, config: &ContainerConfig) -> Vec<String> {
        match self.mapping(&config.image) {
            Some(m) => m.argv(&config.command, &config.args),
            None => config.command.iter().chain(&config.args).cloned().collect(),
        }
    }

    /// Logs once that host mode does not mount volumes.
    pub(crate) fn note_mounts(&self, config: &ContainerConfig) {
        if !config.mounts.is_empty() && !self.warned_mounts.swap(true, Ordering::Relaxed) {
            tracing::debug!(
                container = %config.metadata.name,
                "process runtime host mode does not mount volumes; containers see the host filesystem"
            );
        }
    }

    pub(crate) fn emit(&self, c: &ProcessContainer, kind: ContainerEventKind) {
        // No subscriber yet (no node agent) is fine: events are hints, state is listed.
        let _ = self.events.send(ContainerEvent {
            container_id: c.status.id.clone(),
            sandbox_id: c.status.sandbox_id.clone(),
            pod_uid: c.pod_uid.clone(),
            kind,
            time: self.clock.now(),
        });
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        for c in st.containers.values() {
            if c.status.state.is_running()
                && let Some(pid) = c.pid
            {
                spawn::kill_group(pid, rustix::process::Signal::KILL);
            }
        }
        if let Some(iso) = &self.isolation {
            // The runtime went without a shutdown: undo what isolated mode set up, in the
            // order shutdown does.
            for (id, c) in &st.containers {
                if let Some(bundle) = &c.bundle {
                    iso.delete_blocking(id);
                    isolated::bundle::remove(bundle);
                }
            }
            for sb in st.sandboxes.values() {
                if let (Some(netns), true) = (&sb.netns, sb.owns_netns) {
                    iso.remove_netns(netns);
                }
            }
            iso.teardown();
            if !isolated::bundle::mounts_under(&self.root).is_empty() {
                tracing::warn!(root = %self.root.display(), "mounts remain under the process runtime's root; keeping it");
                return;
            }
        }
        if self.owns_root
            && let Err(e) = std::fs::remove_dir_all(&self.root)
        {
            tracing::debug!(root = %self.root.display(), error = %e, "could not remove the process runtime's root");
        }
    }
}

#[derive(Default)]
pub(crate) struct State {
    next_id: u64,
    pub(crate) sandboxes: BTreeMap<String, ProcessSandbox>,
    pub(crate) containers: BTreeMap<String, ProcessContainer>,
    pub(crate) images: Vec<Image>,
    /// Container ids by pod UID, so listing a pod's containers stays cheap.
    pub(crate) by_pod: crate::index::IdIndex,
}

impl State {
    pub(crate) fn new_id(&mut self) -> String {
        self.next_id += 1;
        // Unique across runtimes in one process too, since ids end up in file names.
        format!("{:08x}{:08x}", std::process::id(), self.next_id)
    }

    pub(crate) fn find_image(&self, name: &str) -> Option<&Image> {
        self.images.iter().find(|i| i.answers_to(name))
    }
}

pub(crate) struct ProcessSandbox {
    pub(crate) status: PodSandboxStatus,
    pub(crate) config: PodSandboxConfig,
    /// The pod's directory: its logs and the default working directory.
    pub(crate) dir: PathBuf,
    /// The pod's network namespace (None: the host's).
    pub(crate) netns: Option<PathBuf>,
    /// Whether this runtime made `netns` (isolated mode, for a `Network` that gave none).
    pub(crate) owns_netns: bool,
}

pub(crate) struct ProcessContainer {
    pub(crate) status: ContainerStatus,
    pub(crate) pod_uid: String,
    pub(crate) argv: Vec<String>,
    /// The environment it runs with (`PATH`, `HOSTNAME`, then the container's).
    pub(crate) env: Vec<(String, String)>,
    pub(crate) working_dir: PathBuf,
    pub(crate) log_file: PathBuf,
    /// The pod's network namespace, which the process starts in (None: the host's).
    pub(crate) netns: Option<PathBuf>,
    /// The main process (and process group) id while it runs.
    pub(crate) pid: Option<u32>,
    /// Bumped on every log line and on exit, for log followers and stoppers.
    pub(crate) version: Arc<watch::Sender<u64>>,
    /// The last CPU sample, for the CPU rate.
    pub(crate) cpu_rate: crate::stream::CpuRate,
    /// Whether the spec keeps stdin open (`stdin: true`), so the process gets a pipe.
    pub(crate) open_stdin: bool,
    /// Close stdin when the first attach that fed it detaches (`stdinOnce`).
    pub(crate) stdin_once: bool,
    /// The running process's stdin, for attach.
    pub(crate) stdin: Option<attach::StdinPipe>,
    /// The uid and gid it runs as (`runAsUser`, `runAsGroup`); None: the agent's own.
    pub(crate) user: Option<(u32, u32)>,
    /// Its OCI bundle in isolated mode (the main process is then `runc run`).
    pub(crate) bundle: Option<isolated::Bundle>,
}

pub(crate) fn not_found(kind: &'static str, id: &str) -> Error {
    Error::NotFound {
        kind,
        id: id.to_string(),
    }
}

pub(crate) fn backend_io(context: String, e: std::io::Error) -> Error {
    Error::Backend {
        context,
        source: Some(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn entrypoint_mapping_follows_docker_command_and_args_rules() {
        let m = ImageCommand::Entrypoint {
            entrypoint: v(&["/srv/app"]),
            cmd: v(&["--port", "80"]),
        };
        assert_eq!(m.argv(&[], &[]), v(&["/srv/app", "--port", "80"]));
        assert_eq!(m.argv(&[], &v(&["-v"])), v(&["/srv/app", "-v"]));
        assert_eq!(m.argv(&v(&["/bin/sh"]), &[]), v(&["/bin/sh"]));
        assert_eq!(
            m.argv(&v(&["/bin/sh"]), &v(&["-c", "x"])),
            v(&["/bin/sh", "-c", "x"])
        );
    }

    #[test]
    fn prefix_mapping_goes_before_command_and_args() {
        let m = ImageCommand::prefix(["/bin/busybox"]);
        assert_eq!(
            m.argv(&v(&["httpd"]), &v(&["-f"])),
            v(&["/bin/busybox", "httpd", "-f"])
        );
    }
}
