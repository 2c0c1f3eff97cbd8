//! [`FakeRuntime`]: an in-memory [`Runtime`](crate::Runtime) whose containers run no
//! process. Tests script what each container does ([`ContainerScript`]) and read back what
//! the node agent asked for.
//!
//! Containers "run" instantly (or after configured [`Latencies`]); scripted exits use
//! `tokio::time`, so under a paused tokio clock a 5-minute run passes at once.

mod attach;
mod exec;
mod logs;
mod port;
mod script;
mod service;
mod usage;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use kybernetes_core::Clock;
use tokio::sync::{broadcast, watch};

use crate::container::{
    ContainerConfig, ContainerEvent, ContainerEventKind, ContainerState, ContainerStatus,
};
use crate::image::{Image, normalize_reference};
use crate::index::IdIndex;
use crate::labels;
use crate::probe::ProbeKind;
use crate::sandbox::{PodSandboxConfig, PodSandboxStatus};
use crate::stream::{LogLine, LogStreamKind};

pub use port::PortResponder;
pub use script::{ContainerScript, ProbeScript, PullFailure};

/// A signal the fake delivered to a container on `stop_container`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    /// SIGTERM, at the start of a stop.
    Term,
    /// SIGKILL, when the grace period ran out.
    Kill,
}

/// How long the fake's calls take (all zero by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latencies {
    /// `run_pod_sandbox`.
    pub run_sandbox: Duration,
    /// `pull_image`.
    pub pull: Duration,
    /// `create_container`.
    pub create: Duration,
    /// `start_container`.
    pub start: Duration,
}

/// A call to `exec_sync`, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecCall {
    /// The container.
    pub container_id: String,
    /// The command.
    pub cmd: Vec<String>,
}

/// An in-memory container runtime for tests. Cheap to clone: clones share state, so a test
/// keeps one handle while node agents use others.
///
/// Streams work as a small container would: an interactive exec runs the command's scripted
/// result ([`ContainerScript::on_exec`]) or one of a few built-ins (`echo`, `cat` echoing
/// stdin, `env`, `printenv`, `hostname`, `sleep`, `true`, `false`, `sh -c 'A; B && C'` and
/// an `sh` reading commands from stdin; any other command exits 0); an attach sees what the
/// container writes from then on and, with [`ContainerScript::echo_stdin`], echoes its stdin;
/// port-forward reaches the ports scripted with [`ContainerScript::serve_port`] and is refused
/// elsewhere.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), kybernetes_runtime::Error> {
/// use kybernetes_runtime::{Runtime, FakeRuntime, PodSandboxConfig, ContainerConfig, ContainerMetadata};
/// let fake = FakeRuntime::default();
/// let sandbox = PodSandboxConfig::default();
/// let sid = fake.run_pod_sandbox(&sandbox).await?;
/// let config = ContainerConfig {
///     metadata: ContainerMetadata { name: "web".into(), attempt: 0 },
///     image: "nginx".into(),
///     env: vec![("GREETING".into(), "hello".into())],
///     ..Default::default()
/// };
/// fake.pull_image("nginx").await?;
/// let id = fake.create_container(&sid, &config, &sandbox).await?;
/// fake.start_container(&id).await?;
/// assert!(fake.container_status(&id).await?.state.is_running());
/// assert_eq!(fake.created_containers()[0].env_value("GREETING"), Some("hello"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FakeRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.lock();
        f.debug_struct("FakeRuntime")
            .field("sandboxes", &st.sandboxes.len())
            .field("containers", &st.containers.len())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) clock: Clock,
    pub(crate) state: Mutex<State>,
    pub(crate) events: broadcast::Sender<ContainerEvent>,
    /// The same events split by the node label of the container's sandbox, created when an
    /// agent first subscribes for its node.
    pub(crate) node_events: Mutex<HashMap<String, broadcast::Sender<ContainerEvent>>>,
}

impl Inner {
    /// Locks the state. A panic while holding the lock leaves the state usable, so poisoning
    /// is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) next_id: u64,
    pub(crate) latencies: Latencies,
    pub(crate) sandboxes: BTreeMap<String, FakeSandbox>,
    pub(crate) containers: BTreeMap<String, FakeContainer>,
    pub(crate) images: Vec<Image>,
    pub(crate) scripts_by_name: HashMap<String, ContainerScript>,
    pub(crate) scripts_by_image: HashMap<String, ContainerScript>,
    pub(crate) pull_failures: HashMap<String, PullFailure>,
    pub(crate) created: Vec<ContainerConfig>,
    pub(crate) imports: Vec<Bytes>,
    pub(crate) pulls: Vec<String>,
    pub(crate) exec_calls: Vec<ExecCall>,
    /// Signals and logs of removed containers, so tests can still read them.
    pub(crate) removed: HashMap<String, (Vec<Signal>, Vec<LogLine>)>,
    /// Container ids by their pod UID label, so listing a pod's containers stays cheap with
    /// thousands of pods.
    pub(crate) by_pod: IdIndex,
    /// Container ids by sandbox, so stopping a sandbox costs its own containers.
    pub(crate) containers_by_sandbox: IdIndex,
    /// Sandbox ids by their pod UID label and by their node name label: one `FakeRuntime`
    /// serves every node agent of an in-process cluster, and each agent lists its own.
    pub(crate) sandboxes_by_pod: IdIndex,
    pub(crate) sandboxes_by_node: IdIndex,
}

impl State {
    pub(crate) fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:012x}", self.next_id)
    }

    pub(crate) fn script_for(&self, config: &ContainerConfig) -> ContainerScript {
        self.scripts_by_name
            .get(&config.metadata.name)
            .or_else(|| self.scripts_by_image.get(&config.image))
            .or_else(|| {
                self.scripts_by_image
                    .get(&normalize_reference(&config.image))
            })
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn find_image(&self, name: &str) -> Option<&Image> {
        self.images.iter().find(|i| i.answers_to(name))
    }
}

pub(crate) struct FakeSandbox {
    pub(crate) status: PodSandboxStatus,
    pub(crate) config: PodSandboxConfig,
}

pub(crate) struct FakeContainer {
    pub(crate) status: ContainerStatus,
    pub(crate) config: ContainerConfig,
    pub(crate) pod_uid: String,
    /// The node label of its sandbox, which picks the per-node event channel.
    pub(crate) node: Option<String>,
    pub(crate) script: ContainerScript,
    /// When it started, in tokio time (for scripted delays and CPU time).
    pub(crate) started: Option<tokio::time::Instant>,
    pub(crate) signals: Vec<Signal>,
    pub(crate) logs: Vec<LogLine>,
    /// Bumped on every new log line and on exit, for log followers.
    pub(crate) log_version: watch::Sender<u64>,
    pub(crate) probe_calls: HashMap<ProbeKind, usize>,
}

impl FakeContainer {
    pub(crate) fn push_log(&mut self, line: LogLine) {
        self.logs.push(line);
        self.log_version.send_modify(|v| *v += 1);
    }
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new(Clock::new())
    }
}

impl FakeRuntime {
    /// A fake runtime reading wall time from `clock` (pass the cluster's clock).
    pub fn new(clock: Clock) -> Self {
        let (events, _) = broadcast::channel(16 * 1024);
        FakeRuntime {
            inner: Arc::new(Inner {
                clock,
                state: Mutex::new(State::default()),
                events,
                node_events: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Sets how long calls take.
    pub fn set_latencies(&self, latencies: Latencies) {
        self.inner.lock().latencies = latencies;
    }

    /// Scripts every container named `name` (the name in the pod spec). Takes precedence
    /// over [`script_image`](Self::script_image).
    pub fn script_container(&self, name: impl Into<String>, script: ContainerScript) {
        self.inner
            .lock()
            .scripts_by_name
            .insert(name.into(), script);
    }

    /// Scripts every container created from `image` (as written in the pod spec).
    pub fn script_image(&self, image: impl Into<String>, script: ContainerScript) {
        self.inner
            .lock()
            .scripts_by_image
            .insert(image.into(), script);
    }

    /// Makes pulls of `image` fail.
    pub fn fail_image_pull(&self, image: impl Into<String>, failure: PullFailure) {
        self.inner
            .lock()
            .pull_failures
            .insert(image.into(), failure);
    }

    /// Lets pulls of `image` succeed again.
    pub fn allow_image_pull(&self, image: &str) {
        self.inner.lock().pull_failures.remove(image);
    }

    /// Makes `image` present without a pull.
    pub fn preload_image(&self, image: &str) {
        let mut st = self.inner.lock();
        if st.find_image(image).is_none() {
            st.images.push(fake_image(image));
        }
    }

    /// Every `ContainerConfig` given to `create_container`, in order.
    pub fn created_containers(&self) -> Vec<ContainerConfig> {
        self.inner.lock().created.clone()
    }

    /// The config a container was created with.
    pub fn container_config(&self, container_id: &str) -> Option<ContainerConfig> {
        self.inner
            .lock()
            .containers
            .get(container_id)
            .map(|c| c.config.clone())
    }

    /// Every container present, oldest first.
    pub fn containers(&self) -> Vec<ContainerStatus> {
        let st = self.inner.lock();
        let mut v: Vec<_> = st.containers.values().map(|c| c.status.clone()).collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        v
    }

    /// The containers of pod `namespace/pod`, oldest first.
    pub fn pod_containers(&self, namespace: &str, pod: &str) -> Vec<ContainerStatus> {
        self.containers()
            .into_iter()
            .filter(|c| {
                c.labels.get(labels::POD_NAMESPACE).map(String::as_str) == Some(namespace)
                    && c.labels.get(labels::POD_NAME).map(String::as_str) == Some(pod)
            })
            .collect()
    }

    /// The newest container named `container` of pod `namespace/pod`.
    pub fn latest_container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Option<ContainerStatus> {
        self.pod_containers(namespace, pod)
            .into_iter()
            .rev()
            .find(|c| c.metadata.name == container)
    }

    /// Every sandbox present.
    pub fn sandboxes(&self) -> Vec<PodSandboxStatus> {
        self.inner
            .lock()
            .sandboxes
            .values()
            .map(|s| s.status.clone())
            .collect()
    }

    /// What the node agent asked for when it ran each sandbox present, by sandbox id.
    pub fn sandbox_configs(&self) -> Vec<(String, PodSandboxConfig)> {
        self.inner
            .lock()
            .sandboxes
            .iter()
            .map(|(id, s)| (id.clone(), s.config.clone()))
            .collect()
    }

    /// The signals `stop_container` delivered to a container, in order.
    pub fn signals(&self, container_id: &str) -> Vec<Signal> {
        let st = self.inner.lock();
        match st.containers.get(container_id) {
            Some(c) => c.signals.clone(),
            None => st
                .removed
                .get(container_id)
                .map(|r| r.0.clone())
                .unwrap_or_default(),
        }
    }

    /// Writes a line to a container's stdout log. Unknown containers are ignored.
    pub fn write_log(&self, container_id: &str, line: impl Into<String>) {
        self.write_log_to(container_id, LogStreamKind::Stdout, line);
    }

    /// Writes a line to a container's stdout or stderr log.
    pub fn write_log_to(&self, container_id: &str, stream: LogStreamKind, line: impl Into<String>) {
        let time = self.inner.clock.now();
        if let Some(c) = self.inner.lock().containers.get_mut(container_id) {
            c.push_log(LogLine {
                time,
                stream,
                line: line.into(),
            });
        }
    }

    /// Every log line of a container so far (removed containers included).
    pub fn log_lines(&self, container_id: &str) -> Vec<LogLine> {
        let st = self.inner.lock();
        match st.containers.get(container_id) {
            Some(c) => c.logs.clone(),
            None => st
                .removed
                .get(container_id)
                .map(|r| r.1.clone())
                .unwrap_or_default(),
        }
    }

    /// Makes a running container exit now with `code` (an unscripted crash or finish).
    pub fn exit_container(&self, container_id: &str, code: i32) {
        service::exit_container(&self.inner, container_id, code, None);
    }

    /// Every tarball given to `import_image`.
    pub fn imported_images(&self) -> Vec<Bytes> {
        self.inner.lock().imports.clone()
    }

    /// Every image `pull_image` was asked for, in order (failed pulls included).
    pub fn pulled_images(&self) -> Vec<String> {
        self.inner.lock().pulls.clone()
    }

    /// Every `exec_sync` call (exec probes and hooks included), in order.
    pub fn exec_calls(&self) -> Vec<ExecCall> {
        self.inner.lock().exec_calls.clone()
    }

    /// How many probes of `kind` ran against a container.
    pub fn probe_count(&self, container_id: &str, kind: ProbeKind) -> usize {
        self.inner
            .lock()
            .containers
            .get(container_id)
            .and_then(|c| c.probe_calls.get(&kind).copied())
            .unwrap_or(0)
    }

    pub(crate) fn emit(&self, c: &FakeContainer, kind: ContainerEventKind) {
        emit(&self.inner, c, kind);
    }
}

pub(crate) fn emit(inner: &Inner, c: &FakeContainer, kind: ContainerEventKind) {
    let event = ContainerEvent {
        container_id: c.status.id.clone(),
        sandbox_id: c.status.sandbox_id.clone(),
        pod_uid: c.pod_uid.clone(),
        kind,
        time: inner.clock.now(),
    };
    if let Some(node) = &c.node {
        let channels = inner.node_events.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = channels.get(node) {
            // No receiver is fine: the agent of that node has not subscribed yet or has gone.
            let _ = tx.send(event.clone());
        }
    }
    // Nobody listening to every node is fine too; most clusters only have per-node agents.
    let _ = inner.events.send(event);
}

/// Events buffered per node before a slow agent lags and re-lists: small, because every
/// node of a large in-process cluster holds one buffer.
const NODE_EVENTS_CAPACITY: usize = 128;

/// A receiver of the events of `node`'s containers.
pub(crate) fn subscribe_node(inner: &Inner, node: &str) -> broadcast::Receiver<ContainerEvent> {
    let mut channels = inner.node_events.lock().unwrap_or_else(|p| p.into_inner());
    channels
        .entry(node.to_string())
        .or_insert_with(|| broadcast::channel(NODE_EVENTS_CAPACITY).0)
        .subscribe()
}

/// Marks a container exited and wakes its log followers.
pub(crate) fn mark_exited(
    inner: &Inner,
    c: &mut FakeContainer,
    exit_code: i32,
    reason: Option<&str>,
) {
    let started_at = match &c.status.state {
        ContainerState::Running { started_at } => Some(*started_at),
        _ => None,
    };
    let reason = reason
        .map(str::to_string)
        .unwrap_or_else(|| if exit_code == 0 { "Completed" } else { "Error" }.into());
    c.status.state = ContainerState::Exited {
        exit_code,
        reason,
        message: String::new(),
        started_at,
        finished_at: inner.clock.now(),
    };
    c.log_version.send_modify(|v| *v += 1);
    emit(inner, c, ContainerEventKind::Stopped);
}

/// A stable fake image for `name`, its id derived from the name.
pub(crate) fn fake_image(name: &str) -> Image {
    crate::image::synthetic_image(name)
}
