//! The handler chain end to end, through the router as a `tower::Service`: authentication,
//! authorization, admission, dry runs and bad input.

use std::sync::Arc;

use axum::body::Body;
use http::{Method, Request, StatusCode};
use kybernetes_apiserver::admission::{Admission, AdmissionAttributes, Operation};
use kybernetes_apiserver::authentication::{GROUP_AUTHENTICATED, UserInfo};
use kybernetes_apiserver::authorization::{Attributes, Authorizer, Decision};
use kybernetes_apiserver::{ApiServer, ApiServerConfig};
use kybernetes_core::{ApiError, Clock};
use serde_json::{Value, json};
use tower::ServiceExt;

async fn server(config: ApiServerConfig) -> ApiServer {
    let store = Arc::new(kybernetes_store::MemoryStore::default());
    match ApiServer::with_config(store, Clock::new(), config).await {
        Ok(s) => s,
        Err(e) => panic!("starting the API server: {e:?}"),
    }
}

fn request(method: Method, uri: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    match Request::builder()
        .method(method)
        .uri(uri)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(body.into())
    {
        Ok(r) => r,
        Err(e) => panic!("building a request to {uri}: {e}"),
    }
}

fn json_request(method: Method, uri: &str, body: &Value) -> Request<Body> {
    request(method, uri, "application/json", body.to_string())
}

async fn call(service: axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = match service.oneshot(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    let code = resp.status();
    let bytes = match axum::body::to_bytes(resp.into_body(), usize::MAX).await {
        Ok(b) => b,
        Err(e) => panic!("reading a response body: {e}"),
    };
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (code, value)
}

fn user(name: &str) -> UserInfo {
    UserInfo {
        name: name.into(),
        groups: vec![GROUP_AUTHENTICATED.into()],
        ..Default::default()
    }
}

fn configmap(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name }, "data": { "a": "1" } })
}

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

async fn configmap_exists(api: &ApiServer, name: &str) -> bool {
    let (code, _) = call(
        api.router(),
        json_request(Method::GET, &format!("{CONFIGMAPS}/{name}"), &Value::Null),
    )
    .await;
    code == StatusCode::OK
}

/// Lets only reads through.
struct ReadOnly;

impl Authorizer for ReadOnly {
    fn authorize(&self, a: &Attributes<'_>) -> Decision {
        match a.verb {
            "get" | "list" | "watch" => Decision::Allow,
            _ => Decision::NoOpinion,
        }
    }
}

/// Denies everything to everyone.
struct DenyAll;

impl Authorizer for DenyAll {
    fn authorize(&self, _: &Attributes<'_>) -> Decision {
        Decision::Deny(String::new())
    }
}

#[tokio::test]
async fn a_denying_authorizer_answers_403_with_upstreams_message() {
    let api = server(ApiServerConfig::default().with_authorizer(DenyAll)).await;
    let mut req = json_request(Method::GET, "/api/v1/namespaces/default/pods", &Value::Null);
    req.extensions_mut().insert(user("x"));
    let (code, status) = call(api.authenticated_service(), req).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(
        status["message"],
        r#"pods is forbidden: User "x" cannot list resource "pods" in API group "" in the namespace "default""#
    );

    // The loopback identity of the in-process router is in system:masters: always allowed.
    let (code, _) = call(
        api.router(),
        json_request(Method::GET, "/api/v1/namespaces/default/pods", &Value::Null),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test]
async fn an_authorizer_without_an_opinion_forbids_and_names_the_verb_and_object() {
    let api = server(ApiServerConfig::default().with_authorizer(ReadOnly)).await;
    let mut req = json_request(
        Method::DELETE,
        "/apis/apps/v1/namespaces/ns1/deployments/web",
        &Value::Null,
    );
    req.extensions_mut().insert(user("alice"));
    let (code, status) = call(api.authenticated_service(), req).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        status["message"],
        r#"deployments.apps "web" is forbidden: User "alice" cannot delete resource "deployments" in API group "apps" in the namespace "ns1""#
    );
    let mut req = json_request(Method::GET, "/api/v1/namespaces/default/pods", &Value::Null);
    req.extensions_mut().insert(user("alice"));
    let (code, _) = call(api.authenticated_service(), req).await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test]
async fn a_request_without_identity_on_the_authenticated_service_is_unauthorized() {
    let api = server(ApiServerConfig::default()).await;
    let (code, status) = call(
        api.authenticated_service(),
        json_request(Method::GET, "/api/v1/namespaces/default/pods", &Value::Null),
    )
    .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Unauthorized");
    assert_eq!(status["code"], 401);
}

#[tokio::test]
async fn the_default_authorizer_forbids_anonymous_requests() {
    let api = server(ApiServerConfig::default()).await;
    let mut req = json_request(Method::GET, "/api/v1/namespaces/default/pods", &Value::Null);
    req.extensions_mut().insert(UserInfo::anonymous());
    let (code, status) = call(api.authenticated_service(), req).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{status}");
}

/// Refuses configmaps named `forbidden-*`, and labels every created configmap.
struct ConfigMapPolicy;

#[async_trait::async_trait]
impl Admission for ConfigMapPolicy {
    fn name(&self) -> &str {
        "ConfigMapPolicy"
    }

    async fn admit(&self, a: &AdmissionAttributes<'_>, obj: &mut Value) -> Result<(), ApiError> {
        if a.operation == Operation::Create && a.resource.plural == "configmaps" {
            obj["metadata"]["labels"] = json!({ "admitted-by": "policy" });
        }
        Ok(())
    }

    async fn validate(&self, a: &AdmissionAttributes<'_>, _obj: &Value) -> Result<(), ApiError> {
        if a.resource.plural == "configmaps" && a.name.starts_with("forbidden-") {
            return Err(ApiError::forbidden(format!(
                "configmaps \"{}\" is forbidden: refused by ConfigMapPolicy",
                a.name
            )));
        }
        Ok(())
    }
}

#[tokio::test]
async fn an_admission_plugin_can_refuse_a_create_and_nothing_is_stored() {
    let api = server(ApiServerConfig::default().with_admission(ConfigMapPolicy)).await;
    let (code, status) = call(
        api.router(),
        json_request(Method::POST, CONFIGMAPS, &configmap("forbidden-one")),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{status}");
    assert!(!configmap_exists(&api, "forbidden-one").await);

    // The mutating phase ran on an admitted create.
    let (code, created) = call(
        api.router(),
        json_request(Method::POST, CONFIGMAPS, &configmap("fine")),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["metadata"]["labels"]["admitted-by"], "policy");
}

#[tokio::test]
async fn namespace_lifecycle_is_the_first_admission_plugin() {
    let api = server(ApiServerConfig::default()).await;
    let (code, status) = call(
        api.router(),
        json_request(
            Method::POST,
            "/api/v1/namespaces/missing/configmaps",
            &configmap("c"),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{status}");
    assert_eq!(status["details"]["kind"], "namespaces");
}

#[tokio::test]
async fn dry_run_on_create_update_patch_and_delete_stores_nothing() {
    let api = server(ApiServerConfig::default()).await;
    // create
    let (code, obj) = call(
        api.router(),
        json_request(
            Method::POST,
            &format!("{CONFIGMAPS}?dryRun=All"),
            &configmap("dry"),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{obj}");
    assert_eq!(obj["metadata"]["name"], "dry");
    assert!(!configmap_exists(&api, "dry").await);

    // Validation still runs on a dry run.
    let mut bad = configmap("dry-bad");
    bad["data"] = json!({ "not a key!": "x" });
    let (code, _) = call(
        api.router(),
        json_request(Method::POST, &format!("{CONFIGMAPS}?dryRun=All"), &bad),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);

    let (code, stored) = call(
        api.router(),
        json_request(Method::POST, CONFIGMAPS, &configmap("real")),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    let rv = stored["metadata"]["resourceVersion"].clone();
    let get = || async {
        call(
            api.router(),
            json_request(Method::GET, &format!("{CONFIGMAPS}/real"), &Value::Null),
        )
        .await
        .1
    };

    // update
    let mut changed = stored.clone();
    changed["data"]["a"] = json!("2");
    let (code, answered) = call(
        api.router(),
        json_request(
            Method::PUT,
            &format!("{CONFIGMAPS}/real?dryRun=All"),
            &changed,
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{answered}");
    assert_eq!(answered["data"]["a"], "2");
    assert_eq!(get().await["data"]["a"], "1");

    // patch
    let (code, answered) = call(
        api.router(),
        request(
            Method::PATCH,
            &format!("{CONFIGMAPS}/real?dryRun=All"),
            "application/merge-patch+json",
            r#"{"data":{"a":"3"}}"#,
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{answered}");
    assert_eq!(answered["data"]["a"], "3");
    assert_eq!(get().await["data"]["a"], "1");

    // delete and deletecollection
    let (code, _) = call(
        api.router(),
        json_request(
            Method::DELETE,
            &format!("{CONFIGMAPS}/real?dryRun=All"),
            &Value::Null,
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = call(
        api.router(),
        json_request(
            Method::DELETE,
            &format!("{CONFIGMAPS}?dryRun=All"),
            &Value::Null,
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let after = get().await;
    assert_eq!(after["metadata"]["resourceVersion"], rv, "{after}");
}

#[tokio::test]
async fn dry_run_on_status_and_scale_stores_nothing() {
    let api = server(ApiServerConfig::default()).await;
    let deploy = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "web" },
        "spec": { "replicas": 1, "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "c", "image": "nginx:1" }] } } }
    });
    let base = "/apis/apps/v1/namespaces/default/deployments";
    let (code, created) = call(api.router(), json_request(Method::POST, base, &deploy)).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let (code, scale) = call(
        api.router(),
        request(
            Method::PATCH,
            &format!("{base}/web/scale?dryRun=All"),
            "application/merge-patch+json",
            r#"{"spec":{"replicas":5}}"#,
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{scale}");
    assert_eq!(scale["spec"]["replicas"], 5);
    let mut with_status = created.clone();
    with_status["status"] = json!({ "replicas": 7 });
    let (code, _) = call(
        api.router(),
        json_request(
            Method::PUT,
            &format!("{base}/web/status?dryRun=All"),
            &with_status,
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (_, now) = call(
        api.router(),
        json_request(Method::GET, &format!("{base}/web"), &Value::Null),
    )
    .await;
    assert_eq!(now["spec"]["replicas"], 1);
    assert!(now["status"].get("replicas").is_none(), "{now}");
    assert_eq!(
        now["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
}

#[tokio::test]
async fn dry_run_service_create_keeps_no_allocation() {
    let api = server(ApiServerConfig::default()).await;
    let svc = |name: &str, node_port: i64| {
        json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": name },
            "spec": { "type": "NodePort", "ports": [{ "port": 80, "nodePort": node_port }] } })
    };
    let base = "/api/v1/namespaces/default/services";
    let (code, dry) = call(
        api.router(),
        json_request(
            Method::POST,
            &format!("{base}?dryRun=All"),
            &svc("a", 30080),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{dry}");
    // The same NodePort is still free for a real create.
    let (code, real) = call(
        api.router(),
        json_request(Method::POST, base, &svc("b", 30080)),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{real}");
}

#[tokio::test]
async fn a_body_over_3_mib_is_refused_with_413_and_nothing_is_stored() {
    let api = server(ApiServerConfig::default()).await;
    let mut big = configmap("big");
    big["data"]["a"] = json!("x".repeat(3 * 1024 * 1024 + 1));
    let (code, status) = call(api.router(), json_request(Method::POST, CONFIGMAPS, &big)).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(status["reason"], "RequestEntityTooLarge");
    assert!(!configmap_exists(&api, "big").await);

    // A declared length over the limit is refused before the body is read.
    let mut declared = json_request(Method::POST, CONFIGMAPS, &configmap("declared"));
    declared.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(4 * 1024 * 1024_u64),
    );
    let (code, _) = call(api.router(), declared).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!configmap_exists(&api, "declared").await);
}

#[tokio::test]
async fn bad_input_gets_upstreams_codes_and_stores_nothing() {
    let api = server(ApiServerConfig::default()).await;
    // malformed JSON
    let (code, status) = call(
        api.router(),
        request(
            Method::POST,
            CONFIGMAPS,
            "application/json",
            "{\"metadata\": {",
        ),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("EOF")),
        "{status}"
    );

    // wrong kind, wrong apiVersion
    let mut wrong_kind = configmap("wk");
    wrong_kind["kind"] = json!("Secret");
    let (code, _) = call(
        api.router(),
        json_request(Method::POST, CONFIGMAPS, &wrong_kind),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let mut wrong_version = configmap("wv");
    wrong_version["apiVersion"] = json!("v2");
    let (code, _) = call(
        api.router(),
        json_request(Method::POST, CONFIGMAPS, &wrong_version),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(!configmap_exists(&api, "wk").await);
    assert!(!configmap_exists(&api, "wv").await);

    // a patch of an unsupported type
    call(
        api.router(),
        json_request(Method::POST, CONFIGMAPS, &configmap("p")),
    )
    .await;
    let (code, status) = call(
        api.router(),
        request(
            Method::PATCH,
            &format!("{CONFIGMAPS}/p"),
            "text/plain",
            "{}",
        ),
    )
    .await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("application/merge-patch+json")),
        "{status}"
    );

    // a method no verb maps to, and POST to a named object
    let (code, _) = call(
        api.router(),
        json_request(Method::OPTIONS, CONFIGMAPS, &Value::Null),
    )
    .await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
    let (code, _) = call(
        api.router(),
        json_request(Method::POST, &format!("{CONFIGMAPS}/p"), &configmap("p")),
    )
    .await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);

    // PUT and PATCH of a collection
    let (code, _) = call(
        api.router(),
        json_request(Method::PUT, CONFIGMAPS, &configmap("p")),
    )
    .await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
    let (code, _) = call(
        api.router(),
        request(
            Method::PATCH,
            CONFIGMAPS,
            "application/merge-patch+json",
            "{}",
        ),
    )
    .await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);

    // an unsupported dryRun value
    let (code, _) = call(
        api.router(),
        json_request(
            Method::POST,
            &format!("{CONFIGMAPS}?dryRun=Some"),
            &configmap("d"),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(!configmap_exists(&api, "d").await);
}

#[tokio::test]
async fn a_put_creates_only_kinds_whose_strategy_allows_create_on_update() {
    let api = server(ApiServerConfig::default()).await;
    let lease = json!({ "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": "leader" }, "spec": { "holderIdentity": "a" } });
    let (code, created) = call(
        api.router(),
        json_request(
            Method::PUT,
            "/apis/coordination.k8s.io/v1/namespaces/default/leases/leader",
            &lease,
        ),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["spec"]["holderIdentity"], "a");

    let (code, _) = call(
        api.router(),
        json_request(
            Method::PUT,
            &format!("{CONFIGMAPS}/absent"),
            &configmap("absent"),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(!configmap_exists(&api, "absent").await);
}

#[tokio::test]
async fn dry_run_service_update_releases_the_node_ports_it_allocated() {
    let api = server(ApiServerConfig::default()).await;
    let base = "/api/v1/namespaces/default/services";
    let cluster_ip = json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "a" },
        "spec": { "ports": [{ "port": 80 }] } });
    let (code, created) = call(api.router(), json_request(Method::POST, base, &cluster_ip)).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let (code, answered) = call(
        api.router(),
        request(
            Method::PATCH,
            &format!("{base}/a?dryRun=All"),
            "application/merge-patch+json",
            r#"{"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":30090}]}}"#,
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{answered}");
    assert_eq!(answered["spec"]["ports"][0]["nodePort"], 30090);
    let node_port = json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "b" },
        "spec": { "type": "NodePort", "ports": [{ "port": 80, "nodePort": 30090 }] } });
    let (code, real) = call(api.router(), json_request(Method::POST, base, &node_port)).await;
    assert_eq!(code, StatusCode::CREATED, "{real}");
}
