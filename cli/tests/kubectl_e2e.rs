//! The kubectl end-to-end scripts (`tests/kubectl/*.sh`) against `kybernetes serve`, with the
//! real kubectl (`/usr/bin/kubectl` on the machine image; the tests fail without it). Each
//! script prints one `ok`/`FAIL` line per check; a test fails if any check failed.

use std::process::Command;

mod served;

/// Runs `tests/kubectl/SCRIPT` against a `kybernetes serve` started with `args`.
fn script_passes(script: &str, args: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let served = served::Served::start(&dir.path().join("data"), args);
    let path = format!("{}/../tests/kubectl/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(&path)
        .env("KUBECONFIG", &served.kubeconfig)
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let status = served.stop();
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(status.success(), "kybernetes serve exited with {status}");
    assert!(stdout.contains(" checks, 0 failed"), "{stdout}");
}

#[test]
fn kubectl_end_to_end_script_passes_against_kybernetes_serve() {
    script_passes("e2e.sh", &["--nodes", "2"]);
}

/// `logs -f`, `cp`, `attach`, `run -i --rm` and `port-forward` need real processes.
#[test]
fn kubectl_streams_reach_real_processes_on_the_process_runtime() {
    script_passes("e2e-process.sh", &["--nodes", "1", "--runtime", "process"]);
}
