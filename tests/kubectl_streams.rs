//! The real kubectl (`/usr/bin/kubectl`, 1.32) against a served cluster: `exec`, `exec -i`,
//! exit codes, and `attach`. kubectl missing fails these tests; it never skips them.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::served::{kubectl_command, served, served_from, text};
use kybernetes::Cluster;
use kybernetes::runtime::fake::ContainerScript;
use kybernetes::runtime::{FakeRuntime, ProcessRuntime};
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(30);

async fn running_pod(cluster: &Cluster, name: &str, containers: serde_json::Value) {
    common::served::running_pod(cluster, name, json!({ "containers": containers })).await;
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

/// A command the runtime cannot start is reported after the upgrade, on the error channel, as
/// upstream's kubelet does: kubectl prints the runtime's reason and exits 1, and does not
/// retry over SPDY.
#[tokio::test]
async fn kubectl_exec_of_a_missing_command_reports_the_runtime_error() {
    let s = served_from(Cluster::builder().runtime(ProcessRuntime::host())).await;
    running_pod(
        &s.cluster,
        "sleeper",
        json!([{"name": "app", "image": "sleeper", "command": ["sleep", "300"]}]),
    )
    .await;
    let out = kubectl(
        &s.kubeconfig,
        &["exec", "sleeper", "--", "/no/such/command"],
        b"",
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("/no/such/command"), "{stderr}");
    assert!(
        !stderr.contains("SPDY"),
        "kubectl fell back to SPDY: {stderr}"
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

/// A running `kubectl port-forward` and the local port it listens on.
pub(crate) struct PortForward {
    child: std::process::Child,
    pub(crate) local_port: u16,
}

impl PortForward {
    /// Stops kubectl and returns what it wrote to stderr, for a failure message.
    pub(crate) fn stop_and_stderr(&mut self) -> String {
        use std::io::Read;
        let _ = self.child.kill();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        err
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        // The child this test started, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `kubectl port-forward pod/<pod> 0:<port>` and waits for its "Forwarding from" line.
pub(crate) async fn port_forward(
    kubeconfig: &Path,
    pod: &str,
    port: u16,
    websockets: bool,
) -> PortForward {
    let target = format!("pod/{pod}");
    let ports = format!("0:{port}");
    let mut command = kubectl_command(
        kubeconfig,
        &["port-forward", "--address", "127.0.0.1", &target, &ports],
    );
    // kubectl 1.32 tunnels SPDY in a WebSocket unless this is false; then it upgrades to SPDY.
    command.env(
        "KUBECTL_PORT_FORWARD_WEBSOCKETS",
        if websockets { "true" } else { "false" },
    );
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl must be installed (it is at /usr/bin/kubectl on the machine image)");
    let stdout = child.stdout.take().expect("stdout");
    let (line_tx, line_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = line_tx.send(first);
        }
        // Keep reading: kubectl prints a line per connection, and a closed pipe would kill
        // it with SIGPIPE.
        for _ in lines {}
    });
    let line = match tokio::time::timeout(WITHIN, line_rx).await {
        Ok(Ok(l)) => l,
        _ => {
            let _ = child.kill();
            let out = child.wait_with_output().expect("kubectl ends");
            panic!("kubectl port-forward never listened: {}", text(&out.stderr));
        }
    };
    // "Forwarding from 127.0.0.1:41234 -> 8080"
    let local_port = line
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected kubectl output: {line:?}"));
    PortForward { child, local_port }
}

pub(crate) async fn http_get(port: u16) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    conn.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut response = String::new();
    tokio::time::timeout(WITHIN, conn.read_to_string(&mut response))
        .await
        .expect("response in time")?;
    Ok(response)
}

async fn echo_round_trip(port: u16, message: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to kubectl's port");
    conn.write_all(message).await.expect("send");
    let mut back = vec![0u8; message.len()];
    tokio::time::timeout(WITHIN, conn.read_exact(&mut back))
        .await
        .expect("echo in time")
        .expect("read echo");
    back
}

async fn kubectl_port_forward_reaches_the_pod(websockets: bool) {
    let fake = FakeRuntime::default();
    fake.script_container(
        "web",
        ContainerScript::new()
            .serve_port(
                8080,
                kybernetes::runtime::fake::PortResponder::http(200, "hello through kubectl\n"),
            )
            .serve_port(7000, kybernetes::runtime::fake::PortResponder::Echo),
    );
    let s = served(&fake).await;
    running_pod(
        &s.cluster,
        "web",
        json!([{"name": "web", "image": "nginx"}]),
    )
    .await;
    let mut web = port_forward(&s.kubeconfig, "web", 8080, websockets).await;
    // Two connections in turn: each gets its own pair of streams.
    for _ in 0..2 {
        let response = match http_get(web.local_port).await {
            Ok(r) => r,
            Err(e) => panic!(
                "GET through kubectl: {e}; kubectl: {}",
                web.stop_and_stderr()
            ),
        };
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(
            response.ends_with("\r\n\r\nhello through kubectl\n"),
            "{response}"
        );
    }
    let echo = port_forward(&s.kubeconfig, "web", 7000, websockets).await;
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(echo_round_trip(echo.local_port, &big).await, big);
    drop(web);
    drop(echo);
    s.cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn kubectl_port_forward_over_a_websocket_tunnel() {
    kubectl_port_forward_reaches_the_pod(true).await;
}

#[tokio::test]
async fn kubectl_port_forward_over_spdy() {
    kubectl_port_forward_reaches_the_pod(false).await;
}
