//! `kybernetes serve` as a process: it prints how to use it, kubectl reaches it through the
//! kubeconfig it writes, and SIGTERM stops it cleanly. Every subcommand has `--help`.

use std::process::Command;

mod served;
use served::BIN;

#[test]
fn every_subcommand_has_help() {
    for args in [&["--help"][..], &["serve", "--help"], &["run", "--help"]] {
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
    ] {
        assert!(text.contains(flag), "serve --help lacks {flag}: {text}");
    }
}

#[test]
fn an_unavailable_runtime_is_refused_clearly() {
    let out = Command::new(BIN)
        .args(["serve", "--runtime", "containerd"])
        .output()
        .expect("run kybernetes");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("containerd runtime is not available"), "{err}");
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
