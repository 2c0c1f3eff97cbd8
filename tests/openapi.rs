//! OpenAPI v3 and v2 as kubectl reads them: the v3 index and a group-version document with
//! the `fieldValidation` parameter and the GVK extensions, fieldValidation on built-in kinds,
//! and the real kubectl validating on the server (`create -f`, an unknown field, `explain`,
//! `edit`).

use std::path::Path;
use std::process::{Command, Output, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
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
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment", "{patch}");
    let params = patch["parameters"].as_array().expect("parameters");
    assert!(
        params.iter().any(|p| p["name"] == "fieldValidation"),
        "PATCH takes fieldValidation: {params:?}"
    );
    let schema = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
    assert!(schema["description"].as_str().is_some_and(|d| !d.is_empty()));
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
    assert!(cms.get_opt("strict").await.expect("get").is_none(), "nothing stored");

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
    assert!(err.contains("replicaz"), "the message names the field: {err}");
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
    assert!(text.contains("KIND:") && text.contains("Deployment"), "{text}");
    assert!(text.contains("rollingUpdate"), "{text}");
    c.shutdown().await.expect("shutdown");
}
