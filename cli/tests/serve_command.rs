//! `kybernetes serve` as a process: it prints how to use it, kubectl reaches it through the
//! kubeconfig it writes, and SIGTERM stops it cleanly. Every subcommand has `--help`.

use std::process::Command;

mod served;
use served::BIN;

#[test]
fn every_subcommand_has_help() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["run", "--help"],
        &["image", "import", "--help"],
    ] {
        let out = Command::new(BIN)
            .args(args)
            .output()
            .expect("run kybernetes");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage:"), "{args:?}: {text}");
    }
    let serve = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&serve.stdout);
    for flag in [
        "--listen",
        "--data-dir",
        "--kubeconfig",
        "--nodes",
        "--store",
        "--token-auth-file",
        "--anonymous-auth",
        "--runtime",
        "--scheduler-config",
    ] {
        assert!(text.contains(flag), "serve --help lacks {flag}: {text}");
    }
}

#[test]
fn a_containerd_runtime_is_refused_clearly_without_its_socket_or_its_daemon() {
    let refused = |runtime: &str| {
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--runtime", runtime])
            .output()
            .expect("run kybernetes");
        assert!(!out.status.success(), "{runtime}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused("containerd");
    assert!(err.contains("needs its socket"), "{err}");
    let err = refused("containerd:/nonexistent/containerd.sock");
    let want = if cfg!(feature = "containerd") {
        "connecting to containerd at /nonexistent/containerd.sock"
    } else {
        "containerd runtime is not available in this binary"
    };
    assert!(err.contains(want), "{err}");
}

#[test]
fn an_invalid_scheduler_config_is_refused_before_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("scheduler.yaml");
    std::fs::write(
        &config,
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
         profiles:\n- schedulerName: packer\n  plugins:\n    score:\n      enabled:\n      \
         - name: NodeNumber\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--scheduler-config"])
        .arg(&config)
        .output()
        .expect("run kybernetes");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scheduler.yaml"), "{err}");
    assert!(
        err.contains(
            "profiles[0].plugins.score.enabled[0]: Invalid value: \"NodeNumber\": unknown plugin"
        ),
        "{err}"
    );
}

#[test]
fn serve_writes_a_kubeconfig_that_kubectl_uses_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let served = served::Served::start(&data, &["--nodes", "1"]);
    let kubeconfig = served.kubeconfig.clone();
    assert_eq!(std::path::Path::new(&kubeconfig), data.join("kubeconfig"));
    assert!(
        data.join("kybernetes.db").exists(),
        "the store defaults to SQLite in the data dir"
    );
    let out = Command::new("kubectl")
        .args([
            "--kubeconfig",
            &kubeconfig,
            "get",
            "namespaces",
            "-o",
            "name",
        ])
        .output()
        .expect("kubectl must be installed (/usr/bin/kubectl on the machine image)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("namespace/default"));
    let status = served.stop();
    assert!(status.success(), "kybernetes serve exited with {status}");
}

/// The pids whose command line holds `token`.
fn processes_with(token: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(token))
        })
        .collect()
}

#[test]
fn serve_with_the_process_runtime_runs_a_real_process_and_stops_it_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let served = served::Served::start(&data, &["--runtime", "process"]);
    let kubeconfig = data.join("kubeconfig");
    let kubectl = |args: &[&str]| {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .expect("kubectl must be installed (/usr/bin/kubectl on the machine image)")
    };
    let token = format!("kyb-cli-{}", std::process::id());
    let script = format!("echo hello from {token}; while true; do sleep 0.1; done");
    let out = kubectl(&[
        "run",
        "hello",
        "--image=local",
        "--restart=Never",
        "--command",
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let logs = kubectl(&["logs", "hello"]);
        if String::from_utf8_lossy(&logs.stdout).contains(&format!("hello from {token}")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line: {logs:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        !processes_with(&token).is_empty(),
        "the pod is a real process"
    );
    let status = served.stop();
    assert!(status.success(), "kybernetes serve exited with {status}");
    let left = processes_with(&token);
    assert!(
        left.is_empty(),
        "processes left after serve stopped: {left:?}"
    );
}
