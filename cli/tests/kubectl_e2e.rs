//! The kubectl end-to-end script (`tests/kubectl/e2e.sh`) against `kybernetes serve`, with the
//! real kubectl (`/usr/bin/kubectl` on the machine image; the test fails without it). The
//! script prints one `ok`/`FAIL` line per check; this test fails if any check failed.

use std::process::Command;

mod served;

#[test]
fn kubectl_end_to_end_script_passes_against_kybernetes_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let served = served::Served::start(&dir.path().join("data"), &["--nodes", "2"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/kubectl/e2e.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("KUBECONFIG", &served.kubeconfig)
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let status = served.stop();
    assert!(
        out.status.success(),
        "the kubectl e2e script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(status.success(), "kybernetes serve exited with {status}");
    assert!(stdout.contains(" checks, 0 failed"), "{stdout}");
}
