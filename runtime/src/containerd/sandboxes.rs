//! Pod sandboxes on containerd: the pod's network namespace (the `Network`'s, or one made
//! here) and its log directory. containerd 1.6 has no sandbox objects of its own, so a
//! sandbox lives in this runtime's memory, its containers join its namespace, and a
//! container record that never gets a task keeps it in containerd for a restarted runtime
//! (see `recovery.rs`).

use std::path::PathBuf;

use tracing::debug;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::{CreateContainerRequest, DeleteContainerRequest};

use super::{
    ContainerdRuntime, ContainerdSandbox, containers, grpc, is_not_found, netns, recovery,
};
use crate::Result;
use crate::sandbox::{PodSandboxConfig, PodSandboxState, PodSandboxStatus};

/// The pod directory's resolver file, mounted at `/etc/resolv.conf`.
pub(super) const RESOLV_CONF: &str = "resolv.conf";

/// Runs a sandbox for `config`.
pub(super) async fn run(rt: &ContainerdRuntime, config: &PodSandboxConfig) -> Result<String> {
    let id = super::new_id();
    let (netns, owns_netns) = match &config.netns_path {
        Some(path) => (path.clone(), false),
        None => (
            netns::create(rt.inner.root.join("netns").join(&id)).await?,
            true,
        ),
    };
    let name = config
        .log_directory
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| id.clone());
    let dir = rt.inner.root.join("pods").join(name);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        if owns_netns {
            netns::remove(&netns);
        }
        return Err(super::backend(
            format!("create pod directory {}", dir.display()),
            e,
        ));
    }
    // The pod's resolv.conf, which every container bind-mounts (containerd's CRI does the
    // same with its sandbox's file).
    if let Some(dns) = &config.dns_config {
        let path = dir.join(RESOLV_CONF);
        if let Err(e) = std::fs::write(&path, dns.resolv_conf()) {
            remove_dir(&dir);
            if owns_netns {
                netns::remove(&netns);
            }
            return Err(super::backend(format!("write {}", path.display()), e));
        }
    }
    let status = PodSandboxStatus {
        id: id.clone(),
        metadata: config.metadata.clone(),
        state: PodSandboxState::Ready,
        created_at: rt.inner.clock.now(),
        ip: config.pod_ip,
        netns_path: Some(netns.clone()),
        labels: config.labels.clone(),
        annotations: config.annotations.clone(),
    };
    let sandbox = ContainerdSandbox {
        status,
        config: config.clone(),
        netns,
        owns_netns,
        dir,
    };
    if let Err(e) = create_record(rt, &id, &sandbox).await {
        remove_dir(&sandbox.dir);
        if sandbox.owns_netns {
            netns::remove(&sandbox.netns);
        }
        return Err(e);
    }
    rt.inner.lock().sandboxes.insert(id.clone(), sandbox);
    Ok(id)
}

/// Keeps sandbox `id` in containerd, as a container record that never runs.
async fn create_record(
    rt: &ContainerdRuntime,
    id: &str,
    sandbox: &ContainerdSandbox,
) -> Result<()> {
    let record = recovery::sandbox_record(id, sandbox)?;
    ContainersClient::new(rt.channel.clone())
        .create(rt.request(
            CreateContainerRequest {
                container: Some(record),
            },
            None,
        )?)
        .await
        .map_err(|s| grpc(format!("create the record of sandbox {id}"), s))?;
    Ok(())
}

fn containers_of(rt: &ContainerdRuntime, sandbox_id: &str) -> Vec<String> {
    rt.inner
        .lock()
        .containers
        .values()
        .filter(|c| c.status.sandbox_id == sandbox_id)
        .map(|c| c.status.id.clone())
        .collect()
}

/// Stops a sandbox: every container in it is killed.
pub(super) async fn stop(rt: &ContainerdRuntime, sandbox_id: &str) -> Result<()> {
    {
        let mut st = rt.inner.lock();
        let Some(sb) = st.sandboxes.get_mut(sandbox_id) else {
            return Ok(());
        };
        sb.status.state = PodSandboxState::NotReady;
    }
    recovery::save_sandbox(rt, sandbox_id).await;
    for id in containers_of(rt, sandbox_id) {
        containers::kill_now(rt, &id).await?;
    }
    Ok(())
}

/// Removes a sandbox, its containers, its own network namespace and its directory.
pub(super) async fn remove(rt: &ContainerdRuntime, sandbox_id: &str) -> Result<()> {
    stop(rt, sandbox_id).await?;
    for id in containers_of(rt, sandbox_id) {
        containers::remove(rt, &id).await?;
    }
    if rt.inner.lock().sandboxes.contains_key(sandbox_id) {
        let deleted = ContainersClient::new(rt.channel.clone())
            .delete(rt.request(
                DeleteContainerRequest {
                    id: sandbox_id.into(),
                },
                None,
            )?)
            .await;
        match deleted {
            Ok(_) => {}
            Err(s) if is_not_found(&s) => {}
            Err(s) => {
                return Err(grpc(
                    format!("delete the record of sandbox {sandbox_id}"),
                    s,
                ));
            }
        }
    }
    let removed = {
        let mut st = rt.inner.lock();
        let removed = st.sandboxes.remove(sandbox_id);
        removed.map(|r| {
            // The directory is the pod's: keep it while another sandbox of the pod uses it.
            let shared = st.sandboxes.values().any(|s| s.dir == r.dir);
            (r, shared)
        })
    };
    if let Some((sb, shared)) = removed {
        if sb.owns_netns {
            netns::remove(&sb.netns);
        }
        if !shared {
            remove_dir(&sb.dir);
        }
    }
    Ok(())
}

fn remove_dir(dir: &PathBuf) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        debug!(dir = %dir.display(), error = %e, "removing a pod directory failed");
    }
}
