//! Pods and containers for the ContainerdRuntime tests: a sandbox config, a busybox shell
//! container, running one to its exit (alone in a pod of its own, or in a sandbox the test
//! holds) and reading its log.

#![allow(dead_code)]

use std::time::Duration;

use futures::StreamExt;
use kybernetes_runtime::containerd::ContainerdRuntime;
use kybernetes_runtime::{
    ContainerConfig, ContainerMetadata, ContainerState, LogLine, LogOptions, PodSandboxConfig,
    PodSandboxMetadata, Runtime,
};

use crate::support::{Containerd, busybox_image};

/// A pod sandbox config for pod `name`.
pub fn pod(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: PodSandboxMetadata {
            name: name.into(),
            namespace: "default".into(),
            uid: format!("uid-{name}"),
            attempt: 0,
        },
        hostname: name.into(),
        log_directory: format!("/var/log/pods/default_{name}_uid-{name}").into(),
        ..Default::default()
    }
}

/// A busybox container `name` running `sh -c script`.
pub fn shell(name: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata {
            name: name.into(),
            attempt: 0,
        },
        image: "busybox:test".into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

/// A runtime on `daemon` with the busybox image imported.
pub async fn with_busybox(daemon: &Containerd) -> ContainerdRuntime {
    let runtime = daemon.runtime().await;
    runtime
        .import_image(busybox_image("busybox:test"))
        .await
        .expect("import busybox");
    runtime
}

/// Starts container `id` and waits until it has exited; returns its final state.
pub async fn run_to_exit(runtime: &ContainerdRuntime, id: &str) -> ContainerState {
    let mut events = runtime.container_events();
    runtime.start_container(id).await.expect("start");
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let state = runtime.container_status(id).await.expect("status").state;
            if let ContainerState::Exited { .. } = state {
                return state;
            }
            match events.recv().await {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("events ended: {e}"),
            }
        }
    })
    .await
    .expect("container exits within 120 s")
}

/// Runs `config` to its exit in a new sandbox for pod `name`, then removes the sandbox:
/// the container's final state and its log.
pub async fn run_in_pod(
    runtime: &ContainerdRuntime,
    name: &str,
    config: &ContainerConfig,
) -> (ContainerState, Vec<LogLine>) {
    let (sid, id) = create_in_pod(runtime, name, config).await;
    let state = run_to_exit(runtime, &id).await;
    let lines = log_lines(runtime, &id).await;
    runtime
        .remove_pod_sandbox(&sid)
        .await
        .expect("remove sandbox");
    (state, lines)
}

/// Creates `config` in a new sandbox for pod `name`: the sandbox id and the container id.
pub async fn create_in_pod(
    runtime: &ContainerdRuntime,
    name: &str,
    config: &ContainerConfig,
) -> (String, String) {
    let sandbox = pod(name);
    let sid = runtime.run_pod_sandbox(&sandbox).await.expect("sandbox");
    let id = runtime
        .create_container(&sid, config, &sandbox)
        .await
        .expect("create");
    (sid, id)
}

/// The log of container `id`.
pub async fn log_lines(runtime: &ContainerdRuntime, id: &str) -> Vec<LogLine> {
    runtime
        .logs(id, &LogOptions::default())
        .await
        .expect("logs")
        .collect()
        .await
}
