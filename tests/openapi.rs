//! OpenAPI v3 and v2 as kubectl reads them: the v3 index and a group-version document with
//! the `fieldValidation` parameter and the GVK extensions, fieldValidation on built-in kinds,
//! and the real kubectl validating on the server (`create -f`, an unknown field, `explain`,
//! `edit`); `/openapi/v2` in gnostic's protobuf, which kubectl falls back to.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kybernetes::Cluster;
use serde_json::{Value, json};

async fn get(c: &Cluster, path: &str) -> (u16, Value) {
    let req = http::Request::get(path)
        .header("Accept", "application/json")
        .body(kube::client::Body::from(Vec::new()))
        .expect("request");
    let resp = c.client().send(req).await.expect("response");
    let status = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_v3_index_points_at_documents_with_field_validation_and_gvks() {
    let c = Cluster::builder().nodes(0).start().await.expect("start");
    let (status, index) = get(&c, "/openapi/v3").await;
    assert_eq!(status, 200);
    let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .expect("apps/v1 in the index")
        .to_string();
    assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
    let (status, doc) = get(&c, &url).await;
    assert_eq!(status, 200);
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"], "Deployment",
        "{patch}"
    );
    let params = patch["parameters"].as_array().expect("parameters");
    assert!(
        params.iter().any(|p| p["name"] == "fieldValidation"),
        "PATCH takes fieldValidation: {params:?}"
    );
    let schema = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
    assert!(
        schema["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    let (status, v2) = get(&c, "/openapi/v2").await;
    assert_eq!(status, 200);
    assert!(v2["definitions"]["io.k8s.api.core.v1.Pod"].is_object());
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn field_validation_on_built_in_kinds() {
    let c = Cluster::builder().nodes(0).start().await.expect("start");
    let body = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "strict"},
        "data": {"a": "b"},
        "bogus": 1,
    });
    let post = |validation: &str| {
        http::Request::post(format!(
            "/api/v1/namespaces/default/configmaps?fieldValidation={validation}"
        ))
        .header("Content-Type", "application/json")
        .body(kube::client::Body::from(body.to_string().into_bytes()))
        .expect("request")
    };
    let resp = c.client().send(post("Strict")).await.expect("response");
    assert_eq!(resp.status().as_u16(), 400);
    let text = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("unknown field \\\"bogus\\\""), "{text}");
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client());
    assert!(
        cms.get_opt("strict").await.expect("get").is_none(),
        "nothing stored"
    );

    let resp = c.client().send(post("Warn")).await.expect("response");
    assert_eq!(resp.status().as_u16(), 201);
    let warning = resp
        .headers()
        .get("Warning")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(warning.contains("unknown field"), "{warning}");
    c.shutdown().await.expect("shutdown");
}

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl must be installed at /usr/bin/kubectl (it is on the machine image)");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().expect("kubectl runs")
}

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
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
        image: nginx
"#;

#[tokio::test]
async fn kubectl_validates_on_the_server_and_explains() {
    let c = Cluster::builder()
        .nodes(1)
        .serve("127.0.0.1:0".parse().expect("address"))
        .start()
        .await
        .expect("cluster starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    c.kubeconfig()
        .expect("kubeconfig")
        .write(&kubeconfig)
        .expect("write kubeconfig");
    let run = |args: &'static [&'static str], stdin: Option<&'static str>| {
        let path = kubeconfig.clone();
        async move {
            tokio::task::spawn_blocking(move || kubectl(&path, args, stdin))
                .await
                .expect("kubectl task")
        }
    };

    let out = run(&["create", "-f", "-"], Some(DEPLOYMENT)).await;
    assert!(
        out.status.success(),
        "create -f with default validation: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deploys: Api<Deployment> = Api::default_namespaced(c.client());
    assert!(deploys.get_opt("web").await.expect("get").is_some());

    let bad = DEPLOYMENT
        .replace("name: web\nspec:", "name: bad\nspec:")
        .replace("replicas: 1", "replicas: 1\n  replicaz: 2");
    let bad: &'static str = Box::leak(bad.into_boxed_str());
    let out = run(&["create", "-f", "-"], Some(bad)).await;
    assert!(!out.status.success(), "an unknown field is refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("replicaz"),
        "the message names the field: {err}"
    );
    assert!(deploys.get_opt("bad").await.expect("get").is_none());

    let out = run(&["apply", "-f", "-"], Some(DEPLOYMENT)).await;
    assert!(
        out.status.success(),
        "apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(&["explain", "deployment.spec.strategy"], None).await;
    assert!(
        out.status.success(),
        "explain: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("KIND:") && text.contains("Deployment"),
        "{text}"
    );
    assert!(text.contains("rollingUpdate"), "{text}");
    c.shutdown().await.expect("shutdown");
}

/// kubectl's `Accept` for `/openapi/v2` (upstream's deprecated name), and the current one.
const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
const V2_PROTOBUF_CURRENT: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

async fn get_raw(c: &Cluster, path: &str, headers: &[(&str, &str)]) -> http::Response<Vec<u8>> {
    let mut req = http::Request::get(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(kube::client::Body::from(Vec::new()))
        .expect("request");
    let resp = c.client().send(req).await.expect("response");
    let (parts, body) = resp.into_parts();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .expect("body")
        .to_bytes();
    http::Response::from_parts(parts, body.to_vec())
}

fn header<'a>(resp: &'a http::Response<Vec<u8>>, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The names of the definitions in a gnostic `Document` (definitions = 9, each a
/// `NamedSchema` = 1 whose name = 1).
fn definition_names(document: &[u8]) -> Vec<String> {
    use kybernetes::apiserver::protobuf::wire::{Records, WireValue};
    let bytes = |buf, number| {
        Records::new(buf)
            .filter_map(move |r| match r.expect("well-formed protobuf") {
                (n, WireValue::Bytes(b)) if n == number => Some(b),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    bytes(document, 9)
        .into_iter()
        .flat_map(|definitions| bytes(definitions, 1))
        .flat_map(|named| bytes(named, 1))
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect()
}

#[tokio::test]
async fn openapi_v2_is_served_in_protobuf_with_the_json_etag_and_rebuilt_for_new_crds() {
    let c = Cluster::builder().nodes(0).start().await.expect("start");
    let json = get_raw(&c, "/openapi/v2", &[("Accept", "application/json")]).await;
    assert_eq!(json.status(), 200);
    let etag = header(&json, "etag").to_string();
    assert!(etag.len() > 100, "a SHA-512 ETag: {etag}");

    for accept in [
        V2_PROTOBUF,
        V2_PROTOBUF_CURRENT,
        "application/yaml, */*;q=0.1",
    ] {
        let pb = get_raw(&c, "/openapi/v2", &[("Accept", accept)]).await;
        assert_eq!(pb.status(), 200, "{accept}");
        if accept.starts_with("application/yaml") {
            assert_eq!(header(&pb, "content-type"), "application/json");
            continue;
        }
        // Upstream answers both names with the current one, and the JSON form's ETag.
        assert_eq!(header(&pb, "content-type"), V2_PROTOBUF_CURRENT);
        assert_eq!(header(&pb, "etag"), etag);
        assert_eq!(header(&pb, "vary"), "Accept");
        // Document.swagger (1) = "2.0".
        assert!(
            pb.body().starts_with(b"\x0a\x032.0"),
            "{:?}",
            &pb.body()[..8]
        );
        let names = definition_names(pb.body());
        assert!(names.iter().any(|n| n == "io.k8s.api.apps.v1.Deployment"));
    }
    let cached = get_raw(
        &c,
        "/openapi/v2",
        &[("Accept", V2_PROTOBUF), ("If-None-Match", etag.as_str())],
    )
    .await;
    assert_eq!(cached.status(), 304);
    assert!(cached.body().is_empty());
    let refused = get_raw(&c, "/openapi/v2", &[("Accept", "application/yaml")]).await;
    assert_eq!(refused.status(), 406);

    let crds: Api<CustomResourceDefinition> = Api::all(c.client());
    let crd: CustomResourceDefinition =
        serde_norway::from_str(CRD).expect("the CRD manifest parses");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("create CRD");
    tokio::time::timeout(
        Duration::from_secs(10),
        await_condition(
            crds,
            "widgets.example.com",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("established in time")
    .expect("condition");
    let pb = get_raw(&c, "/openapi/v2", &[("Accept", V2_PROTOBUF)]).await;
    assert_eq!(pb.status(), 200);
    assert_ne!(header(&pb, "etag"), etag, "a new CRD makes a new document");
    let names = definition_names(pb.body());
    assert!(
        names.iter().any(|n| n == "com.example.v1.Widget"),
        "the CRD's definition is in the rebuilt document"
    );
    c.shutdown().await.expect("shutdown");
}

const CONFIGMAP_V9: &str = r#"apiVersion: v9
kind: ConfigMap
metadata:
  name: nine
data: {a: b}
"#;

const CONFIGMAP: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: one
data: {a: b}
"#;

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
"#;

/// kubectl reads `/openapi/v2` (in protobuf only) when a manifest's group-version is not in
/// the v3 index, and for `explain --output=plaintext-openapiv2`.
#[tokio::test]
async fn kubectl_reads_openapi_v2_in_protobuf_when_v3_lacks_the_group_version() {
    let c = Cluster::builder()
        .nodes(0)
        .serve("127.0.0.1:0".parse().expect("address"))
        .start()
        .await
        .expect("cluster starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    c.kubeconfig()
        .expect("kubeconfig")
        .write(&kubeconfig)
        .expect("write kubeconfig");
    let run = |args: &'static [&'static str], stdin: Option<&'static str>| {
        let path = kubeconfig.clone();
        async move {
            tokio::task::spawn_blocking(move || kubectl(&path, args, stdin))
                .await
                .expect("kubectl task")
        }
    };

    // -v=6 logs each request, so the test sees that v2 was read and answered.
    let out = run(&["create", "-f", "-", "-v=6"], Some(CONFIGMAP_V9)).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(r#"no matches for kind "ConfigMap" in version "v9""#),
        "upstream's message: {err}"
    );
    assert!(!err.contains("error validating data"), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("/openapi/v2") && l.contains("200 OK")),
        "kubectl fell back to v2 and got it: {err}"
    );

    let out = run(&["create", "-f", "-"], Some(CONFIGMAP)).await;
    assert!(
        out.status.success(),
        "a valid ConfigMap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client());
    assert!(cms.get_opt("one").await.expect("get").is_some());

    let out = run(
        &[
            "explain",
            "pods.spec.containers",
            "--output=plaintext-openapiv2",
        ],
        None,
    )
    .await;
    assert!(
        out.status.success(),
        "explain from v2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("KIND:") && text.contains("Pod"), "{text}");
    assert!(
        text.contains("image") && text.contains("livenessProbe"),
        "the fields, read from the protobuf document: {text}"
    );
    c.shutdown().await.expect("shutdown");
}
