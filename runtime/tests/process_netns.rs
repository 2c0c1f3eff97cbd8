//! ProcessRuntime with a pod network namespace: the containers of a sandbox that names a
//! netns run inside it. Needs root (to make the namespace); without it this test fails, not
//! skips.
#![cfg(target_os = "linux")]

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use futures::StreamExt;
use kybernetes_runtime::process::{ImageCommand, ProcessRuntime};
use kybernetes_runtime::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_of_a_sandbox_with_a_netns_runs_inside_that_namespace() {
    let name = format!("kybrt{}", std::process::id());
    let added = Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .expect("run ip");
    assert!(added.success(), "ip netns add {name} failed (needs root)");
    let path = std::path::PathBuf::from(format!("/run/netns/{name}"));
    let inode = std::fs::metadata(&path).expect("netns file").ino();

    let runtime = ProcessRuntime::builder()
        .image("shell", ImageCommand::prefix(["/bin/sh", "-c"]))
        .build();
    let sandbox = PodSandboxConfig {
        hostname: "isolated".into(),
        netns_path: Some(path.clone()),
        ..Default::default()
    };
    let sid = runtime.run_pod_sandbox(&sandbox).await.expect("sandbox");
    assert_eq!(
        runtime
            .pod_sandbox_status(&sid)
            .await
            .expect("status")
            .netns_path,
        Some(path.clone())
    );
    runtime.pull_image("shell").await.expect("image");
    let config = ContainerConfig {
        metadata: ContainerMetadata {
            name: "ns".into(),
            attempt: 0,
        },
        image: "shell".into(),
        command: vec!["readlink /proc/self/ns/net".into()],
        ..Default::default()
    };
    let id = runtime
        .create_container(&sid, &config, &sandbox)
        .await
        .expect("create");
    let mut events = runtime.container_events();
    runtime.start_container(&id).await.expect("start");
    while let Ok(e) = events.recv().await {
        if e.kind == ContainerEventKind::Stopped && e.container_id == id {
            break;
        }
    }
    let lines: Vec<LogLine> = runtime
        .logs(&id, &LogOptions::default())
        .await
        .expect("logs")
        .collect()
        .await;
    runtime.shutdown().await.expect("shutdown");
    let deleted = Command::new("ip")
        .args(["netns", "del", &name])
        .status()
        .expect("run ip");
    assert!(deleted.success());
    assert_eq!(
        lines.first().map(|l| l.line.clone()),
        Some(format!("net:[{inode}]"))
    );
}
