//! `ContainerdRuntime::container_stats` against a real containerd daemon: CPU time and the
//! memory working set read from the container's cgroup. Fails, not skips, without containerd.

use std::time::Duration;

use kybernetes_runtime::{Error, Runtime};

#[path = "support/pods.rs"]
mod pods;
#[path = "support/containerd.rs"]
mod support;

use pods::{log_lines, pod, shell, with_busybox};
use support::Containerd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_container_uses_cpu_and_an_allocating_one_memory() {
    let daemon = Containerd::start().await;
    let runtime = with_busybox(&daemon).await;
    let sandbox = pod("stats");
    let sid = runtime.run_pod_sandbox(&sandbox).await.expect("sandbox");
    let busy = runtime
        .create_container(
            &sid,
            // It ends itself after 5 minutes, should the test fail before stopping it.
            &shell("busy", "(sleep 300; kill $$) & while :; do :; done"),
            &sandbox,
        )
        .await
        .expect("create busy");
    // A shell string doubled to 32 MiB stays in the shell's memory while it sleeps (sleep
    // is not the script's last command, so the shell forks it rather than exec'ing it).
    let hungry = runtime
        .create_container(
            &sid,
            &shell(
                "hungry",
                "a=x; i=0; while [ $i -lt 25 ]; do a=$a$a; i=$((i+1)); done; echo ready; sleep 300; echo done",
            ),
            &sandbox,
        )
        .await
        .expect("create hungry");
    runtime.start_container(&busy).await.expect("start busy");
    runtime
        .start_container(&hungry)
        .await
        .expect("start hungry");

    let first = runtime.container_stats(&busy).await.expect("stats");
    assert_eq!(first.container_id, busy);
    // CPU time grows while it spins: wait for half a core-second more (the machine may be
    // loaded, so no rate is asserted).
    let grown = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let now = runtime.container_stats(&busy).await.expect("stats");
            if now.cpu_usage_core_nanos >= first.cpu_usage_core_nanos + 500_000_000 {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the busy container's CPU time grows by 0.5 s within 120 s");
    assert!(
        grown.cpu_usage_nano_cores.is_some_and(|r| r > 0),
        "{grown:?}"
    );

    tokio::time::timeout(Duration::from_secs(120), async {
        while !log_lines(&runtime, &hungry)
            .await
            .iter()
            .any(|l| l.line == "ready")
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the hungry container allocates within 120 s");
    let stats = runtime.container_stats(&hungry).await.expect("stats");
    assert!(
        stats.memory_working_set_bytes >= 32 << 20,
        "working set {} bytes; log {:?}",
        stats.memory_working_set_bytes,
        log_lines(&runtime, &hungry).await
    );

    // A stopped container reports nothing; an unknown one is not found.
    runtime
        .stop_container(&busy, Duration::from_secs(1))
        .await
        .expect("stop");
    let stopped = runtime.container_stats(&busy).await.expect("stats");
    assert_eq!(
        (
            stopped.cpu_usage_core_nanos,
            stopped.memory_working_set_bytes
        ),
        (0, 0)
    );
    assert!(matches!(
        runtime.container_stats("nope").await,
        Err(Error::NotFound { .. })
    ));
    runtime
        .remove_pod_sandbox(&sid)
        .await
        .expect("remove sandbox");
}
