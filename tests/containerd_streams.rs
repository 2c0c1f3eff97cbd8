//! `pods/exec` with a terminal, `pods/attach` and `pods/portforward` through `kube::Api`
//! (API server, node agent, `ContainerdRuntime`) against busybox pods on a containerd daemon
//! of the test's own; and `kubectl port-forward` to one. Fails, not skips, without
//! containerd, runc or kubectl.

use futures::SinkExt;
use kube::api::{AttachParams, AttachedProcess, PostParams, TerminalSize};
use kybernetes::runtime::Runtime;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::containerd::{BUSYBOX, CtrdCluster, IDLE, WITHIN, is_ready, pod, running, wait_pod};

#[path = "../runtime/tests/support/streams.rs"]
mod streams;

use streams::{ASK_SIZE, SIZE, STTY_SIZE, ask_until, read_until};

/// Resizes `process`'s terminal, then waits until the shell on it reports the new size.
async fn resize_and_check(
    process: &mut AttachedProcess,
    stdin: &mut (impl AsyncWrite + Unpin),
    stdout: &mut (impl AsyncRead + Unpin),
) {
    let (width, height) = SIZE;
    let mut resize = process.terminal_size().expect("a tty can be resized");
    resize
        .send(TerminalSize { width, height })
        .await
        .expect("send the size");
    ask_until(stdin, stdout, ASK_SIZE, STTY_SIZE, WITHIN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_a_tty_runs_on_a_terminal_that_follows_resizes() {
    let c = CtrdCluster::start(1).await;
    let pods = c.pods();
    let spec =
        json!({"containers": [{"name": "main", "image": BUSYBOX, "command": ["sh", "-c", IDLE]}]});
    pods.create(&PostParams::default(), &pod("shell", json!({}), spec))
        .await
        .expect("create pod");
    running(&pods, "shell").await;
    let mut process = pods
        .exec("shell", ["sh"], &AttachParams::interactive_tty())
        .await
        .expect("exec -it sh");
    let status = process.take_status().expect("status");
    let mut stdin = process.stdin().expect("stdin");
    let mut stdout = process.stdout().expect("stdout");
    resize_and_check(&mut process, &mut stdin, &mut stdout).await;
    stdin
        .write_all(b"test -t 1 && echo on-a-tty; echo to-stderr >&2; exit 3\n")
        .await
        .expect("write stdin");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await.expect("read");
    assert!(rest.contains("on-a-tty\r\n"), "{rest:?}");
    assert!(rest.contains("to-stderr\r\n"), "{rest:?}");
    let status = status.await.expect("a status");
    assert_eq!(
        status.reason.as_deref(),
        Some("NonZeroExitCode"),
        "{status:?}"
    );
    let causes = status.details.and_then(|d| d.causes).unwrap_or_default();
    assert_eq!(causes[0].message.as_deref(), Some("3"), "{causes:?}");
    process.join().await.expect("join");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_joins_the_terminal_of_a_pod_with_stdin_and_tty() {
    let c = CtrdCluster::start(1).await;
    let pods = c.pods();
    let spec = json!({
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": BUSYBOX, "command": ["sh"], "stdin": true, "tty": true}],
    });
    pods.create(&PostParams::default(), &pod("term", json!({}), spec))
        .await
        .expect("create pod");
    running(&pods, "term").await;
    let mut process = pods
        .attach("term", &AttachParams::interactive_tty())
        .await
        .expect("attach -it");
    let mut stdin = process.stdin().expect("stdin");
    let mut stdout = process.stdout().expect("stdout");
    // A new prompt, which has no newline, shows as the shell writes it.
    stdin.write_all(b"\n").await.expect("write stdin");
    let mut seen = String::new();
    assert!(
        read_until(&mut stdout, &mut seen, "# ", WITHIN).await,
        "{seen:?}"
    );
    resize_and_check(&mut process, &mut stdin, &mut stdout).await;
    // The shell is the container's main process: its exit ends the pod's container.
    stdin.write_all(b"exit 7\n").await.expect("write stdin");
    let mut rest = Vec::new();
    stdout
        .read_to_end(&mut rest)
        .await
        .expect("read to the end");
    process.join().await.expect("join");
    let p = wait_pod(&pods, "term", "the container's exit", |p| {
        crate::containerd::container_status(p)
            .and_then(|s| s.state.as_ref())
            .and_then(|s| s.terminated.as_ref())
            .is_some()
    })
    .await;
    let terminated = crate::containerd::container_status(&p)
        .and_then(|s| s.state.clone())
        .and_then(|s| s.terminated)
        .expect("terminated");
    assert_eq!(terminated.exit_code, 7);
    c.shutdown().await;
}

/// A pod `web` serving `hello-from-the-pod` with busybox httpd on port 8080, once Ready.
async fn web(c: &CtrdCluster) {
    let pods = c.pods();
    let spec = json!({"containers": [{
        "name": "web", "image": BUSYBOX,
        "command": ["sh", "-c", "echo hello-from-the-pod > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"],
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
    }]});
    pods.create(&PostParams::default(), &pod("web", json!({}), spec))
        .await
        .expect("create pod");
    wait_pod(&pods, "web", "Ready", is_ready).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portforward_reaches_busybox_httpd_in_the_pods_network_namespace() {
    let c = CtrdCluster::start(1).await;
    web(&c).await;
    let pods = c.pods();
    let mut pf = pods
        .portforward("web", &[8080, 9999])
        .await
        .expect("portforward");
    let mut http = pf.take_stream(8080).expect("stream for 8080");
    http.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .await
        .expect("write request");
    let mut response = String::new();
    http.read_to_string(&mut response)
        .await
        .expect("read response");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.ends_with("\r\n\r\nhello-from-the-pod\n"),
        "{response}"
    );
    // Nothing listens on 9999 in the pod: the error channel says so.
    let error = pf.take_error(9999).expect("error channel");
    let message = tokio::time::timeout(WITHIN, error)
        .await
        .expect("error in time")
        .expect("an error");
    assert!(
        message.contains("error forwarding port 9999 to pod web"),
        "{message}"
    );
    assert!(message.contains("refused"), "{message}");
    drop(http);
    drop(pf);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_port_forward_reaches_busybox_httpd() {
    let daemon = crate::containerd::support::Containerd::start().await;
    let runtime = daemon.runtime().await;
    runtime
        .import_image(crate::containerd::support::busybox_image(BUSYBOX))
        .await
        .expect("import busybox");
    let s =
        crate::common::served::served_from(kybernetes::Cluster::builder().runtime(runtime)).await;
    let c = CtrdCluster {
        cluster: s.cluster,
        daemon,
    };
    web(&c).await;
    let mut forward = crate::kubectl_streams::port_forward(&s.kubeconfig, "web", 8080, true).await;
    let response = match crate::kubectl_streams::http_get(forward.local_port).await {
        Ok(r) => r,
        Err(e) => panic!(
            "GET through kubectl: {e}; kubectl: {}",
            forward.stop_and_stderr()
        ),
    };
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.ends_with("\r\n\r\nhello-from-the-pod\n"),
        "{response}"
    );
    drop(forward);
    c.shutdown().await;
}
