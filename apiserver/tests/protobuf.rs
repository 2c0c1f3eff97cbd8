//! Request bodies in Kubernetes protobuf, as kubectl sends them, through the whole handler
//! chain: created objects read back as JSON; bad bodies answered with a Status and nothing
//! stored.

use std::sync::Arc;

use axum::body::Body;
use http::{Method, Request, StatusCode};
use kybernetes_apiserver::protobuf::writer::{MessageWriter as W, envelope};
use kybernetes_apiserver::{ApiServer, ApiServerConfig};
use kybernetes_core::Clock;
use serde_json::{Value, json};
use tower::ServiceExt;

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

async fn server() -> ApiServer {
    let store = Arc::new(kybernetes_store::MemoryStore::default());
    match ApiServer::with_config(store, Clock::new(), ApiServerConfig::default()).await {
        Ok(s) => s,
        Err(e) => panic!("starting the API server: {e:?}"),
    }
}

async fn call(
    api: &ApiServer,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Body::from(body)).expect("request");
    let resp = match api.router().oneshot(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    let code = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("response body");
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn post_protobuf(api: &ApiServer, uri: &str, body: Vec<u8>) -> (StatusCode, Value) {
    // kubectl's headers for a create.
    let headers = [("content-type", PROTOBUF), ("accept", "application/json")];
    call(api, Method::POST, uri, &headers, body).await
}

async fn get(api: &ApiServer, uri: &str) -> (StatusCode, Value) {
    call(
        api,
        Method::GET,
        uri,
        &[("accept", "application/json")],
        Vec::new(),
    )
    .await
}

/// ObjectMeta as gogo writes it: every non-pointer field, zero or not.
fn meta(name: &str) -> W {
    W::new()
        .string(1, name)
        .string(2, "")
        .string(3, "")
        .string(5, "")
        .string(6, "")
        .varint(7, 0)
        .raw(8, &[])
}

fn entry(key: &str, value: &str) -> W {
    W::new().string(1, key).string(2, value)
}

#[tokio::test]
async fn a_protobuf_configmap_is_created_and_read_back_as_json() {
    let api = server().await;
    let cm = W::new()
        .message(1, meta("settings").map_entry(11, entry("app", "web")))
        .map_entry(2, entry("a", "b"));
    let (code, created) = post_protobuf(
        &api,
        "/api/v1/namespaces/default/configmaps",
        envelope("v1", "ConfigMap", &cm),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["kind"], "ConfigMap");
    let (code, cm) = get(&api, "/api/v1/namespaces/default/configmaps/settings").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(cm["data"], json!({"a": "b"}));
    assert_eq!(cm["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(cm["metadata"]["namespace"], "default");
    assert!(
        cm["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty())
    );
    assert!(cm["metadata"]["creationTimestamp"].is_string());
}

#[tokio::test]
async fn a_protobuf_secret_keeps_its_bytes() {
    let api = server().await;
    let secret = W::new()
        .message(1, meta("creds"))
        .map_entry(2, W::new().string(1, "pw").raw(2, &[0xff, 0x00, b'x']))
        .string(3, "Opaque");
    let (code, created) = post_protobuf(
        &api,
        "/api/v1/namespaces/default/secrets",
        envelope("v1", "Secret", &secret),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let (_, secret) = get(&api, "/api/v1/namespaces/default/secrets/creds").await;
    assert_eq!(secret["data"], json!({"pw": "/wB4"}));
    assert_eq!(secret["type"], "Opaque");
}

fn deployment(name: &str) -> W {
    let labels = || entry("app", name);
    let container = W::new()
        .string(1, "web")
        .string(2, "nginx:1.27")
        .message(6, W::new().varint(3, 80).string(4, "TCP"))
        .message(
            8,
            W::new()
                .map_entry(
                    1,
                    W::new()
                        .string(1, "cpu")
                        .message(2, W::new().string(1, "500m")),
                )
                .map_entry(
                    2,
                    W::new()
                        .string(1, "memory")
                        .message(2, W::new().string(1, "64Mi")),
                ),
        )
        .string(14, "")
        .string(13, "");
    let spec = W::new()
        .varint(1, 2)
        .message(2, W::new().map_entry(1, labels()))
        .message(
            3,
            W::new()
                .message(1, meta("").map_entry(11, labels()))
                .message(
                    2,
                    W::new().message(2, container).string(3, "").string(6, ""),
                ),
        )
        .message(
            4,
            W::new().string(1, "RollingUpdate").message(
                2,
                W::new()
                    .message(1, W::new().varint(1, 0).varint(2, 1))
                    .message(2, W::new().varint(1, 1).string(3, "50%")),
            ),
        )
        .varint(5, 0);
    W::new()
        .message(1, meta(name))
        .message(2, spec)
        .message(3, W::new())
}

#[tokio::test]
async fn a_protobuf_deployment_with_quantities_and_int_or_strings_is_defaulted_and_stored() {
    let api = server().await;
    let (code, created) = post_protobuf(
        &api,
        "/apis/apps/v1/namespaces/default/deployments",
        envelope("apps/v1", "Deployment", &deployment("web")),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let (_, d) = get(&api, "/apis/apps/v1/namespaces/default/deployments/web").await;
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["spec"]["selector"],
        json!({"matchLabels": {"app": "web"}})
    );
    assert_eq!(
        d["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "50%"}})
    );
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx:1.27");
    assert_eq!(
        c["ports"],
        json!([{"containerPort": 80, "protocol": "TCP"}])
    );
    assert_eq!(
        c["resources"],
        // Requests default to the limits.
        json!({"limits": {"cpu": "500m"}, "requests": {"cpu": "500m", "memory": "64Mi"}})
    );
    // Defaults were applied to fields the protobuf body carried as empty strings.
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
}

#[tokio::test]
async fn an_unregistered_kind_is_a_400_and_nothing_is_stored() {
    let api = server().await;
    let body = envelope("v1", "Frobnicator", &W::new().message(1, meta("x")));
    let (code, status) = post_protobuf(&api, "/api/v1/namespaces/default/configmaps", body).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{status}");
    assert_eq!(status["kind"], "Status");
    assert_eq!(
        status["message"],
        "Frobnicator in version \"v1\" cannot be handled as a ConfigMap: no kind \"Frobnicator\" is registered for version \"v1\" in scheme \"pkg/api/legacyscheme/scheme.go:30\""
    );
    // A registered kind of another resource is refused by the type check after transcoding.
    let body = envelope("v1", "Secret", &W::new().message(1, meta("x")));
    let (code, _) = post_protobuf(&api, "/api/v1/namespaces/default/configmaps", body).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (_, list) = get(&api, "/api/v1/namespaces/default/configmaps").await;
    assert_eq!(list["items"], json!([]), "{list}");
}

#[tokio::test]
async fn a_malformed_protobuf_body_is_a_400_that_says_where() {
    let api = server().await;
    let (code, status) = post_protobuf(
        &api,
        "/api/v1/namespaces/default/configmaps",
        b"{\"kind\":\"ConfigMap\"}".to_vec(),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        status["message"],
        "the object provided is unrecognized (must be of type ConfigMap): provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
    );
    // metadata.name sent as a number.
    let body = envelope(
        "v1",
        "ConfigMap",
        &W::new().message(1, W::new().varint(1, 3)),
    );
    let (code, status) = post_protobuf(&api, "/api/v1/namespaces/default/configmaps", body).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        status["message"],
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: the ConfigMap message is malformed: at metadata.name: field 1 needs wire type length-delimited, found varint"
    );
    let (_, list) = get(&api, "/api/v1/namespaces/default/configmaps").await;
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn a_protobuf_update_replaces_the_object() {
    let api = server().await;
    let cm = |v: &str| {
        envelope(
            "v1",
            "ConfigMap",
            &W::new().message(1, meta("c")).map_entry(2, entry("k", v)),
        )
    };
    let (code, _) = post_protobuf(&api, "/api/v1/namespaces/default/configmaps", cm("1")).await;
    assert_eq!(code, StatusCode::CREATED);
    let headers = [("content-type", PROTOBUF)];
    let uri = "/api/v1/namespaces/default/configmaps/c";
    let (code, updated) = call(&api, Method::PUT, uri, &headers, cm("2")).await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert_eq!(updated["data"], json!({"k": "2"}));
    // Patch bodies are never protobuf.
    let (code, status) = call(&api, Method::PATCH, uri, &headers, cm("3")).await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{status}");
}
