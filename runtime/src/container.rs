//! Containers: what the node agent asks for ([`ContainerConfig`]), what the runtime reports
//! ([`ContainerStatus`], [`ContainerState`]) and the lifecycle events it pushes
//! ([`ContainerEvent`], as CRI's `GetContainerEvents`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

/// Identifies a container within its sandbox (CRI `ContainerMetadata`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerMetadata {
    /// The container's name in the pod spec.
    pub name: String,
    /// How many times this container was restarted before (the pod's `restartCount`).
    pub attempt: u32,
}

/// A bind mount into the container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mount {
    /// Where it appears inside the container.
    pub container_path: PathBuf,
    /// What is mounted, on the host.
    pub host_path: PathBuf,
    /// Mounted read-only.
    pub readonly: bool,
}

/// Resource requests and limits, in Kubernetes units. A backend derives its cgroup settings
/// (shares, quota, memory limit) from these.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerResources {
    /// CPU request, in millicores.
    pub cpu_request_millis: Option<u64>,
    /// CPU limit, in millicores.
    pub cpu_limit_millis: Option<u64>,
    /// Memory request, in bytes.
    pub memory_request_bytes: Option<u64>,
    /// Memory limit, in bytes.
    pub memory_limit_bytes: Option<u64>,
}

/// What the node agent asks for when it creates a container (CRI `ContainerConfig`).
///
/// Everything here is already resolved: `env` holds the final key/values (ConfigMap and
/// Secret references and `$(VAR)` expansion are the node agent's job), and `command`/`args`
/// are expanded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerConfig {
    /// Name and attempt.
    pub metadata: ContainerMetadata,
    /// Image reference, e.g. `nginx:1.27`.
    pub image: String,
    /// Entrypoint override (`command`); empty means the image's.
    pub command: Vec<String>,
    /// Arguments (`args`); empty means the image's.
    pub args: Vec<String>,
    /// Working directory, if set.
    pub working_dir: Option<String>,
    /// Environment, in order.
    pub env: Vec<(String, String)>,
    /// Bind mounts.
    pub mounts: Vec<Mount>,
    /// Resource requests and limits.
    pub resources: ContainerResources,
    /// Allocate a terminal.
    pub tty: bool,
    /// Keep stdin open.
    pub stdin: bool,
    /// Close stdin after the first attach detaches.
    pub stdin_once: bool,
    /// Labels (the `io.kubernetes.*` labels, see [`crate::labels`]).
    pub labels: BTreeMap<String, String>,
    /// Annotations (restart count, spec hash, …).
    pub annotations: BTreeMap<String, String>,
    /// Log file path, relative to the sandbox's log directory (`<name>/<attempt>.log`).
    pub log_path: PathBuf,
    /// User, groups, capabilities and root filesystem rules.
    pub security: crate::security::ContainerSecurity,
}

impl ContainerConfig {
    /// The value of an environment variable, if set (the last one wins, as in a process).
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Where a container is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Running.
    Running {
        /// When it started.
        started_at: DateTime<Utc>,
    },
    /// Exited.
    Exited {
        /// The exit code (128 + signal when killed by a signal).
        exit_code: i32,
        /// A one-word reason: `Completed` (exit 0), `Error`, `OOMKilled`, `ContainerCannotRun`.
        reason: String,
        /// A human-readable message, possibly empty.
        message: String,
        /// When it started, if it did.
        started_at: Option<DateTime<Utc>>,
        /// When it finished.
        finished_at: DateTime<Utc>,
    },
    /// The runtime cannot tell.
    Unknown,
}

impl ContainerState {
    /// The state's kind, without its details.
    pub fn kind(&self) -> ContainerStateKind {
        match self {
            ContainerState::Created => ContainerStateKind::Created,
            ContainerState::Running { .. } => ContainerStateKind::Running,
            ContainerState::Exited { .. } => ContainerStateKind::Exited,
            ContainerState::Unknown => ContainerStateKind::Unknown,
        }
    }

    /// Whether the container is running.
    pub fn is_running(&self) -> bool {
        matches!(self, ContainerState::Running { .. })
    }

    /// The exit code, if the container exited.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            ContainerState::Exited { exit_code, .. } => Some(*exit_code),
            _ => None,
        }
    }
}

/// [`ContainerState`] without its details, for filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContainerStateKind {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Exited.
    Exited,
    /// Unknown.
    Unknown,
}

/// A container as the runtime reports it (CRI `ContainerStatus`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerStatus {
    /// Runtime-assigned id.
    pub id: String,
    /// The sandbox it runs in.
    pub sandbox_id: String,
    /// Name and attempt.
    pub metadata: ContainerMetadata,
    /// The image it was created from, as asked.
    pub image: String,
    /// The resolved image id (a digest).
    pub image_ref: String,
    /// Its state.
    pub state: ContainerState,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Labels given at creation.
    pub labels: BTreeMap<String, String>,
    /// Annotations given at creation.
    pub annotations: BTreeMap<String, String>,
    /// Log file path (as in the config).
    pub log_path: PathBuf,
}

impl ContainerStatus {
    /// A container just created from `config`, as every runtime reports it: it carries the
    /// config's labels with the container-name label added when the node agent left it out,
    /// so `list_containers` by name works whoever created it.
    pub fn created(
        id: String,
        sandbox_id: String,
        config: &ContainerConfig,
        image_ref: String,
        created_at: DateTime<Utc>,
        log_path: PathBuf,
    ) -> ContainerStatus {
        let mut labels = config.labels.clone();
        labels
            .entry(crate::labels::CONTAINER_NAME.into())
            .or_insert_with(|| config.metadata.name.clone());
        ContainerStatus {
            id,
            sandbox_id,
            metadata: config.metadata.clone(),
            image: config.image.clone(),
            image_ref,
            state: ContainerState::Created,
            created_at,
            labels,
            annotations: config.annotations.clone(),
            log_path,
        }
    }
}

impl ContainerConfig {
    /// The log file under the pod's log directory: the node agent's path, or the kubelet's
    /// `<name>/<attempt>.log` layout when it gave none.
    pub fn log_path_or_default(&self) -> PathBuf {
        if self.log_path.as_os_str().is_empty() {
            PathBuf::from(format!(
                "{}/{}.log",
                self.metadata.name, self.metadata.attempt
            ))
        } else {
            self.log_path.clone()
        }
    }
}

/// Selects containers in [`Runtime::list_containers`](crate::Runtime::list_containers).
/// Empty fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerFilter {
    /// Only this container.
    pub id: Option<String>,
    /// Only containers in this sandbox.
    pub sandbox_id: Option<String>,
    /// Only containers in this state.
    pub state: Option<ContainerStateKind>,
    /// Only containers carrying all these labels.
    pub labels: BTreeMap<String, String>,
}

impl ContainerFilter {
    /// Containers in sandbox `id`.
    pub fn in_sandbox(id: impl Into<String>) -> Self {
        ContainerFilter {
            sandbox_id: Some(id.into()),
            ..Default::default()
        }
    }

    /// Containers carrying `key=value`.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// The statuses of the containers that pass the filter, from a runtime's table of
    /// containers and its indexes by pod UID label and by sandbox (used when the filter names
    /// a pod or a sandbox, as the node agent's filters do, so a listing costs the pod's
    /// containers, not every container the runtime holds).
    pub(crate) fn select<C>(
        &self,
        containers: &std::collections::BTreeMap<String, C>,
        by_pod: &crate::index::IdIndex,
        by_sandbox: Option<&crate::index::IdIndex>,
        status: impl Fn(&C) -> &ContainerStatus,
    ) -> Vec<ContainerStatus> {
        let passing = |c: &C| self.matches(status(c)).then(|| status(c).clone());
        let from = |ids: &mut dyn Iterator<Item = &String>| -> Vec<ContainerStatus> {
            ids.filter_map(|id| containers.get(id))
                .filter_map(passing)
                .collect()
        };
        if let Some(id) = &self.id {
            return containers.get(id).into_iter().filter_map(passing).collect();
        }
        match (
            self.labels.get(crate::labels::POD_UID),
            self.sandbox_id.as_ref().zip(by_sandbox),
        ) {
            (Some(uid), _) => from(&mut by_pod.get(uid)),
            (None, Some((sandbox, index))) => from(&mut index.get(sandbox)),
            (None, None) => containers.values().filter_map(passing).collect(),
        }
    }

    /// Whether `c` passes the filter.
    pub fn matches(&self, c: &ContainerStatus) -> bool {
        self.id.as_ref().is_none_or(|id| *id == c.id)
            && self
                .sandbox_id
                .as_ref()
                .is_none_or(|id| *id == c.sandbox_id)
            && self.state.is_none_or(|st| st == c.state.kind())
            && self.labels.iter().all(|(k, v)| c.labels.get(k) == Some(v))
    }
}

/// What happened to a container (CRI `ContainerEventType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContainerEventKind {
    /// It was created.
    Created,
    /// It started.
    Started,
    /// It exited (on its own, or stopped).
    Stopped,
    /// It was removed.
    Deleted,
}

/// A container lifecycle event, pushed by the runtime so the node agent reacts to exits
/// without polling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerEvent {
    /// The container.
    pub container_id: String,
    /// Its sandbox.
    pub sandbox_id: String,
    /// The UID of the pod the sandbox belongs to.
    pub pod_uid: String,
    /// What happened.
    pub kind: ContainerEventKind,
    /// When.
    pub time: DateTime<Utc>,
}
