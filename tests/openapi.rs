//! The OpenAPI documents (`/openapi/v3`, its group-version documents, `/openapi/v2`) and
//! `fieldValidation` on built-in kinds, in process; then the real kubectl against a served
//! cluster: `create -f` with its default server-side validation, and `explain`.

use std::time::Duration;

use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kybernetes::Cluster;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn warnings(&self) -> Vec<&str> {
        self.headers
            .get_all(header::WARNING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }
}

async fn cluster() -> Cluster {
    Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("cluster starts")
}

async fn call(
    c: &Cluster,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = match body {
        Some(b) => axum_body(serde_json::to_vec(&b).expect("encode")),
        None => axum_body(Vec::new()),
    };
    let resp = c
        .api_server()
        .router()
        .oneshot(req.body(body).expect("request"))
        .await
        .expect("router answers");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes().to_vec();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

fn axum_body(bytes: Vec<u8>) -> http_body_util::Full<bytes::Bytes> {
    http_body_util::Full::new(bytes::Bytes::from(bytes))
}

async fn get(c: &Cluster, uri: &str) -> Reply {
    call(c, Method::GET, uri, &[], None).await
}

fn deployment_body(name: &str, extra_spec: Value) -> Value {
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "main", "image": "busybox" }] },
            },
        },
    });
    if let (Some(spec), Some(extra)) = (d["spec"].as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    d
}

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

/// The URL the index gives a group-version's document.
async fn document_url(c: &Cluster, gv: &str) -> String {
    let index = get(c, "/openapi/v3").await;
    assert_eq!(index.status, StatusCode::OK);
    index.json()["paths"][gv]["serverRelativeURL"]
        .as_str()
        .unwrap_or_else(|| panic!("{gv} is not in the index: {}", index.json()))
        .to_string()
}

#[tokio::test]
async fn v3_index_points_at_each_group_version_by_hash() {
    let c = cluster().await;
    let index = get(&c, "/openapi/v3").await.json();
    for gv in [
        "api/v1",
        "apis/apps/v1",
        "apis/batch/v1",
        "apis/coordination.k8s.io/v1",
    ] {
        let url = index["paths"][gv]["serverRelativeURL"].as_str().expect(gv);
        assert!(url.starts_with(&format!("/openapi/v3/{gv}?hash=")), "{url}");
    }
    let url = document_url(&c, "apis/apps/v1").await;
    let hash = url.split("hash=").nth(1).expect("hash").to_string();
    let doc = get(&c, &url).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.header(header::CACHE_CONTROL), Some("public, immutable"));
    assert!(doc.header(header::EXPIRES).is_some());
    assert_eq!(
        doc.header(header::ETAG),
        Some(format!("\"{hash}\"").as_str())
    );
    assert_eq!(doc.json()["openapi"], "3.0.0");

    // Without the hash the document is not cached for good; with an old one it redirects.
    let plain = get(&c, "/openapi/v3/apis/apps/v1").await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(plain.header(header::CACHE_CONTROL), None);
    assert_eq!(plain.body, doc.body);
    let stale = get(&c, "/openapi/v3/apis/apps/v1?hash=0123").await;
    assert_eq!(stale.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(stale.header(header::LOCATION), Some(url.as_str()));
    let etag = format!("\"{hash}\"");
    let revalidated = call(
        &c,
        Method::GET,
        "/openapi/v3/apis/apps/v1",
        &[("if-none-match", &etag)],
        None,
    )
    .await;
    assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);
    assert_eq!(
        get(&c, "/openapi/v3/apis/nope/v1").await.status,
        StatusCode::NOT_FOUND
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn deployment_patch_takes_field_validation_and_names_its_kind() {
    let c = cluster().await;
    let doc = get(&c, &document_url(&c, "apis/apps/v1").await)
        .await
        .json();
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({ "group": "apps", "kind": "Deployment", "version": "v1" })
    );
    assert_eq!(patch["x-kubernetes-action"], "patch");
    let params = patch["parameters"].as_array().expect("parameters");
    assert!(
        params
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"),
        "{params:?}"
    );
    let content = &patch["requestBody"]["content"];
    for t in [
        "application/strategic-merge-patch+json",
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/apply-patch+yaml",
    ] {
        assert!(content.get(t).is_some(), "{t} missing: {content}");
    }

    let schemas = &doc["components"]["schemas"];
    let d = &schemas["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        d["x-kubernetes-group-version-kind"],
        json!([{ "group": "apps", "kind": "Deployment", "version": "v1" }])
    );
    assert!(d["description"].as_str().is_some_and(|s| !s.is_empty()));
    let strategy = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
    assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
    assert!(
        strategy["description"]
            .as_str()
            .is_some_and(|s| s.contains("deployment strategy"))
    );
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    // Every reference resolves inside the document.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().expect("name");
        assert!(schemas.get(name).is_some(), "dangling reference {name}");
    }
    assert!(
        schemas.get("io.k8s.api.core.v1.Service").is_none(),
        "only what apps/v1 uses"
    );
    c.shutdown().await.expect("shutdown");
}

fn widget_crd(properties: Value) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "metadata": { "name": "widgets.example.com" },
        "spec": {
            "group": "example.com",
            "names": { "kind": "Widget", "plural": "widgets", "singular": "widget" },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": { "type": "object", "description": "The widget.", "properties": properties } },
                } },
            }],
        },
    }))
    .expect("CRD")
}

#[tokio::test]
async fn crd_group_versions_are_documented_with_their_schema() {
    let c = cluster().await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.client());
    crds.create(
        &PostParams::default(),
        &widget_crd(json!({ "size": { "type": "integer", "description": "How big." } })),
    )
    .await
    .expect("create CRD");
    let url = document_url(&c, "apis/example.com/v1").await;
    let doc = get(&c, &url).await.json();
    let widget = &doc["components"]["schemas"]["com.example.v1.Widget"];
    assert_eq!(
        widget["x-kubernetes-group-version-kind"],
        json!([{ "group": "example.com", "kind": "Widget", "version": "v1" }])
    );
    assert_eq!(
        widget["properties"]["spec"]["properties"]["size"]["description"],
        "How big."
    );
    assert!(
        doc["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object()
    );
    let patch =
        &doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Widget");
    assert!(
        patch["parameters"]
            .as_array()
            .expect("params")
            .iter()
            .any(|p| p["name"] == "fieldValidation")
    );
    // No merge keys, so no strategic merge patch: kubectl apply sends a merge patch.
    assert!(
        patch["requestBody"]["content"]
            .get("application/strategic-merge-patch+json")
            .is_none()
    );

    // A new schema is a new document, at a new hash.
    let mut crd = crds.get("widgets.example.com").await.expect("get CRD");
    crd.spec.versions[0].schema = widget_crd(json!({ "colour": { "type": "string" } }))
        .spec
        .versions[0]
        .schema
        .clone();
    crds.replace("widgets.example.com", &PostParams::default(), &crd)
        .await
        .expect("replace CRD");
    let new_url = document_url(&c, "apis/example.com/v1").await;
    assert_ne!(new_url, url);
    let doc = get(&c, &new_url).await.json();
    let spec = &doc["components"]["schemas"]["com.example.v1.Widget"]["properties"]["spec"];
    assert!(spec["properties"]["colour"].is_object(), "{spec}");
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn v2_is_swagger_json_and_protobuf_only_is_not_acceptable() {
    let c = cluster().await;
    let v2 = call(
        &c,
        Method::GET,
        "/openapi/v2",
        &[("accept", "application/json")],
        None,
    )
    .await;
    assert_eq!(v2.status, StatusCode::OK);
    let doc = v2.json();
    assert_eq!(doc["swagger"], "2.0");
    let meta = &doc["definitions"]["io.k8s.api.apps.v1.Deployment"]["properties"]["metadata"];
    assert_eq!(
        meta["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
    assert!(
        patch["consumes"]
            .as_array()
            .expect("consumes")
            .iter()
            .any(|t| t == "application/strategic-merge-patch+json")
    );
    let pb = call(
        &c,
        Method::GET,
        "/openapi/v2",
        &[(
            "accept",
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        )],
        None,
    )
    .await;
    assert_eq!(pb.status, StatusCode::NOT_ACCEPTABLE);
    c.shutdown().await.expect("shutdown");
}

async fn stored_spec(c: &Cluster, name: &str) -> Value {
    get(c, &format!("{DEPLOYMENTS}/{name}")).await.json()["spec"].clone()
}

#[tokio::test]
async fn unknown_fields_of_built_ins_follow_field_validation_on_create() {
    let c = cluster().await;
    let body = |name: &str| deployment_body(name, json!({ "foo": 1 }));
    let strict = call(
        &c,
        Method::POST,
        &format!("{DEPLOYMENTS}?fieldValidation=Strict"),
        &[],
        Some(body("strict")),
    )
    .await;
    assert_eq!(strict.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        strict.json()["message"],
        "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.foo\""
    );
    assert_eq!(
        get(&c, &format!("{DEPLOYMENTS}/strict")).await.status,
        StatusCode::NOT_FOUND
    );

    // Warn is the default: stored without the field, and told so.
    let warn = call(&c, Method::POST, DEPLOYMENTS, &[], Some(body("warn"))).await;
    assert_eq!(warn.status, StatusCode::CREATED);
    assert_eq!(warn.warnings(), [r#"299 - "unknown field \"spec.foo\"""#]);
    assert!(stored_spec(&c, "warn").await.get("foo").is_none());

    let ignore = call(
        &c,
        Method::POST,
        &format!("{DEPLOYMENTS}?fieldValidation=Ignore"),
        &[],
        Some(body("ignore")),
    )
    .await;
    assert_eq!(ignore.status, StatusCode::CREATED);
    assert!(ignore.warnings().is_empty());
    assert!(stored_spec(&c, "ignore").await.get("foo").is_none());

    let bad = call(
        &c,
        Method::POST,
        &format!("{DEPLOYMENTS}?fieldValidation=Loud"),
        &[],
        Some(body("bad")),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("fieldValidation: Unsupported value: \"Loud\""))
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn duplicated_fields_follow_field_validation() {
    let c = cluster().await;
    let body = |name: &str| {
        format!(
            r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"{name}"}},"spec":{{"replicas":1,"replicas":2,"selector":{{"matchLabels":{{"app":"a"}}}},"template":{{"metadata":{{"labels":{{"app":"a"}}}},"spec":{{"containers":[{{"name":"main","image":"busybox"}}]}}}}}}}}"#
        )
    };
    let send = |uri: String, b: String| {
        let req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .body(axum_body(b.into_bytes()))
            .expect("request");
        c.api_server().router().oneshot(req)
    };
    let strict = send(
        format!("{DEPLOYMENTS}?fieldValidation=Strict"),
        body("strict"),
    )
    .await
    .expect("answer");
    assert_eq!(strict.status(), StatusCode::BAD_REQUEST);
    let msg: Value =
        serde_json::from_slice(&strict.into_body().collect().await.expect("body").to_bytes())
            .expect("Status");
    assert_eq!(
        msg["message"],
        "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: duplicate field \"spec.replicas\""
    );
    let warn = send(DEPLOYMENTS.to_string(), body("warn"))
        .await
        .expect("answer");
    assert_eq!(warn.status(), StatusCode::CREATED);
    assert_eq!(
        warn.headers()[header::WARNING],
        r#"299 - "duplicate field \"spec.replicas\"""#
    );
    assert_eq!(
        stored_spec(&c, "warn").await["replicas"],
        2,
        "the last value wins"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn unknown_fields_follow_field_validation_on_update_and_patch() {
    let c = cluster().await;
    let created = call(
        &c,
        Method::POST,
        DEPLOYMENTS,
        &[],
        Some(deployment_body("web", json!({}))),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let item = format!("{DEPLOYMENTS}/web");

    let mut put = created.json();
    put["spec"]["bar"] = json!(true);
    let strict = call(
        &c,
        Method::PUT,
        &format!("{item}?fieldValidation=Strict"),
        &[],
        Some(put.clone()),
    )
    .await;
    assert_eq!(strict.status, StatusCode::BAD_REQUEST);
    assert!(
        strict.json()["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("strict decoding error: unknown field \"spec.bar\""))
    );
    let warn = call(&c, Method::PUT, &item, &[], Some(put)).await;
    assert_eq!(warn.status, StatusCode::OK, "{}", warn.json());
    assert_eq!(warn.warnings(), [r#"299 - "unknown field \"spec.bar\"""#]);

    let merge = [("content-type", "application/merge-patch+json")];
    let patch = json!({ "spec": { "template": { "spec": { "containers": [{ "name": "main", "image": "busybox", "baz": 1 }] } } } });
    let strict = call(
        &c,
        Method::PATCH,
        &format!("{item}?fieldValidation=Strict"),
        &merge,
        Some(patch.clone()),
    )
    .await;
    assert_eq!(strict.status, StatusCode::UNPROCESSABLE_ENTITY);
    let status = strict.json();
    assert_eq!(status["details"]["causes"][0]["field"], "patch");
    assert!(
        status["message"].as_str().is_some_and(|m| m.ends_with(
            "strict decoding error: unknown field \"spec.template.spec.containers[0].baz\""
        )),
        "{status}"
    );
    let smp = [("content-type", "application/strategic-merge-patch+json")];
    let warn = call(&c, Method::PATCH, &item, &smp, Some(patch)).await;
    assert_eq!(warn.status, StatusCode::OK);
    assert_eq!(
        warn.warnings(),
        [r#"299 - "unknown field \"spec.template.spec.containers[0].baz\"""#]
    );
    let containers = &stored_spec(&c, "web").await["template"]["spec"]["containers"];
    assert!(containers[0].get("baz").is_none(), "{containers}");
    let managed = get(&c, &item).await.json()["metadata"]["managedFields"].to_string();
    assert!(
        !managed.contains("f:baz") && !managed.contains("f:bar"),
        "{managed}"
    );
    c.shutdown().await.expect("shutdown");
}

/// Runs the real kubectl (it must be installed: the test fails, not skips, without it).
fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("kubectl")
        .env("HOME", kubeconfig.parent().expect("dir"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl must be installed (it is at /usr/bin/kubectl on the machine image)")
}

async fn kubectl_async(kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    let path = kubeconfig.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kubectl(&path, &args)
    })
    .await
    .expect("kubectl task")
}

const DEPLOYMENT_YAML: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox
";

#[tokio::test]
async fn kubectl_validates_on_the_server_and_explains_fields() {
    let cluster = Cluster::builder()
        .nodes(0)
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
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, DEPLOYMENT_YAML).expect("write");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        DEPLOYMENT_YAML.replace("  replicas: 1\n", "  replicas: 1\n  foo: bar\n"),
    )
    .expect("write");

    // Default --validate=strict: kubectl finds fieldValidation in /openapi/v3 and sends it.
    let out = kubectl_async(
        &kubeconfig,
        &["create", "-f", good.to_str().expect("path"), "-v=6"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubectl create failed: {stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("deployment.apps/web created"));
    assert!(
        stderr.contains("fieldValidation=Strict"),
        "validation stayed on the client: {stderr}"
    );

    let out = kubectl_async(&kubeconfig, &["create", "-f", bad.to_str().expect("path")]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unknown field was accepted");
    assert!(
        stderr.contains(r#"strict decoding error: unknown field "spec.foo""#),
        "{stderr}"
    );

    // apply of a change: the strategic merge patch kubectl computes from the v3 merge keys.
    let changed = dir.path().join("changed.yaml");
    std::fs::write(
        &changed,
        DEPLOYMENT_YAML.replace("image: busybox", "image: busybox:2"),
    )
    .expect("write");
    let out = kubectl_async(
        &kubeconfig,
        &["apply", "-f", changed.to_str().expect("path")],
    )
    .await;
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("error calculating patch"),
        "the v3 merge keys did not serve: {stderr}"
    );

    let out = kubectl_async(&kubeconfig, &["explain", "deployment.spec.strategy"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl explain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("FIELD: strategy <DeploymentStrategy>"),
        "{stdout}"
    );
    assert!(
        stdout.contains("The deployment strategy to use to replace existing pods with new ones."),
        "{stdout}"
    );
    assert!(
        stdout.contains("rollingUpdate\t<RollingUpdateDeployment>"),
        "{stdout}"
    );

    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::default_namespaced(cluster.client());
    let d = tokio::time::timeout(Duration::from_secs(30), deployments.get("web"))
        .await
        .expect("in time")
        .expect("the deployment exists");
    let spec = d.spec.expect("spec");
    assert_eq!(
        spec.template.spec.expect("pod spec").containers[0]
            .image
            .as_deref(),
        Some("busybox:2")
    );
    cluster.shutdown().await.expect("shutdown");
}
