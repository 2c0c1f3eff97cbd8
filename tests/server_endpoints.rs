//! The API server's own endpoints: `/metrics` (upstream's metric names), `/healthz`,
//! `/livez` and `/readyz` with their checks, and the reviews behind `kubectl auth whoami` and
//! `kubectl auth can-i`.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchParams};
use kybernetes::Cluster;
use serde_json::{Value, json};

/// A request through the in-process client: the status and the body as text.
async fn send(c: &Cluster, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
    let builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", "application/json");
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let resp = c
        .client()
        .send(
            builder
                .body(kube::client::Body::from(bytes))
                .expect("request"),
        )
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn sample<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(prefix))
}

#[tokio::test]
async fn metrics_count_requests_by_verb_resource_and_code_and_gauge_open_watches() {
    let c = Cluster::builder().nodes(0).start().await.expect("start");
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "m"}})).expect("cm");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    let err = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect_err("exists");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err}"
    );
    let watch = cms
        .watch(&WatchParams::default(), "0")
        .await
        .expect("watch")
        .boxed();

    let (status, text) = send(&c, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    let created = r#"apiserver_request_total{verb="POST",group="",version="v1",resource="configmaps",subresource="",scope="namespace",component="apiserver",code="201"} 1"#;
    assert!(text.contains(created), "{text}");
    let conflict = r#"apiserver_request_total{verb="POST",group="",version="v1",resource="configmaps",subresource="",scope="namespace",component="apiserver",code="409"} 1"#;
    assert!(text.contains(conflict), "{text}");
    assert!(
        sample(&text, r#"apiserver_request_duration_seconds_count{verb="POST",group="",version="v1",resource="configmaps""#).is_some(),
        "{text}"
    );
    assert!(
        sample(
            &text,
            r#"etcd_request_duration_seconds_count{operation="create",type="configmaps"}"#
        )
        .is_some(),
        "{text}"
    );
    let open = r#"apiserver_longrunning_requests{verb="WATCH",group="",version="v1",resource="configmaps",subresource="",scope="namespace",component="apiserver"} 1"#;
    assert!(text.contains(open), "{text}");

    // The gauge drops once the watch is gone.
    drop(watch);
    let closed = open.replace("} 1", "} 0");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, text) = send(&c, "GET", "/metrics", None).await;
        if text.contains(&closed) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watch gauge stayed up: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn health_endpoints_list_their_checks() {
    let c = Cluster::builder().nodes(0).start().await.expect("start");
    assert_eq!(send(&c, "GET", "/healthz", None).await, (200, "ok".into()));
    assert_eq!(
        send(&c, "GET", "/livez/etcd", None).await,
        (200, "ok".into())
    );
    let (status, text) = send(&c, "GET", "/readyz?verbose", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        text,
        "[+]ping ok\n[+]log ok\n[+]etcd ok\n[+]shutdown ok\nreadyz check passed\n"
    );
    let (_, text) = send(&c, "GET", "/readyz?verbose&exclude=etcd", None).await;
    assert!(text.contains("[+]etcd excluded: ok"), "{text}");
    assert_eq!(send(&c, "GET", "/readyz/nonsense", None).await.0, 404);
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn reviews_answer_from_the_request_and_store_nothing() {
    let c = Cluster::builder().nodes(0).start().await.expect("start");
    let (status, text) = send(
        &c,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let review: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(review["kind"], "SelfSubjectReview");
    let groups = review["status"]["userInfo"]["groups"]
        .as_array()
        .expect("groups");
    assert!(groups.contains(&json!("system:masters")), "{review}");

    let (status, text) = send(
        &c,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        Some(json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": "create", "resource": "pods", "namespace": "default"}},
        })),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let review: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(review["status"]["allowed"], true, "{review}");

    let (status, _) = send(
        &c,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        Some(json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {}})),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = send(
        &c,
        "GET",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        None,
    )
    .await;
    assert_eq!(status, 405);
    let (_, discovery) = send(&c, "GET", "/apis/authentication.k8s.io/v1", None).await;
    assert!(discovery.contains("selfsubjectreviews"), "{discovery}");
    c.shutdown().await.expect("shutdown");
}
