//! The Python `kubernetes` client (from PyPI) against a served cluster: list, create, exec
//! through `kubernetes.stream.stream`, port-forward, and server-side apply with the dynamic
//! client (tests/python/client.py). The venv is made once under cargo's target tmp dir and
//! reused; python3 or PyPI missing fails the test, never skips it.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use kybernetes::runtime::FakeRuntime;
use kybernetes::runtime::fake::{ContainerScript, PortResponder};
use serde_json::json;

/// The client version the test pins, so a new release cannot change the result silently.
const CLIENT: &str = "kubernetes==37.0.3";

/// A venv with the client installed: made on first use, kept for later runs.
fn python_with_client() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-kubernetes-venv");
    let python = venv.join("bin/python");
    let ready = python.exists()
        && Command::new(&python)
            .args(["-c", "import kubernetes"])
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 must be installed (it is on the machine image)");
        assert!(made.success(), "python3 -m venv failed");
        let pip = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", CLIENT])
            .status()
            .expect("run pip");
        assert!(
            pip.success(),
            "pip install {CLIENT} failed (PyPI must be reachable)"
        );
    }
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_lists_creates_execs_port_forwards_and_applies() {
    let python = tokio::task::spawn_blocking(python_with_client)
        .await
        .expect("venv task");
    let fake = FakeRuntime::default();
    fake.script_container(
        "app",
        ContainerScript::new().serve_port(
            8080,
            PortResponder::http(200, "hello from python's port-forward\n"),
        ),
    );
    let served = common::served::served(&fake).await;
    common::served::running_pod(
        &served.cluster,
        "py-web",
        json!({"containers": [{"name": "app", "image": "busybox", "ports": [{"containerPort": 8080}]}]}),
    )
    .await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/client.py");
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .arg(&served.kubeconfig)
        .output()
        .await
        .expect("run the python client script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the python client script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    served.cluster.shutdown().await.expect("shutdown");
}
