//! `pods/exec`, `pods/attach` and `pods/portforward` from kube-rs in process
//! (`cluster.client()`), through the API server, the node agent's connection and the
//! FakeRuntime.

use crate::common;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, PostParams};
use kybernetes::Cluster;
use kybernetes::runtime::FakeRuntime;
use kybernetes::runtime::fake::{ContainerScript, PortResponder};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// How long a test waits for anything.
const WITHIN: Duration = Duration::from_secs(30);

async fn cluster(fake: &FakeRuntime) -> Cluster {
    Cluster::builder()
        .runtime(fake.clone())
        .start()
        .await
        .expect("cluster starts")
}

/// Creates pod `name` with `containers` and waits until it runs.
async fn running_pod(pods: &Api<Pod>, name: &str, containers: serde_json::Value) -> Pod {
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
    pods.get(name).await.expect("get pod")
}

async fn read_all(r: Option<impl tokio::io::AsyncRead + Unpin>) -> String {
    let mut s = String::new();
    r.expect("stream asked for")
        .read_to_string(&mut s)
        .await
        .expect("read stream");
    s
}

#[tokio::test]
async fn exec_prints_output_and_reports_success() {
    let fake = FakeRuntime::default();
    let cluster = cluster(&fake).await;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    running_pod(&pods, "web", json!([{"name": "app", "image": "busybox"}])).await;
    let mut p = pods
        .exec("web", ["echo", "hello", "world"], &AttachParams::default())
        .await
        .expect("exec");
    let status = p.take_status().expect("status");
    let out = read_all(p.stdout()).await;
    assert_eq!(out, "hello world\n");
    let status = status.await.expect("a status");
    assert_eq!(status.status.as_deref(), Some("Success"), "{status:?}");
    p.join().await.expect("join");
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn exec_with_stdin_echoes_it_back_through_cat() {
    let fake = FakeRuntime::default();
    let cluster = cluster(&fake).await;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    running_pod(&pods, "web", json!([{"name": "app", "image": "busybox"}])).await;
    let params = AttachParams::default().stdin(true).stderr(false);
    let mut p = pods.exec("web", ["cat"], &params).await.expect("exec");
    let mut stdin = p.stdin().expect("stdin");
    let mut stdout = BufReader::new(p.stdout().expect("stdout"));
    stdin.write_all(b"first line\n").await.expect("write");
    let mut line = String::new();
    stdout.read_line(&mut line).await.expect("read");
    assert_eq!(line, "first line\n");
    stdin.write_all(b"second\n").await.expect("write");
    // kube-rs then sends v5's close message for stdin.
    stdin.shutdown().await.expect("close stdin");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await.expect("read rest");
    assert_eq!(rest, "second\n");
    let status = p.take_status().expect("status").await.expect("a status");
    assert_eq!(status.status.as_deref(), Some("Success"));
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn exec_reports_a_non_zero_exit_code_as_upstream() {
    let fake = FakeRuntime::default();
    let cluster = cluster(&fake).await;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    running_pod(&pods, "web", json!([{"name": "app", "image": "busybox"}])).await;
    let mut p = pods
        .exec(
            "web",
            ["sh", "-c", "echo oops >&2; exit 3"],
            &AttachParams::default(),
        )
        .await
        .expect("exec");
    let status = p.take_status().expect("status").await.expect("a status");
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    let causes = status.details.expect("details").causes.expect("causes");
    assert_eq!(causes[0].reason.as_deref(), Some("ExitCode"));
    assert_eq!(causes[0].message.as_deref(), Some("3"));
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn exec_picks_the_only_or_default_container_and_refuses_to_guess() {
    let fake = FakeRuntime::default();
    let cluster = cluster(&fake).await;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    let two = json!([
        {"name": "app", "image": "busybox", "env": [{"name": "WHO", "value": "app"}]},
        {"name": "side", "image": "busybox", "env": [{"name": "WHO", "value": "side"}]},
    ]);
    running_pod(&pods, "two", two).await;
    let err = pods
        .exec("two", ["printenv", "WHO"], &AttachParams::default())
        .await
        .err()
        .expect("ambiguous container");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 400);
            assert_eq!(
                s.message,
                "a container name must be specified for pod two, choose one of: [app side]"
            );
        }
        other => panic!("expected a 400 Status, got {other}"),
    }
    let named = AttachParams::default().container("side");
    let mut p = pods
        .exec("two", ["printenv", "WHO"], &named)
        .await
        .expect("exec");
    assert_eq!(read_all(p.stdout()).await, "side\n");
    // The annotation kubectl honours names the default.
    let patch =
        json!({"metadata": {"annotations": {"kubectl.kubernetes.io/default-container": "side"}}});
    pods.patch(
        "two",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(patch),
    )
    .await
    .expect("annotate");
    let mut p = pods
        .exec("two", ["printenv", "WHO"], &AttachParams::default())
        .await
        .expect("exec");
    assert_eq!(read_all(p.stdout()).await, "side\n");
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn exec_into_a_pod_that_is_not_running_is_refused() {
    let fake = FakeRuntime::default();
    fake.script_container(
        "done",
        ContainerScript::new().complete_after(Duration::ZERO),
    );
    let cluster = cluster(&fake).await;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "job"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "done", "image": "busybox"}]},
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create");
    common::until("pod job succeeded", WITHIN, || {
        let pods = pods.clone();
        async move {
            let p = pods.get("job").await.expect("get");
            p.status.and_then(|s| s.phase).as_deref() == Some("Succeeded")
        }
    })
    .await;
    let err = pods
        .exec("job", ["echo"], &AttachParams::default())
        .await
        .err()
        .expect("refused");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 400);
            assert_eq!(
                s.message,
                "cannot exec into a container in a completed pod; current phase is Succeeded"
            );
        }
        other => panic!("expected a 400 Status, got {other}"),
    }
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn attach_joins_the_main_process_output_and_stdin() {
    let fake = FakeRuntime::default();
    fake.script_container("repl", ContainerScript::new().echo_stdin());
    let cluster = cluster(&fake).await;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    running_pod(
        &pods,
        "repl",
        json!([{"name": "repl", "image": "busybox", "stdin": true}]),
    )
    .await;
    let params = AttachParams::default().stdin(true).stderr(false);
    let mut p = pods.attach("repl", &params).await.expect("attach");
    let mut stdin = p.stdin().expect("stdin");
    let mut stdout = BufReader::new(p.stdout().expect("stdout"));
    stdin.write_all(b"hello there\n").await.expect("write");
    let mut line = String::new();
    stdout.read_line(&mut line).await.expect("read");
    assert_eq!(line, "hello there\n");
    // What the container writes itself arrives too, and lands in its log.
    let id = fake
        .latest_container("default", "repl", "repl")
        .expect("container")
        .id;
    fake.write_log(&id, "from the app");
    line.clear();
    stdout.read_line(&mut line).await.expect("read");
    assert_eq!(line, "from the app\n");
    let logs: Vec<String> = fake.log_lines(&id).into_iter().map(|l| l.line).collect();
    assert_eq!(logs, ["hello there", "from the app"]);
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn portforward_reaches_an_echo_and_an_http_port_in_the_pod() {
    let fake = FakeRuntime::default();
    fake.script_container(
        "web",
        ContainerScript::new()
            .serve_port(7000, PortResponder::Echo)
            .serve_port(8080, PortResponder::http(200, "hello from the pod\n")),
    );
    let cluster = cluster(&fake).await;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    running_pod(&pods, "web", json!([{"name": "web", "image": "nginx"}])).await;
    let mut pf = pods
        .portforward("web", &[7000, 8080])
        .await
        .expect("portforward");
    let mut echo = pf.take_stream(7000).expect("echo stream");
    echo.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    echo.read_exact(&mut buf).await.expect("read echo");
    assert_eq!(&buf, b"ping");
    let mut http = pf.take_stream(8080).expect("http stream");
    http.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .expect("write request");
    let mut response = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&response).ends_with("hello from the pod\n") {
        let n = tokio::time::timeout(WITHIN, http.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read response");
        assert!(
            n > 0,
            "closed early: {}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&chunk[..n]);
    }
    assert!(String::from_utf8_lossy(&response).starts_with("HTTP/1.1 200 OK\r\n"));
    drop(echo);
    drop(http);
    pf.join().await.expect("portforward ends");
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn portforward_to_a_closed_port_reports_on_its_error_channel() {
    let fake = FakeRuntime::default();
    let cluster = cluster(&fake).await;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    running_pod(&pods, "web", json!([{"name": "web", "image": "nginx"}])).await;
    let mut pf = pods.portforward("web", &[9999]).await.expect("portforward");
    let error = pf.take_error(9999).expect("error channel");
    let message = tokio::time::timeout(WITHIN, error)
        .await
        .expect("error in time")
        .expect("an error");
    assert!(
        message.contains("error forwarding port 9999 to pod web"),
        "{message}"
    );
    assert!(message.contains("connection refused"), "{message}");
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn streams_need_an_upgrade() {
    let fake = FakeRuntime::default();
    let cluster = cluster(&fake).await;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    running_pod(&pods, "web", json!([{"name": "app", "image": "busybox"}])).await;
    // A plain GET, as a client without WebSocket support would send.
    let req = http::Request::get("/api/v1/namespaces/default/pods/web/exec?command=ls&stdout=true")
        .body(Vec::new())
        .expect("request");
    let err = cluster
        .client()
        .request::<serde_json::Value>(req)
        .await
        .expect_err("refused");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(
                (s.code, s.message.as_str()),
                (400, "Upgrade request required")
            );
        }
        other => panic!("expected a 400 Status, got {other}"),
    }
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn portforward_accepts_kubectls_spdy_tunnel_subprotocol() {
    let fake = FakeRuntime::default();
    let cluster = cluster(&fake).await;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    running_pod(&pods, "web", json!([{"name": "web", "image": "nginx"}])).await;
    // What kubectl 1.31+ sends first: SPDY tunnelled in a WebSocket, no ports in the query.
    let req = http::Request::get("/api/v1/namespaces/default/pods/web/portforward")
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("Sec-WebSocket-Protocol", "SPDY/3.1+portforward.k8s.io")
        .body(kube::client::Body::empty())
        .expect("request");
    let resp = cluster.client().send(req).await.expect("response");
    assert_eq!(resp.status(), http::StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        resp.headers()["sec-websocket-protocol"],
        "SPDY/3.1+portforward.k8s.io"
    );
    assert_eq!(
        resp.headers()["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    cluster.shutdown().await.expect("shutdown");
}
