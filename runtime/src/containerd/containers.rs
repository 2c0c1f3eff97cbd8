//! Containers on containerd: a snapshot of the image and a container record on create, a
//! task (the shim and runc) on start with its output pumped from FIFOs into the CRI log
//! file, a watcher that records the exit (and an OOM kill) and deletes the task, TERM then
//! KILL on stop.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use containerd_client::services::v1::container::Runtime as ContainerRuntimeInfo;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::snapshots::PrepareSnapshotRequest;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    Container as ContainerRecord, CreateContainerRequest, CreateTaskRequest,
    DeleteContainerRequest, DeleteTaskRequest, KillRequest, StartRequest, WaitRequest,
};
use containerd_client::tonic::Code;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::spec::{self, SpecInputs};
use super::task_io::{MainStreams, TaskIo};
use super::{
    ContainerdContainer, ContainerdRuntime, backend, grpc, images, is_not_found, recovery, user,
};
use crate::container::{ContainerConfig, ContainerEventKind, ContainerState, ContainerStatus};
use crate::labels;
use crate::sandbox::PodSandboxState;
use crate::{Error, Result};

/// The shim every container runs under.
pub(super) const RUNC_V2: &str = "io.containerd.runc.v2";

/// The type URL containerd expects for a JSON OCI runtime spec.
pub(super) const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// How long a killed container may take to be reaped before a stop gives up waiting.
const REAP: Duration = Duration::from_secs(30);

/// How long the log pumps may drain once the task is deleted.
const DRAIN: Duration = Duration::from_secs(5);

const SIGTERM: u32 = 15;
const SIGKILL: u32 = 9;

/// The cgroup of a container, relative to each hierarchy's root.
pub(super) fn cgroups_path(id: &str) -> String {
    format!("/kybernetes/{id}")
}

/// Creates container `config` in sandbox `sandbox_id`.
pub(super) async fn create(
    rt: &ContainerdRuntime,
    sandbox_id: &str,
    config: &ContainerConfig,
) -> Result<String> {
    let (hostname, netns, pod_uid, pod_dir, resolv_conf) = {
        let st = rt.inner.lock();
        let sb = st
            .sandboxes
            .get(sandbox_id)
            .ok_or_else(|| super::not_found("sandbox", sandbox_id))?;
        if sb.status.state != PodSandboxState::Ready {
            return Err(Error::InvalidState {
                id: sandbox_id.into(),
                message: "sandbox is not ready".into(),
            });
        }
        (
            sb.config.hostname.clone(),
            sb.netns.clone(),
            sb.config.metadata.uid.clone(),
            sb.dir.clone(),
            sb.config
                .dns_config
                .is_some()
                .then(|| sb.dir.join(super::sandboxes::RESOLV_CONF)),
        )
    };
    let resolved =
        images::resolve(rt, &config.image)
            .await?
            .ok_or_else(|| Error::ImageNotFound {
                image: config.image.clone(),
            })?;
    let id = super::new_id();
    let cgroups = cgroups_path(&id);
    let log_path = config.log_path_or_default();
    let status = ContainerStatus::created(
        id.clone(),
        sandbox_id.into(),
        config,
        resolved.image.reference().to_string(),
        rt.inner.clock.now(),
        log_path.clone(),
    );
    let log_file = pod_dir.join(&log_path);
    // Everything a restarted runtime needs to know of the container goes into its record.
    let streams = MainStreams::of(config);
    let extensions = recovery::container_extensions(&recovery::ContainerExt::of(
        &status, &pod_uid, &log_file, &streams,
    ))?;
    // The snapshot goes first, under a lease that keeps containerd's garbage collector off
    // it until the container record refers to it: the spec's user comes from the image's
    // /etc/passwd and /etc/group in that root filesystem, as containerd's `WithUser` reads
    // them.
    let lease = images::create_lease(rt, "container").await?;
    let made = prepare_and_record(
        rt,
        &id,
        config,
        &resolved,
        &lease,
        &SpecInputsOwned {
            hostname,
            netns,
            cgroups: cgroups.clone(),
            resolv_conf,
            pod_uid: pod_uid.clone(),
            extensions,
        },
    )
    .await;
    images::release_lease(rt, &lease).await;
    let (mounts, process) = made?;
    let container = ContainerdContainer {
        status,
        pod_uid: pod_uid.clone(),
        log_file,
        version: Arc::new(watch::channel(0).0),
        rootfs: mounts,
        cgroups_path: cgroups,
        process,
        streams,
        cpu_rate: Default::default(),
        watcher: None,
    };
    let mut st = rt.inner.lock();
    rt.emit(&container, ContainerEventKind::Created);
    st.by_pod.insert(&pod_uid, &id);
    st.containers.insert(id.clone(), container);
    Ok(id)
}

/// The sandbox's parts of a container's spec.
struct SpecInputsOwned {
    hostname: String,
    netns: PathBuf,
    cgroups: String,
    resolv_conf: Option<PathBuf>,
    pod_uid: String,
    /// The record's extensions: the container's status, for a restarted runtime.
    extensions: HashMap<String, prost_types::Any>,
}

/// Prepares the root filesystem snapshot of container `id` (under `lease`), builds its spec
/// and creates its record; returns the snapshot's mounts and the spec's process. Undoes the
/// snapshot if a later step fails.
async fn prepare_and_record(
    rt: &ContainerdRuntime,
    id: &str,
    config: &ContainerConfig,
    resolved: &images::Resolved,
    lease: &str,
    sandbox: &SpecInputsOwned,
) -> Result<(Vec<containerd_client::types::Mount>, serde_json::Value)> {
    let mounts = SnapshotsClient::new(rt.channel.clone())
        .prepare(rt.request(
            PrepareSnapshotRequest {
                snapshotter: rt.snapshotter.clone(),
                key: id.to_string(),
                parent: resolved.top_chain.clone(),
                labels: HashMap::new(),
            },
            Some(lease),
        )?)
        .await
        .map_err(|s| grpc(format!("prepare the root filesystem of {id}"), s))?
        .into_inner()
        .mounts;
    let recorded = record(rt, id, config, resolved, sandbox, &mounts).await;
    match recorded {
        Ok(process) => Ok((mounts, process)),
        Err(e) => {
            images::remove_snapshot(rt, id).await;
            Err(e)
        }
    }
}

/// The root filesystem files of a snapshot's `mounts`, as a snapshot prepare returns them.
fn rootfs_files(mounts: &[containerd_client::types::Mount]) -> Result<user::RootfsFiles> {
    let mut layers = Vec::new();
    for m in mounts {
        match m.r#type.as_str() {
            "bind" | "rbind" => layers.push(PathBuf::from(&m.source)),
            "overlay" => {
                let option = |key: &str| {
                    m.options
                        .iter()
                        .find_map(|o| o.strip_prefix(key).map(str::to_string))
                };
                layers.extend(option("upperdir=").map(PathBuf::from));
                if let Some(lower) = option("lowerdir=") {
                    layers.extend(lower.split(':').map(PathBuf::from));
                }
            }
            other => {
                return Err(Error::Unsupported(format!(
                    "reading the image's /etc/passwd from a {other:?} root filesystem mount"
                )));
            }
        }
    }
    Ok(user::RootfsFiles::new(layers))
}

/// Builds the spec of container `id` on root filesystem `mounts` and creates its record.
async fn record(
    rt: &ContainerdRuntime,
    id: &str,
    config: &ContainerConfig,
    resolved: &images::Resolved,
    sandbox: &SpecInputsOwned,
    mounts: &[containerd_client::types::Mount],
) -> Result<serde_json::Value> {
    let files = rootfs_files(mounts)?;
    let user = user::resolve(resolved.process.user.as_deref(), &config.security, &files)?;
    let args = spec::argv(&resolved.process, config);
    let spec = spec::build(
        config,
        &SpecInputs {
            image: &resolved.process,
            args: &args,
            rootfs: Path::new("rootfs"),
            hostname: &sandbox.hostname,
            netns: &sandbox.netns,
            cgroups_path: &sandbox.cgroups,
            resolv_conf: sandbox.resolv_conf.as_deref(),
            user: &user,
        },
    )?;
    let process = spec["process"].clone();
    let spec = serde_json::to_vec(&spec).map_err(|e| backend("encode the OCI spec", e))?;
    let record = ContainerRecord {
        id: id.to_string(),
        labels: HashMap::from([(labels::POD_UID.to_string(), sandbox.pod_uid.clone())]),
        image: resolved.name.clone(),
        runtime: Some(ContainerRuntimeInfo {
            name: RUNC_V2.into(),
            options: None,
        }),
        spec: Some(prost_types::Any {
            type_url: SPEC_TYPE_URL.into(),
            value: spec,
        }),
        snapshotter: rt.snapshotter.clone(),
        snapshot_key: id.to_string(),
        created_at: None,
        updated_at: None,
        extensions: sandbox.extensions.clone(),
        sandbox: String::new(),
    };
    ContainersClient::new(rt.channel.clone())
        .create(rt.request(
            CreateContainerRequest {
                container: Some(record),
            },
            None,
        )?)
        .await
        .map_err(|s| grpc(format!("create container {id}"), s))?;
    Ok(process)
}

/// Starts created container `id`: its task, with output into its log file.
pub(super) async fn start(rt: &ContainerdRuntime, id: &str) -> Result<()> {
    let mut pumps = JoinSet::new();
    let (io, rootfs, tty) = {
        let st = rt.inner.lock();
        let c = st
            .containers
            .get(id)
            .ok_or_else(|| super::not_found("container", id))?;
        if c.status.state != ContainerState::Created {
            return Err(Error::InvalidState {
                id: id.into(),
                message: "container is not in created state".into(),
            });
        }
        (
            TaskIo::open(rt, c, &mut pumps)?,
            c.rootfs.clone(),
            c.streams.tty,
        )
    };
    let mut tasks = TasksClient::new(rt.channel.clone());
    let created = tasks
        .create(rt.request(
            CreateTaskRequest {
                container_id: id.into(),
                rootfs,
                stdin: path_string(io.stdin_path.as_deref()),
                stdout: io.stdout.to_string_lossy().into_owned(),
                stderr: path_string(io.stderr.as_deref()),
                terminal: tty,
                checkpoint: None,
                options: None,
                runtime_path: String::new(),
            },
            None,
        )?)
        .await;
    let started = match created {
        Ok(_) => tasks
            .start(rt.request(
                StartRequest {
                    container_id: id.into(),
                    exec_id: String::new(),
                },
                None,
            )?)
            .await
            .map_err(|s| start_error(id, s)),
        Err(s) => Err(start_error(id, s)),
    };
    if let Err(e) = started {
        delete_task(rt, id).await;
        io.close();
        pumps.abort_all();
        mark_start_error(rt, id, e.to_string()).await;
        return Err(e);
    }
    let running = ContainerState::Running {
        started_at: rt.inner.clock.now(),
    };
    {
        let mut st = rt.inner.lock();
        if let Some(c) = st.containers.get_mut(id) {
            c.status.state = running.clone();
            c.streams.running(&io);
            c.version.send_modify(|v| *v += 1);
            rt.emit(c, ContainerEventKind::Started);
        }
    }
    recovery::save_container(rt, id, &running).await;
    spawn_watcher(rt, id, Some(io), pumps, false);
    Ok(())
}

/// Watches container `id`'s task for its exit (see [`watch_exit`]) on a task of its own,
/// which [`detach`](super::recovery::detach) aborts. `recovered`: the task was found on
/// reconnecting, so it may have exited long before, at the time containerd tells.
pub(super) fn spawn_watcher(
    rt: &ContainerdRuntime,
    id: &str,
    io: Option<TaskIo>,
    pumps: JoinSet<()>,
    recovered: bool,
) {
    let handle = tokio::spawn(watch_exit(rt.clone(), id.to_string(), io, pumps, recovered));
    if let Some(c) = rt.inner.lock().containers.get_mut(id) {
        c.watcher = Some(handle.abort_handle());
    }
}

/// A failed task create or start, in the words of runc's error (command not found, …).
fn start_error(id: &str, status: containerd_client::tonic::Status) -> Error {
    Error::Backend {
        context: format!(
            "failed to start container {id}: {}",
            status.message().trim()
        ),
        source: Some(Box::new(status)),
    }
}

/// A FIFO's path as a task request gives it; empty for none.
fn path_string(path: Option<&Path>) -> String {
    path.map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Records that a container could not start, as containerd's CRI reports it.
async fn mark_start_error(rt: &ContainerdRuntime, id: &str, message: String) {
    let state = ContainerState::Exited {
        exit_code: 128,
        reason: "StartError".into(),
        message,
        started_at: None,
        finished_at: rt.inner.clock.now(),
    };
    {
        let mut st = rt.inner.lock();
        if let Some(c) = st.containers.get_mut(id) {
            c.status.state = state.clone();
            c.version.send_modify(|v| *v += 1);
            rt.emit(c, ContainerEventKind::Stopped);
        }
    }
    recovery::save_container(rt, id, &state).await;
}

/// Waits for the task of container `id` to exit, reads whether the OOM killer ended it,
/// keeps the exit in containerd, deletes the task (which flushes its output), lets the log
/// pumps drain, and records the exit.
async fn watch_exit(
    rt: ContainerdRuntime,
    id: String,
    io: Option<TaskIo>,
    mut pumps: JoinSet<()>,
    recovered: bool,
) {
    let waited = match rt.request(
        WaitRequest {
            container_id: id.clone(),
            exec_id: String::new(),
        },
        None,
    ) {
        Ok(request) => TasksClient::new(rt.channel.clone()).wait(request).await,
        Err(e) => Err(containerd_client::tonic::Status::internal(e.to_string())),
    };
    let (cgroups, started_at) = rt
        .inner
        .lock()
        .containers
        .get(&id)
        .map(|c| {
            let started_at = match &c.status.state {
                ContainerState::Running { started_at } => Some(*started_at),
                _ => None,
            };
            (c.cgroups_path.clone(), started_at)
        })
        .unwrap_or_default();
    let oom = crate::oci::cgroup::oom_killed(&cgroups);
    let (exit_code, message, exited_at) = match waited {
        Ok(r) => {
            let r = r.into_inner();
            let exited_at = r.exited_at.and_then(|t| {
                chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
            });
            (
                i32::try_from(r.exit_status).unwrap_or(255),
                String::new(),
                exited_at,
            )
        }
        Err(s) => (
            255,
            format!("waiting for the task failed: {}", s.message()),
            None,
        ),
    };
    let reason = if oom {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    // A task found on reconnecting may have exited while no runtime watched: containerd
    // knows when. Otherwise the cluster clock's now, as every other time here.
    let finished_at = match exited_at {
        Some(t) if recovered => t,
        _ => rt.inner.clock.now(),
    };
    let state = ContainerState::Exited {
        exit_code,
        reason: reason.into(),
        message,
        started_at,
        finished_at,
    };
    // Kept before the task goes, so a restart between the two still sees the exit.
    recovery::save_container(&rt, &id, &state).await;
    delete_task(&rt, &id).await;
    if let Some(io) = io {
        io.close();
    }
    let drained =
        tokio::time::timeout(DRAIN, async { while pumps.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        debug!(container = %id, "task output stayed open after the task was deleted");
        pumps.abort_all();
    }
    let mut st = rt.inner.lock();
    let Some(c) = st.containers.get_mut(&id) else {
        return;
    };
    debug!(container = %id, exit_code, reason, "container exited");
    c.status.state = state;
    c.streams.stopped();
    c.watcher = None;
    c.version.send_modify(|v| *v += 1);
    rt.emit(c, ContainerEventKind::Stopped);
}

/// Deletes the task of container `id`; one already gone is fine.
pub(super) async fn delete_task(rt: &ContainerdRuntime, id: &str) {
    let Ok(request) = rt.request(
        DeleteTaskRequest {
            container_id: id.into(),
        },
        None,
    ) else {
        return;
    };
    match TasksClient::new(rt.channel.clone()).delete(request).await {
        Ok(_) => {}
        Err(s) if is_not_found(&s) => {}
        Err(s) => warn!(container = id, error = %s, "deleting a task failed"),
    }
}

/// Signals the task of container `id` (its init, or every process with `all`). A task
/// that is gone or not running is fine.
async fn kill(rt: &ContainerdRuntime, id: &str, signal: u32, all: bool) -> Result<()> {
    let killed = TasksClient::new(rt.channel.clone())
        .kill(rt.request(
            KillRequest {
                container_id: id.into(),
                exec_id: String::new(),
                signal,
                all,
            },
            None,
        )?)
        .await;
    match killed {
        Ok(_) => Ok(()),
        Err(s) if matches!(s.code(), Code::NotFound | Code::FailedPrecondition) => Ok(()),
        Err(s) => Err(grpc(format!("signal {signal} to container {id}"), s)),
    }
}

/// Waits until container `id` is no longer running (or is gone), up to `limit`.
async fn wait_exited(rt: &ContainerdRuntime, id: &str, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut version = match rt.inner.lock().containers.get(id) {
        Some(c) => c.version.subscribe(),
        None => return true,
    };
    loop {
        let running = rt
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

/// Stops container `id`: TERM to its init, then KILL to all its processes once `grace` has
/// passed.
pub(super) async fn stop(rt: &ContainerdRuntime, id: &str, grace: Duration) -> Result<()> {
    let running = {
        let st = rt.inner.lock();
        st.containers
            .get(id)
            .ok_or_else(|| super::not_found("container", id))?
            .status
            .state
            .is_running()
    };
    if !running {
        return Ok(());
    }
    kill(rt, id, SIGTERM, false).await?;
    if wait_exited(rt, id, grace).await {
        return Ok(());
    }
    debug!(container = id, ?grace, "grace period over; killing");
    kill_now(rt, id).await
}

/// Kills every process of container `id` at once and waits for the exit to be recorded.
pub(super) async fn kill_now(rt: &ContainerdRuntime, id: &str) -> Result<()> {
    let running = rt
        .inner
        .lock()
        .containers
        .get(id)
        .is_some_and(|c| c.status.state.is_running());
    if !running {
        return Ok(());
    }
    kill(rt, id, SIGKILL, true).await?;
    if !wait_exited(rt, id, REAP).await {
        return Err(Error::Timeout {
            operation: format!("waiting for killed container {id} to exit"),
            timeout: REAP,
        });
    }
    Ok(())
}

/// Removes container `id`, killing it first if it runs: its containerd record, its
/// snapshot and its log file.
pub(super) async fn remove(rt: &ContainerdRuntime, id: &str) -> Result<()> {
    kill_now(rt, id).await?;
    if !rt.inner.lock().containers.contains_key(id) {
        return Ok(());
    }
    let deleted = ContainersClient::new(rt.channel.clone())
        .delete(rt.request(DeleteContainerRequest { id: id.into() }, None)?)
        .await;
    match deleted {
        Ok(_) => {}
        Err(s) if is_not_found(&s) => {}
        Err(s) => return Err(grpc(format!("delete container {id}"), s)),
    }
    images::remove_snapshot(rt, id).await;
    let removed = {
        let mut st = rt.inner.lock();
        let removed = st.containers.remove(id);
        if let Some(c) = &removed {
            st.by_pod.remove(&c.pod_uid, id);
        }
        removed
    };
    if let Some(c) = removed {
        rt.emit(&c, ContainerEventKind::Deleted);
        if let Err(e) = std::fs::remove_file(&c.log_file)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            debug!(file = %c.log_file.display(), error = %e, "removing a container log failed");
        }
    }
    Ok(())
}
