//! The real kubectl (`/usr/bin/kubectl`, 1.32) against a served cluster: `exec`, `exec -i`,
//! exit codes, and `attach`. kubectl missing fails these tests; it never skips them.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kybernetes::Cluster;
use kybernetes::runtime::FakeRuntime;
use kybernetes::runtime::fake::ContainerScript;
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(30);

/// A served cluster on `fake` and the kubeconfig to reach it.
struct Served {
    cluster: Cluster,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

async fn served(fake: &FakeRuntime) -> Served {
    let cluster = Cluster::builder()
        .runtime(fake.clone())
        .serve("127.0.0.1:0".parse().expect("address"))
        .start()
        .await
        .expect("cluster starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    cluster
        .kubeconfig()
        .expect("kubeconfig")
        .write(&kubeconfig)
        .expect("write kubeconfig");
    Served {
        cluster,
        _dir: dir,
        kubeconfig,
    }
}

async fn running_pod(cluster: &Cluster, name: &str, containers: serde_json::Value) {
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": containers},
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    common::until(&format!("pod {name} running"), WITHIN, || {
        let pods = pods.clone();
        async move {
            let p = pods.get(name).await.expect("get pod");
            p.status.and_then(|s| s.phase).as_deref() == Some("Running")
        }
    })
    .await;
}

fn kubectl_command(kubeconfig: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("kubectl");
    // A fresh cache directory: discovery from another test's server must not leak in.
    c.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(kubeconfig.with_file_name("cache"))
        .args(args);
    c
}

/// Runs kubectl to its end with `input` on its stdin.
async fn kubectl(kubeconfig: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut command = kubectl_command(kubeconfig, args);
    let input = input.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl must be installed (it is at /usr/bin/kubectl on the machine image)");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&input).expect("write kubectl's stdin");
        drop(stdin);
        child.wait_with_output().expect("kubectl runs")
    })
    .await
    .expect("kubectl task")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn kubectl_exec_prints_output_and_passes_the_exit_code_on() {
    let fake = FakeRuntime::default();
    let s = served(&fake).await;
    running_pod(
        &s.cluster,
        "web",
        json!([{"name": "app", "image": "busybox"}]),
    )
    .await;
    let out = kubectl(
        &s.kubeconfig,
        &["exec", "web", "--", "echo", "hello", "kubectl"],
        b"",
    )
    .await;
    assert!(
        out.status.success(),
        "kubectl exec failed: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "hello kubectl\n");

    let out = kubectl(
        &s.kubeconfig,
        &["exec", "web", "--", "sh", "-c", "echo bad >&2; exit 3"],
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("bad\n"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("command terminated with exit code 3"),
        "{}",
        text(&out.stderr)
    );

    let out = kubectl(&s.kubeconfig, &["exec", "nope", "--", "ls"], b"").await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("pods \"nope\" not found"),
        "{}",
        text(&out.stderr)
    );
    s.cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn kubectl_exec_with_stdin_feeds_the_command() {
    let fake = FakeRuntime::default();
    let s = served(&fake).await;
    running_pod(
        &s.cluster,
        "web",
        json!([{"name": "app", "image": "busybox"}]),
    )
    .await;
    let input = b"line one\nline two\n";
    let out = kubectl(&s.kubeconfig, &["exec", "-i", "web", "--", "cat"], input).await;
    assert!(
        out.status.success(),
        "kubectl exec -i failed: {}",
        text(&out.stderr)
    );
    assert_eq!(out.stdout, input);
    // A shell reading its commands from stdin.
    let script = b"echo from sh\nfalse\nexit 7\n";
    let out = kubectl(&s.kubeconfig, &["exec", "-i", "web", "--", "sh"], script).await;
    assert_eq!(out.status.code(), Some(7), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "from sh\n");
    s.cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn kubectl_attach_streams_the_main_process() {
    let fake = FakeRuntime::default();
    fake.script_container("repl", ContainerScript::new().echo_stdin());
    let s = served(&fake).await;
    running_pod(
        &s.cluster,
        "repl",
        json!([{"name": "repl", "image": "busybox", "stdin": true}]),
    )
    .await;
    let mut command = kubectl_command(&s.kubeconfig, &["attach", "-i", "repl"]);
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl must be installed (it is at /usr/bin/kubectl on the machine image)");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let echoed = tokio::task::spawn_blocking(move || {
        stdin.write_all(b"hello attach\n").expect("write");
        stdin.flush().expect("flush");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read");
        (line, stdin)
    });
    let (line, stdin) = tokio::time::timeout(WITHIN, echoed)
        .await
        .expect("the echo in time")
        .expect("attach task");
    assert_eq!(line, "hello attach\n");
    // The container ends: kubectl attach ends with it.
    let id = fake
        .latest_container("default", "repl", "repl")
        .expect("container")
        .id;
    fake.exit_container(&id, 0);
    let out = tokio::task::spawn_blocking(move || {
        drop(stdin);
        child.wait_with_output().expect("kubectl ends")
    })
    .await
    .expect("wait task");
    assert!(
        out.status.success(),
        "kubectl attach failed: {}",
        text(&out.stderr)
    );
    s.cluster.shutdown().await.expect("shutdown");
}
