//! Aggregated discovery (`apidiscovery.k8s.io` v2 and v2beta1 `APIGroupDiscoveryList`),
//! chosen by `Accept` on `/api` and `/apis`, as kubectl 1.32 asks for it; the legacy
//! documents for a plain `Accept`. kubectl missing fails these tests; it never skips them.

use crate::common;

use std::time::Duration;

use http_body_util::BodyExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, PostParams};
use kybernetes::Cluster;
use kybernetes::runtime::FakeRuntime;
use serde_json::{Value, json};
use tower::ServiceExt;

const V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const V2BETA1: &str = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";
/// What kubectl 1.32 sends for `/api` and `/apis`.
const KUBECTL: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

async fn get(c: &Cluster, path: &str, accept: &str) -> (String, Value) {
    let request = http::Request::get(path)
        .header("accept", accept)
        .body(axum::body::Body::empty())
        .expect("request");
    let response = c
        .api_server()
        .router()
        .oneshot(request)
        .await
        .expect("response");
    assert_eq!(response.status(), 200, "{path}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        content_type,
        serde_json::from_slice(&body).expect("JSON body"),
    )
}

fn resource<'a>(doc: &'a Value, group: &str, version: &str, plural: &str) -> Option<&'a Value> {
    let item = doc["items"]
        .as_array()?
        .iter()
        .find(|i| i["metadata"]["name"].as_str().unwrap_or_default() == group)?;
    let v = item["versions"]
        .as_array()?
        .iter()
        .find(|v| v["version"] == version)?;
    v["resources"]
        .as_array()?
        .iter()
        .find(|r| r["resource"] == plural)
}

async fn cluster() -> Cluster {
    Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start")
}

#[tokio::test]
async fn api_and_apis_answer_the_aggregated_form_kubectl_asks_for() {
    let c = cluster().await;
    let (ct, core) = get(&c, "/api", KUBECTL).await;
    assert_eq!(ct, V2);
    assert_eq!(core["kind"], "APIGroupDiscoveryList");
    assert_eq!(core["apiVersion"], "apidiscovery.k8s.io/v2");
    assert_eq!(core["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(core["items"][0]["versions"][0]["freshness"], "Current");
    let pods = resource(&core, "", "v1", "pods").expect("pods");
    assert_eq!(pods["scope"], "Namespaced");
    assert_eq!(pods["singularResource"], "pod");
    assert_eq!(
        pods["responseKind"],
        json!({"group": "", "version": "v1", "kind": "Pod"})
    );
    assert_eq!(pods["shortNames"], json!(["po"]));
    assert_eq!(pods["categories"], json!(["all"]));
    assert!(
        pods["verbs"]
            .as_array()
            .expect("verbs")
            .contains(&json!("watch"))
    );
    let subs = pods["subresources"].as_array().expect("subresources");
    let sub = |name: &str| subs.iter().find(|s| s["subresource"] == name).cloned();
    assert_eq!(
        sub("status").map(|s| s["responseKind"]["kind"].clone()),
        Some(json!("Pod"))
    );
    assert_eq!(
        sub("eviction").map(|s| s["responseKind"]["group"].clone()),
        Some(json!("policy"))
    );
    assert_eq!(
        sub("proxy").map(|s| s["responseKind"]["kind"].clone()),
        Some(json!("PodProxyOptions"))
    );
    let nodes = resource(&core, "", "v1", "nodes").expect("nodes");
    assert_eq!(nodes["scope"], "Cluster");

    let (ct, apis) = get(&c, "/apis", KUBECTL).await;
    assert_eq!(ct, V2);
    let deployments = resource(&apis, "apps", "v1", "deployments").expect("deployments");
    assert_eq!(deployments["shortNames"], json!(["deploy"]));
    let scale = deployments["subresources"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["subresource"] == "scale"))
        .expect("deployments/scale");
    assert_eq!(
        scale["responseKind"],
        json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
    );
    assert!(
        resource(&apis, "", "v1", "pods").is_none(),
        "the core group is only under /api"
    );

    let (ct, beta) = get(&c, "/apis", V2BETA1).await;
    assert_eq!(ct, V2BETA1);
    assert_eq!(beta["apiVersion"], "apidiscovery.k8s.io/v2beta1");
    assert!(resource(&beta, "apps", "v1", "deployments").is_some());

    // A plain Accept still gets the legacy documents.
    let (ct, legacy) = get(&c, "/api", "application/json").await;
    assert_eq!(ct, "application/json");
    assert_eq!(legacy["kind"], "APIVersions");
    let (_, legacy) = get(&c, "/apis", "application/json, */*").await;
    assert_eq!(legacy["kind"], "APIGroupList");
    c.shutdown().await.expect("shutdown");
}

fn widget_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    }))
    .expect("crd")
}

#[tokio::test]
async fn custom_resources_appear_in_and_leave_the_aggregated_document() {
    let c = cluster().await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.client());
    crds.create(&PostParams::default(), &widget_crd())
        .await
        .expect("create CRD");
    common::until(
        "widgets in aggregated discovery",
        Duration::from_secs(30),
        || async {
            let (_, apis) = get(&c, "/apis", V2).await;
            resource(&apis, "example.com", "v1", "widgets").is_some()
        },
    )
    .await;
    let (_, apis) = get(&c, "/apis", V2).await;
    let widgets = resource(&apis, "example.com", "v1", "widgets").expect("widgets");
    assert_eq!(widgets["responseKind"]["kind"], "Widget");
    assert_eq!(widgets["shortNames"], json!(["wd"]));
    assert_eq!(widgets["singularResource"], "widget");

    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .expect("delete CRD");
    common::until(
        "widgets gone from aggregated discovery",
        Duration::from_secs(30),
        || async {
            let (_, apis) = get(&c, "/apis", V2).await;
            resource(&apis, "example.com", "v1", "widgets").is_none()
        },
    )
    .await;
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn kubectl_api_resources_reads_the_aggregated_document_only() {
    let fake = FakeRuntime::default();
    let s = common::served::served(&fake).await;
    let out = common::served::kubectl(&s.kubeconfig, &["api-resources", "-v=8"]).await;
    let stdout = common::served::text(&out.stdout);
    let stderr = common::served::text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("deployments "))
        .unwrap_or_else(|| panic!("no deployments row: {stdout}"));
    let words: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        words,
        ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    );
    // The server answered kubectl's Accept with the aggregated form, so kubectl fetched no
    // per-group-version documents.
    assert!(stderr.contains(V2), "{stderr}");
    assert!(!stderr.contains("/apis/apps/v1"), "{stderr}");
    assert!(!stderr.contains("/api/v1?"), "{stderr}");
    s.cluster.shutdown().await.expect("shutdown");
}
