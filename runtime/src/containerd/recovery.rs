//! Surviving a restart of the process: the runtime's sandboxes and the states of its
//! containers are kept in containerd itself (as JSON extensions of container records), so a
//! new [`ContainerdRuntime`] on the same socket and namespace rebuilds its tables from
//! containerd alone, as containerd's CRI plugin does on a restart, and the node agent adopts
//! what it finds instead of running everything again.
//!
//! - A **sandbox** is a container record that never gets a task (containerd 1.6 has no
//!   sandbox objects): its extension holds the sandbox's metadata, labels, network
//!   namespace and pod directory. Stopping it rewrites the extension as not ready.
//! - A **container**'s extension holds its status (name, attempt, image, labels,
//!   annotations, log path) and its state, rewritten on start, on a start error and on exit
//!   (before the task is deleted, so an exit is never lost between the two).
//!
//! On connect ([`recover`]):
//! - a container recorded running whose task still exists is reattached: the same id and
//!   `startedAt`, its output FIFOs reopened into its log file, its exit watched again. A task
//!   that exited while no runtime watched reports at once with its real exit code.
//! - a container recorded running whose task is gone (deleted behind the runtime's back)
//!   reports `Exited` with code 255 and reason `Unknown`, as containerd's CRI does.
//! - a container created but never started stays `Created`: the node agent starts such a
//!   container itself (`start_created`, its attempt and restart count unchanged). A task
//!   left half-made by a start that was cut short is deleted first; one that did start is
//!   adopted as running.
//! - a sandbox whose network namespace is gone (the machine rebooted) is `NotReady`, so the
//!   node agent runs a new one.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::snapshots::MountsRequest;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    Container as ContainerRecord, GetRequest, ListContainersRequest, UpdateContainerRequest,
};
use containerd_client::types::v1::Status as TaskStatus;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::task_io::{MainStreams, TaskIo};
use super::{ContainerdContainer, ContainerdRuntime, ContainerdSandbox, containers, grpc};
use crate::Result;
use crate::container::{ContainerMetadata, ContainerState, ContainerStatus};
use crate::sandbox::{
    DnsConfig, PodSandboxConfig, PodSandboxMetadata, PodSandboxState, PodSandboxStatus,
};

/// The extension of a sandbox's record.
pub(super) const SANDBOX_EXTENSION: &str = "kybernetes.io/sandbox";
/// The extension of a container's record.
pub(super) const CONTAINER_EXTENSION: &str = "kybernetes.io/container";
/// The label that tells sandbox records from container records (for `ctr` users).
pub(super) const KIND_LABEL: &str = "kybernetes.io/record";

const SANDBOX_TYPE_URL: &str = "kybernetes.io/runtime/containerd/sandbox/v1";
const CONTAINER_TYPE_URL: &str = "kybernetes.io/runtime/containerd/container/v1";

/// A sandbox as kept in containerd.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SandboxExt {
    name: String,
    namespace: String,
    uid: String,
    attempt: u32,
    hostname: String,
    log_directory: PathBuf,
    pod_ip: Option<IpAddr>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    /// `servers`, `searches`, `options` of the pod's resolver file, if it has one.
    dns: Option<(Vec<String>, Vec<String>, Vec<String>)>,
    created_at: DateTime<Utc>,
    ready: bool,
    netns: PathBuf,
    /// Whether the Network gave the namespace (`netns_path` of the config).
    netns_given: bool,
    owns_netns: bool,
    dir: PathBuf,
}

impl SandboxExt {
    fn of(sb: &ContainerdSandbox) -> SandboxExt {
        let m = &sb.status.metadata;
        SandboxExt {
            name: m.name.clone(),
            namespace: m.namespace.clone(),
            uid: m.uid.clone(),
            attempt: m.attempt,
            hostname: sb.config.hostname.clone(),
            log_directory: sb.config.log_directory.clone(),
            pod_ip: sb.status.ip,
            labels: sb.status.labels.clone(),
            annotations: sb.status.annotations.clone(),
            dns: sb
                .config
                .dns_config
                .as_ref()
                .map(|d| (d.servers.clone(), d.searches.clone(), d.options.clone())),
            created_at: sb.status.created_at,
            ready: sb.status.state == PodSandboxState::Ready,
            netns: sb.netns.clone(),
            netns_given: sb.config.netns_path.is_some(),
            owns_netns: sb.owns_netns,
            dir: sb.dir.clone(),
        }
    }

    fn into_sandbox(self, id: String) -> ContainerdSandbox {
        let metadata = PodSandboxMetadata {
            name: self.name,
            namespace: self.namespace,
            uid: self.uid,
            attempt: self.attempt,
        };
        let config = PodSandboxConfig {
            metadata: metadata.clone(),
            hostname: self.hostname,
            log_directory: self.log_directory,
            netns_path: self.netns_given.then(|| self.netns.clone()),
            pod_ip: self.pod_ip,
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            // Not kept: this runtime gives each pod its own namespace and maps no host port.
            port_mappings: Vec::new(),
            dns_config: self.dns.map(|(servers, searches, options)| DnsConfig {
                servers,
                searches,
                options,
            }),
        };
        ContainerdSandbox {
            status: PodSandboxStatus {
                id,
                metadata,
                state: if self.ready {
                    PodSandboxState::Ready
                } else {
                    PodSandboxState::NotReady
                },
                created_at: self.created_at,
                ip: self.pod_ip,
                netns_path: Some(self.netns.clone()),
                labels: self.labels,
                annotations: self.annotations,
            },
            config,
            netns: self.netns,
            owns_netns: self.owns_netns,
            dir: self.dir,
        }
    }
}

/// A container's state as kept in containerd.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state")]
enum StateExt {
    Created,
    Running {
        started_at: DateTime<Utc>,
    },
    Exited {
        exit_code: i32,
        reason: String,
        message: String,
        started_at: Option<DateTime<Utc>>,
        finished_at: DateTime<Utc>,
    },
    Unknown,
}

impl From<&ContainerState> for StateExt {
    fn from(s: &ContainerState) -> StateExt {
        match s.clone() {
            ContainerState::Created => StateExt::Created,
            ContainerState::Running { started_at } => StateExt::Running { started_at },
            ContainerState::Exited {
                exit_code,
                reason,
                message,
                started_at,
                finished_at,
            } => StateExt::Exited {
                exit_code,
                reason,
                message,
                started_at,
                finished_at,
            },
            ContainerState::Unknown => StateExt::Unknown,
        }
    }
}

impl From<StateExt> for ContainerState {
    fn from(s: StateExt) -> ContainerState {
        match s {
            StateExt::Created => ContainerState::Created,
            StateExt::Running { started_at } => ContainerState::Running { started_at },
            StateExt::Exited {
                exit_code,
                reason,
                message,
                started_at,
                finished_at,
            } => ContainerState::Exited {
                exit_code,
                reason,
                message,
                started_at,
                finished_at,
            },
            StateExt::Unknown => ContainerState::Unknown,
        }
    }
}

/// A container as kept in containerd.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ContainerExt {
    sandbox_id: String,
    pod_uid: String,
    name: String,
    attempt: u32,
    image: String,
    image_ref: String,
    created_at: DateTime<Utc>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    log_path: PathBuf,
    log_file: PathBuf,
    /// `stdin: true` in the spec (absent in records of older runtimes).
    #[serde(default)]
    stdin: bool,
    /// `stdinOnce: true` in the spec.
    #[serde(default)]
    stdin_once: bool,
    #[serde(flatten)]
    state: StateExt,
}

impl ContainerExt {
    /// The record of `status`, of pod `pod_uid`, logging to `log_file`, its main process
    /// wired as `streams` says.
    pub(super) fn of(
        status: &ContainerStatus,
        pod_uid: &str,
        log_file: &std::path::Path,
        streams: &MainStreams,
    ) -> Self {
        ContainerExt {
            sandbox_id: status.sandbox_id.clone(),
            pod_uid: pod_uid.to_string(),
            name: status.metadata.name.clone(),
            attempt: status.metadata.attempt,
            image: status.image.clone(),
            image_ref: status.image_ref.clone(),
            created_at: status.created_at,
            labels: status.labels.clone(),
            annotations: status.annotations.clone(),
            log_path: status.log_path.clone(),
            log_file: log_file.to_path_buf(),
            stdin: streams.open_stdin,
            stdin_once: streams.stdin_once,
            state: (&status.state).into(),
        }
    }
}

/// `value` as the JSON extension of type `type_url`.
fn any(type_url: &str, value: &impl Serialize) -> Result<prost_types::Any> {
    Ok(prost_types::Any {
        type_url: type_url.into(),
        value: serde_json::to_vec(value)
            .map_err(|e| super::backend("encode a containerd record extension", e))?,
    })
}

/// The extensions of a new container's record.
pub(super) fn container_extensions(
    ext: &ContainerExt,
) -> Result<HashMap<String, prost_types::Any>> {
    Ok(HashMap::from([(
        CONTAINER_EXTENSION.to_string(),
        any(CONTAINER_TYPE_URL, ext)?,
    )]))
}

/// The record of a new sandbox: no snapshot, no task ever, an empty spec (containerd
/// requires one).
pub(super) fn sandbox_record(id: &str, sb: &ContainerdSandbox) -> Result<ContainerRecord> {
    Ok(ContainerRecord {
        id: id.to_string(),
        labels: HashMap::from([
            (KIND_LABEL.to_string(), "sandbox".to_string()),
            (
                crate::labels::POD_UID.to_string(),
                sb.status.metadata.uid.clone(),
            ),
        ]),
        image: String::new(),
        runtime: Some(containerd_client::services::v1::container::Runtime {
            name: containers::RUNC_V2.into(),
            options: None,
        }),
        spec: Some(prost_types::Any {
            type_url: containers::SPEC_TYPE_URL.into(),
            value: b"{}".to_vec(),
        }),
        snapshotter: String::new(),
        snapshot_key: String::new(),
        created_at: None,
        updated_at: None,
        extensions: HashMap::from([(
            SANDBOX_EXTENSION.to_string(),
            any(SANDBOX_TYPE_URL, &SandboxExt::of(sb))?,
        )]),
        sandbox: String::new(),
    })
}

/// Rewrites extension `key` of record `id`.
async fn update_extension(
    rt: &ContainerdRuntime,
    id: &str,
    key: &str,
    value: prost_types::Any,
) -> Result<()> {
    let record = ContainerRecord {
        id: id.to_string(),
        extensions: HashMap::from([(key.to_string(), value)]),
        ..Default::default()
    };
    ContainersClient::new(rt.channel.clone())
        .update(rt.request(
            UpdateContainerRequest {
                container: Some(record),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec![format!("extensions.{key}")],
                }),
            },
            None,
        )?)
        .await
        .map_err(|s| grpc(format!("update the record of {id}"), s))?;
    Ok(())
}

/// Keeps sandbox `id`'s current state in containerd. A failure is logged: the sandbox works
/// on, and only a restart would see the older state.
pub(super) async fn save_sandbox(rt: &ContainerdRuntime, id: &str) {
    let ext = rt.inner.lock().sandboxes.get(id).map(SandboxExt::of);
    let Some(ext) = ext else { return };
    let saved = match any(SANDBOX_TYPE_URL, &ext) {
        Ok(value) => update_extension(rt, id, SANDBOX_EXTENSION, value).await,
        Err(e) => Err(e),
    };
    if let Err(e) = saved {
        warn!(sandbox = id, error = %e, "keeping the sandbox's state in containerd failed");
    }
}

/// Keeps container `id`'s state `state` in containerd. A failure is logged: the container
/// works on, and only a restart would see the older state.
pub(super) async fn save_container(rt: &ContainerdRuntime, id: &str, state: &ContainerState) {
    let ext = rt.inner.lock().containers.get(id).map(|c| {
        let mut ext = ContainerExt::of(&c.status, &c.pod_uid, &c.log_file, &c.streams);
        ext.state = state.into();
        ext
    });
    let Some(ext) = ext else { return };
    let saved = match any(CONTAINER_TYPE_URL, &ext) {
        Ok(value) => update_extension(rt, id, CONTAINER_EXTENSION, value).await,
        Err(e) => Err(e),
    };
    if let Err(e) = saved {
        warn!(container = id, error = %e, "keeping the container's state in containerd failed");
    }
}

/// Rebuilds the runtime's sandboxes and containers from the records in its namespace and
/// reattaches to the tasks still there (see the [module docs](self)).
pub(super) async fn recover(rt: &ContainerdRuntime) -> Result<()> {
    let records = ContainersClient::new(rt.channel.clone())
        .list(rt.request(ListContainersRequest { filters: vec![] }, None)?)
        .await
        .map_err(|s| grpc("list containers", s))?
        .into_inner()
        .containers;
    let mut containers = Vec::new();
    let mut sandboxes = 0;
    for record in records {
        if let Some(ext) = record.extensions.get(SANDBOX_EXTENSION) {
            match serde_json::from_slice::<SandboxExt>(&ext.value) {
                Ok(ext) => {
                    recover_sandbox(rt, record.id, ext).await;
                    sandboxes += 1;
                }
                Err(e) => {
                    warn!(sandbox = %record.id, error = %e, "unreadable sandbox record; left alone")
                }
            }
        } else if let Some(ext) = record.extensions.get(CONTAINER_EXTENSION) {
            match serde_json::from_slice::<ContainerExt>(&ext.value) {
                Ok(ext) => containers.push((record, ext)),
                Err(e) => {
                    warn!(container = %record.id, error = %e, "unreadable container record; left alone")
                }
            }
        } else {
            debug!(container = %record.id, "a record this runtime did not make; left alone");
        }
    }
    let count = containers.len();
    for (record, ext) in containers {
        recover_container(rt, record, ext).await?;
    }
    if sandboxes + count > 0 {
        info!(sandboxes, containers = count, "recovered from containerd");
    }
    Ok(())
}

async fn recover_sandbox(rt: &ContainerdRuntime, id: String, ext: SandboxExt) {
    let mut sb = ext.into_sandbox(id.clone());
    let gone = sb.status.state == PodSandboxState::Ready && !sb.netns.exists();
    if gone {
        info!(sandbox = %id, netns = %sb.netns.display(), "the sandbox's network namespace is gone; not ready");
        sb.status.state = PodSandboxState::NotReady;
    }
    rt.inner.lock().sandboxes.insert(id.clone(), sb);
    if gone {
        save_sandbox(rt, &id).await;
    }
}

/// The task of container `id`, if it has one.
async fn task(
    rt: &ContainerdRuntime,
    id: &str,
) -> Result<Option<containerd_client::types::v1::Process>> {
    let got = TasksClient::new(rt.channel.clone())
        .get(rt.request(
            GetRequest {
                container_id: id.into(),
                exec_id: String::new(),
            },
            None,
        )?)
        .await;
    match got {
        Ok(r) => Ok(r.into_inner().process),
        Err(s) if super::is_not_found(&s) => Ok(None),
        Err(s) => Err(grpc(format!("get the task of {id}"), s)),
    }
}

async fn recover_container(
    rt: &ContainerdRuntime,
    record: ContainerRecord,
    ext: ContainerExt,
) -> Result<()> {
    let id = record.id.clone();
    let process = record
        .spec
        .as_ref()
        .and_then(|s| serde_json::from_slice::<serde_json::Value>(&s.value).ok())
        .map(|s| s["process"].clone())
        .unwrap_or_default();
    let rootfs = mounts(rt, &record).await;
    let task = task(rt, &id).await?;
    let task_status = task
        .as_ref()
        .map(|t| TaskStatus::try_from(t.status).unwrap_or(TaskStatus::Unknown));
    let now = rt.inner.clock.now();
    let mut state: ContainerState = ext.state.into();
    let mut changed = false;
    let mut reattach = false;
    match (state.clone(), task_status) {
        (ContainerState::Running { .. }, Some(_)) => reattach = true,
        (ContainerState::Running { started_at }, None) => {
            state = ContainerState::Exited {
                exit_code: 255,
                reason: "Unknown".into(),
                message: "the container's task was gone when the runtime reconnected".into(),
                started_at: Some(started_at),
                finished_at: now,
            };
            changed = true;
        }
        (
            ContainerState::Created,
            Some(
                TaskStatus::Running
                | TaskStatus::Stopped
                | TaskStatus::Paused
                | TaskStatus::Pausing,
            ),
        ) => {
            // A start that went through but was not recorded before the process stopped.
            state = ContainerState::Running { started_at: now };
            changed = true;
            reattach = true;
        }
        (ContainerState::Created, Some(_)) | (ContainerState::Exited { .. }, Some(_)) => {
            // A task made by a start cut short, or one whose exit was recorded but not yet
            // deleted: neither runs, and a new start makes its own.
            containers::delete_task(rt, &id).await;
        }
        _ => {}
    }
    let mut container = ContainerdContainer {
        status: ContainerStatus {
            id: id.clone(),
            sandbox_id: ext.sandbox_id,
            metadata: ContainerMetadata {
                name: ext.name,
                attempt: ext.attempt,
            },
            image: ext.image,
            image_ref: ext.image_ref,
            state: state.clone(),
            created_at: ext.created_at,
            labels: ext.labels,
            annotations: ext.annotations,
            log_path: ext.log_path,
        },
        pod_uid: ext.pod_uid.clone(),
        log_file: ext.log_file,
        version: Arc::new(watch::channel(0).0),
        rootfs,
        cgroups_path: containers::cgroups_path(&id),
        streams: MainStreams {
            tty: process["terminal"].as_bool().unwrap_or(false),
            open_stdin: ext.stdin,
            stdin_once: ext.stdin_once,
            ..Default::default()
        },
        process,
        cpu_rate: Default::default(),
        watcher: None,
    };
    debug!(container = %id, state = ?state.kind(), reattach, "recovered container");
    let io = {
        let mut st = rt.inner.lock();
        let mut pumps = JoinSet::new();
        let io = if reattach {
            // The same FIFO paths the shim writes to: what it wrote while no runtime read
            // waits in them.
            let dir = task
                .as_ref()
                .and_then(|t| std::path::Path::new(&t.stdout).parent().map(PathBuf::from))
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or_else(|| rt.inner.root.join("io").join(&id));
            let io = TaskIo::open_in(dir, rt, &container, &mut pumps);
            if let Ok(io) = &io {
                container.streams.running(io);
            }
            Some(io.map(|io| (io, pumps)))
        } else {
            None
        };
        st.by_pod.insert(&ext.pod_uid, &id);
        st.containers.insert(id.clone(), container);
        io
    };
    if changed {
        save_container(rt, &id, &state).await;
    }
    match io {
        Some(Ok((io, pumps))) => containers::spawn_watcher(rt, &id, Some(io), pumps, true),
        Some(Err(e)) => {
            // Without its output the container still runs; its exit is still watched.
            warn!(container = %id, error = %e, "reopening the container's output failed");
            containers::spawn_watcher(rt, &id, None, JoinSet::new(), true);
        }
        None => {}
    }
    Ok(())
}

/// The mounts of the root filesystem snapshot of `record`, which a task create needs; none
/// (and a start that fails) if the snapshot is gone.
async fn mounts(
    rt: &ContainerdRuntime,
    record: &ContainerRecord,
) -> Vec<containerd_client::types::Mount> {
    let request = match rt.request(
        MountsRequest {
            snapshotter: record.snapshotter.clone(),
            key: record.snapshot_key.clone(),
        },
        None,
    ) {
        Ok(r) => r,
        Err(e) => {
            warn!(container = %record.id, error = %e, "asking for the container's mounts failed");
            return Vec::new();
        }
    };
    match SnapshotsClient::new(rt.channel.clone())
        .mounts(request)
        .await
    {
        Ok(r) => r.into_inner().mounts,
        Err(s) => {
            warn!(container = %record.id, error = %s, "the container's root filesystem is gone");
            Vec::new()
        }
    }
}

/// Lets go of every container and sandbox without touching them in containerd: the
/// watchers and log pumps stop and the tables empty, so nothing is stopped or removed when
/// the runtime is dropped, and a new runtime on the same socket and namespace recovers them.
pub(super) fn detach(rt: &ContainerdRuntime) -> Result<()> {
    let mut st = rt.inner.lock();
    for c in st.containers.values_mut() {
        if let Some(w) = c.watcher.take() {
            w.abort();
        }
    }
    let (sandboxes, containers) = (st.sandboxes.len(), st.containers.len());
    st.containers.clear();
    st.sandboxes.clear();
    st.by_pod = Default::default();
    info!(
        sandboxes,
        containers, "detached from containerd; its containers keep running"
    );
    Ok(())
}
