//! A cluster on SQLite and containerd that stops with `shutdown_keeping_workloads` and a new
//! one on the same data dir, containerd socket and runtime root: the pods' containers ran on
//! in containerd, the new `ContainerdRuntime` recovers them and the new node agent adopts
//! them, so the pod stays `Running` with the same container id and no restart. The test
//! starts its own containerd and fails, not skips, without it.

use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kybernetes::Cluster;
use kybernetes::runtime::containerd::ContainerdRuntime;
use kybernetes::runtime::{ContainerFilter, Runtime};
use serde_json::json;

use crate::common;
use crate::containerd::support::{Containerd, busybox_image};
use crate::containerd::{BUSYBOX, IDLE, WITHIN, container_status, exec};

/// A cluster of one node on `data` (SQLite) whose runtime is on `daemon` with its root at
/// `root`, as a node's state directory outlives its processes.
async fn start(data: &Path, daemon: &Containerd, root: &Path) -> Cluster {
    let runtime = ContainerdRuntime::builder()
        .snapshotter(daemon.snapshotter)
        .root(root)
        .connect(daemon.socket())
        .await
        .expect("connect to containerd");
    runtime
        .import_image(busybox_image(BUSYBOX))
        .await
        .expect("import busybox");
    Cluster::builder()
        .data_dir(data)
        .expect("data dir")
        .nodes(1)
        .runtime(runtime)
        .start()
        .await
        .expect("cluster")
}

/// The running pods labelled `app=web`, once there are `want` of them and no others, each
/// with its container running: name → (container id, restart count).
async fn running(pods: &Api<Pod>, want: usize) -> Vec<(String, String, i32)> {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        if let Ok(list) = pods.list(&ListParams::default().labels("app=web")).await {
            let mut running: Vec<(String, String, i32)> = list
                .items
                .iter()
                .filter_map(|p| {
                    let c = container_status(p)?;
                    c.state.as_ref()?.running.as_ref()?;
                    Some((
                        p.metadata.name.clone()?,
                        c.container_id.clone()?,
                        c.restart_count,
                    ))
                })
                .collect();
            if running.len() == want && list.items.len() == want {
                running.sort();
                return running;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{want} running web pods: timed out"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_cluster_adopts_the_running_containerd_pods_of_the_last_one() {
    let daemon = Containerd::start().await;
    let data = tempfile::tempdir().expect("data dir");
    let root = tempfile::tempdir().expect("runtime root");

    let first = start(data.path(), &daemon, root.path()).await;
    let deploys: Api<Deployment> = Api::default_namespaced(first.client());
    let mut web = common::deployment("web", 1, BUSYBOX);
    if let Some(spec) = web.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        spec.containers[0].command = Some(vec!["sh".into(), "-c".into(), IDLE.into()]);
    }
    deploys
        .create(&PostParams::default(), &web)
        .await
        .expect("create deployment");
    let pods: Api<Pod> = Api::default_namespaced(first.client());
    let before = running(&pods, 1).await;
    assert_eq!(before[0].2, 0, "{before:?}");
    let (name, container_id) = (before[0].0.clone(), before[0].1.clone());
    first
        .shutdown_keeping_workloads()
        .await
        .expect("shutdown keeping workloads");

    let second = start(data.path(), &daemon, root.path()).await;
    let pods: Api<Pod> = Api::default_namespaced(second.client());
    // The new runtime found the container, once.
    let containers = second
        .runtime()
        .list_containers(&ContainerFilter::default())
        .await
        .expect("containers");
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(
        format!("containerd://{}", containers[0].id),
        container_id,
        "{containers:?}"
    );
    // The new node agent serves it: exec reaches the same container.
    assert_eq!(exec(&pods, &name, &["echo", "adopted"]).await, "adopted\n");
    // The new control plane acts (a second replica runs), and the first pod is the same.
    let deploys: Api<Deployment> = Api::default_namespaced(second.client());
    deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 2}})),
        )
        .await
        .expect("scale");
    let after = running(&pods, 2).await;
    assert!(
        after.contains(&(name.clone(), container_id.clone(), 0)),
        "{before:?} → {after:?}"
    );
    let containers = second
        .runtime()
        .list_containers(&ContainerFilter::default())
        .await
        .expect("containers");
    assert_eq!(containers.len(), 2, "nothing restarted: {containers:?}");
    second.shutdown().await.expect("shutdown");
    assert_eq!(daemon.ctr(&["containers", "ls", "-q"]).trim(), "");
}
