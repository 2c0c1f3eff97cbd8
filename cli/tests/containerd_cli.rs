//! The command on a real containerd (a daemon of the test's own, under a temp dir):
//! `kybernetes image import` loads the busybox archive, `kybernetes serve --runtime
//! containerd:SOCKET` runs a pod of it that kubectl creates, and its log reads back.
//! Needs root, containerd and runc; fails, not skips, without them.

use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../../runtime/tests/support/containerd.rs"]
mod containerd_support;
mod served;

use containerd_support::{Containerd, busybox_image};
use served::{BIN, Served};

fn kubectl(kubeconfig: &str, args: &[&str]) -> std::process::Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl must be installed (/usr/bin/kubectl on the machine image)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_image_runs_as_a_pod_of_serve_on_containerd() {
    let daemon = Containerd::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("busybox.tar");
    std::fs::write(&archive, busybox_image("busybox:1.36")).expect("write the archive");
    let runtime = format!("containerd:{}", daemon.socket().display());

    let out = Command::new(BIN)
        .args(["image", "import"])
        .arg(&archive)
        .args(["--runtime", &runtime])
        .args(["--containerd-snapshotter", daemon.snapshotter])
        .output()
        .expect("run kybernetes image import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "docker.io/library/busybox:1.36"
    );
    assert!(
        daemon
            .ctr(&["images", "ls", "-q"])
            .contains("docker.io/library/busybox:1.36")
    );

    let data = dir.path().join("data");
    let served = Served::start(
        &data,
        &[
            "--runtime",
            &runtime,
            "--containerd-snapshotter",
            daemon.snapshotter,
        ],
    );
    let kc = served.kubeconfig.clone();
    let script = "trap 'exit 0' TERM; echo hello from containerd; while true; do sleep 0.1; done";
    let run = kubectl(
        &kc,
        &[
            "run",
            "hello",
            "--image=busybox:1.36",
            "--restart=Never",
            "--command",
            "--",
            "/bin/sh",
            "-c",
            script,
        ],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let phase = kubectl(
            &kc,
            &["get", "pod", "hello", "-o", "jsonpath={.status.phase}"],
        );
        if String::from_utf8_lossy(&phase.stdout) == "Running" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pod not Running: {}",
            String::from_utf8_lossy(&kubectl(&kc, &["get", "pod", "hello", "-o", "yaml"]).stdout)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The pod's container is a containerd task.
    assert!(!daemon.ctr(&["tasks", "ls", "-q"]).trim().is_empty());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let logs = kubectl(&kc, &["logs", "hello"]);
        if String::from_utf8_lossy(&logs.stdout).contains("hello from containerd") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no log line: {} {}",
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deleted = kubectl(&kc, &["delete", "pod", "hello", "--timeout=60s"]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    assert!(served.stop().success());
    assert!(daemon.ctr(&["containers", "ls", "-q"]).trim().is_empty());
}
