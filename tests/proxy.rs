//! The `proxy` subresources with the real kubectl (`/usr/bin/kubectl`, 1.32) and kube-rs:
//! `pods/NAME:PORT/proxy/PATH`, `services/NAME:PORT/proxy/PATH` and
//! `nodes/NAME/proxy/stats/summary`, reached through the node agent, and `kubectl proxy`.
//! kubectl missing fails these tests; it never skips them.

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::served::{Served, kubectl, kubectl_command, running_pod, served, text};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{Api, PostParams};
use kybernetes::runtime::FakeRuntime;
use kybernetes::runtime::fake::{ContainerScript, PortResponder};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const WITHIN: Duration = Duration::from_secs(30);

/// A served cluster with pod `web` running a container that echoes HTTP requests on 8080
/// (its declared port) and answers "hello" on 9090.
async fn web() -> Served {
    let fake = FakeRuntime::default();
    fake.script_image(
        "web",
        ContainerScript::new()
            .serve_port(8080, PortResponder::HttpEcho)
            .serve_port(9090, PortResponder::http(200, "hello from 9090\n")),
    );
    let s = served(&fake).await;
    running_pod(
        &s.cluster,
        "web",
        json!({"containers": [{"name": "app", "image": "web", "ports": [{"containerPort": 8080}]}]}),
    )
    .await;
    s
}

async fn raw(s: &Served, path: &str) -> (bool, String, String) {
    let out = kubectl(&s.kubeconfig, &["get", "--raw", path]).await;
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test]
async fn kubectl_get_raw_reaches_a_pod_port_through_pods_proxy() {
    let s = web().await;
    let (ok, out, err) = raw(
        &s,
        "/api/v1/namespaces/default/pods/web:8080/proxy/some/path?a=1&b=two",
    )
    .await;
    assert!(ok, "kubectl get --raw failed: {err}");
    assert!(
        out.starts_with("GET /some/path?a=1&b=two HTTP/1.1\r\n"),
        "{out}"
    );
    // kubectl authenticates with a client certificate; no credentials reach the pod either way.
    assert!(
        !out.to_ascii_lowercase().contains("authorization:"),
        "{out}"
    );

    // No port: the first declared container port; the trailing slash is kept.
    let (ok, out, err) = raw(&s, "/api/v1/namespaces/default/pods/web/proxy/").await;
    assert!(ok, "{err}");
    assert!(out.starts_with("GET / HTTP/1.1\r\n"), "{out}");
    let (ok, out, err) = raw(&s, "/api/v1/namespaces/default/pods/http:web:9090/proxy/").await;
    assert!(ok, "{err}");
    assert_eq!(out, "hello from 9090\n");

    let (ok, _, err) = raw(&s, "/api/v1/namespaces/default/pods/nope:8080/proxy/").await;
    assert!(!ok);
    assert!(
        err.contains("NotFound") && err.contains("pods \"nope\" not found"),
        "{err}"
    );
    let (ok, _, err) = raw(&s, "/api/v1/namespaces/default/pods/web:7070/proxy/").await;
    assert!(!ok);
    assert!(
        err.contains("ServiceUnavailable") && err.contains("error trying to reach service"),
        "{err}"
    );
    let (ok, _, err) = raw(&s, "/api/v1/namespaces/default/pods/ftp:web:21/proxy/").await;
    assert!(!ok);
    assert!(
        err.contains("BadRequest") && err.contains("invalid pod request"),
        "{err}"
    );
    s.cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_pod_without_an_address_is_refused() {
    let fake = FakeRuntime::default();
    let s = served(&fake).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::default_namespaced(s.cluster.client());
    // Bound to a node that does not exist: it never starts, so it never gets an address.
    let pod = serde_json::from_value(json!({
        "metadata": {"name": "pending"},
        "spec": {"nodeName": "elsewhere", "containers": [{"name": "app", "image": "web"}]},
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let (ok, _, err) = raw(&s, "/api/v1/namespaces/default/pods/pending:80/proxy/").await;
    assert!(!ok);
    assert!(
        err.contains("BadRequest") && err.contains("address not allowed"),
        "{err}"
    );
    s.cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn kubectl_get_raw_reaches_a_ready_endpoint_through_services_proxy() {
    let s = web().await;
    let services: Api<Service> = Api::default_namespaced(s.cluster.client());
    let svc = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }))
    .expect("service");
    services
        .create(&PostParams::default(), &svc)
        .await
        .expect("create service");
    let empty = serde_json::from_value(json!({
        "metadata": {"name": "empty"},
        "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]},
    }))
    .expect("service");
    services
        .create(&PostParams::default(), &empty)
        .await
        .expect("create service");
    let endpoints: Api<Endpoints> = Api::default_namespaced(s.cluster.client());
    common::until("endpoints of web", WITHIN, || {
        let endpoints = endpoints.clone();
        async move {
            endpoints
                .get("web")
                .await
                .ok()
                .and_then(|e| e.subsets)
                .is_some_and(|s| {
                    s.iter()
                        .any(|s| s.addresses.as_ref().is_some_and(|a| !a.is_empty()))
                })
        }
    })
    .await;

    for id in ["web:80", "web:http", "http:web:http"] {
        let path = format!("/api/v1/namespaces/default/services/{id}/proxy/through/service?x=y");
        let (ok, out, err) = raw(&s, &path).await;
        assert!(ok, "{id}: {err}");
        assert!(
            out.starts_with("GET /through/service?x=y HTTP/1.1\r\n"),
            "{id}: {out}"
        );
    }
    let (ok, _, err) = raw(&s, "/api/v1/namespaces/default/services/web:81/proxy/").await;
    assert!(!ok);
    assert!(
        err.contains("no service port 81 found for service \"web\""),
        "{err}"
    );
    common::until("endpoints of empty", WITHIN, || {
        let endpoints = endpoints.clone();
        async move { endpoints.get("empty").await.is_ok() }
    })
    .await;
    let (ok, _, err) = raw(&s, "/api/v1/namespaces/default/services/empty/proxy/").await;
    assert!(!ok);
    assert!(
        err.contains("ServiceUnavailable")
            && err.contains("no endpoints available for service \"empty\""),
        "{err}"
    );
    let (ok, _, err) = raw(&s, "/api/v1/namespaces/default/services/missing/proxy/").await;
    assert!(!ok);
    assert!(err.contains("NotFound"), "{err}");
    s.cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn kubectl_get_raw_reads_the_node_agents_endpoints_through_nodes_proxy() {
    let s = web().await;
    let (ok, out, err) = raw(&s, "/api/v1/nodes/node-1/proxy/stats/summary").await;
    assert!(ok, "{err}");
    let summary: Value = serde_json::from_str(&out).expect("summary is JSON");
    assert_eq!(summary["node"]["nodeName"], "node-1");
    assert!(
        summary["node"]["memory"]["workingSetBytes"].is_u64(),
        "{summary}"
    );
    let pods = summary["pods"].as_array().expect("pods");
    let web = pods
        .iter()
        .find(|p| p["podRef"]["name"] == "web")
        .expect("the running pod is summarized");
    assert_eq!(web["podRef"]["namespace"], "default");
    assert_eq!(web["containers"][0]["name"], "app");
    assert!(
        web["containers"][0]["cpu"]["usageNanoCores"].is_u64(),
        "{web}"
    );

    let (ok, out, err) = raw(&s, "/api/v1/nodes/node-1/proxy/healthz").await;
    assert!(ok, "{err}");
    assert_eq!(out, "ok");
    let (ok, out, err) = raw(&s, "/api/v1/nodes/node-1/proxy/pods").await;
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(&out).expect("pod list is JSON");
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["items"][0]["metadata"]["name"], "web");
    let (ok, out, err) = raw(&s, "/api/v1/nodes/node-1:10250/proxy/metrics/resource").await;
    assert!(ok, "{err}");
    assert!(
        out.contains("container_memory_working_set_bytes{container=\"app\",namespace=\"default\",pod=\"web\"}"),
        "{out}"
    );
    let (ok, _, err) = raw(&s, "/api/v1/nodes/node-9/proxy/healthz").await;
    assert!(!ok);
    assert!(err.contains("NotFound"), "{err}");
    s.cluster.shutdown().await.expect("shutdown");
}

/// One HTTP/1.1 GET to `127.0.0.1:port`.
async fn http_get(port: u16, path: &str) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to kubectl proxy");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("HTTP handshake");
    tokio::spawn(conn);
    let request = http::Request::get(path)
        .header("host", format!("127.0.0.1:{port}"))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, text(&body))
}

#[tokio::test]
async fn kubectl_proxy_serves_the_api_and_pod_proxy_paths() {
    let s = web().await;
    let mut child =
        tokio::process::Command::from(kubectl_command(&s.kubeconfig, &["proxy", "--port=0"]))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("kubectl must be installed (it is at /usr/bin/kubectl on the machine image)");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(WITHIN, lines.next_line())
        .await
        .expect("kubectl proxy starts within 30 s")
        .expect("read kubectl's output")
        .expect("kubectl proxy prints where it serves");
    let port: u16 = line
        .strip_prefix("Starting to serve on 127.0.0.1:")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));

    let (status, body) = http_get(port, "/api/v1/namespaces").await;
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).expect("namespace list");
    assert_eq!(list["kind"], "NamespaceList");
    assert!(
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|n| n["metadata"]["name"] == "default")
    );

    let (status, body) = http_get(
        port,
        "/api/v1/namespaces/default/pods/web:8080/proxy/via/kubectl?q=1",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("GET /via/kubectl?q=1 HTTP/1.1\r\n"),
        "{body}"
    );
    child.kill().await.expect("stop kubectl proxy");
    s.cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn kube_rs_posts_through_pods_proxy_with_its_body_and_method() {
    let s = web().await;
    let client = s.cluster.client();
    let request = http::Request::post("/api/v1/namespaces/default/pods/web:8080/proxy/submit?id=7")
        .header("content-type", "application/json")
        .header("x-custom", "kept")
        .body(br#"{"hello":"pod"}"#.to_vec())
        .expect("request");
    let echoed = client.request_text(request).await.expect("proxied POST");
    assert!(
        echoed.starts_with("POST /submit?id=7 HTTP/1.1\r\n"),
        "{echoed}"
    );
    assert!(
        echoed.to_ascii_lowercase().contains("x-custom: kept\r\n"),
        "{echoed}"
    );
    assert!(echoed.ends_with("\r\n\r\n{\"hello\":\"pod\"}"), "{echoed}");

    for method in [http::Method::PUT, http::Method::DELETE, http::Method::PATCH] {
        let request = http::Request::builder()
            .method(method.clone())
            .uri("/api/v1/namespaces/default/pods/web:8080/proxy/m")
            .body(Vec::new())
            .expect("request");
        let echoed = client.request_text(request).await.expect("proxied request");
        assert!(
            echoed.starts_with(&format!("{method} /m HTTP/1.1\r\n")),
            "{echoed}"
        );
    }
    let missing = http::Request::get("/api/v1/namespaces/default/pods/nope/proxy/")
        .body(Vec::new())
        .expect("request");
    match client.request_text(missing).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 404),
        other => panic!("expected a 404 Status, got {other:?}"),
    }
    s.cluster.shutdown().await.expect("shutdown");
}
