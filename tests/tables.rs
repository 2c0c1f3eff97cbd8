//! Server-side printing: `kubectl get` asks for `meta.k8s.io` Tables, and gets upstream's
//! columns for built-in kinds and a CRD's `additionalPrinterColumns` for custom resources, on
//! get, list and watch. The last tests run the real kubectl against a served cluster.

use crate::common;

use std::time::Duration;

use common::{deployment, until, wait_available};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind, WatchEvent};
use kube::runtime::wait::{await_condition, conditions};
use kybernetes::Cluster;
use serde_json::{Value, json};

/// What kubectl sends on `get`.
const KUBECTL_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

const WAIT: Duration = Duration::from_secs(30);

fn request(path: &str, accept: &str) -> http::Request<Vec<u8>> {
    http::Request::get(path)
        .header("Accept", accept)
        .body(Vec::new())
        .expect("request")
}

/// GET `path` with `accept`: the status, Content-Type and JSON body.
async fn get(c: &Cluster, path: &str, accept: &str) -> (u16, String, Value) {
    let resp = c
        .client()
        .send(request(path, accept).map(kube::client::Body::from))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        content_type,
        serde_json::from_slice(&body).expect("JSON body"),
    )
}

/// The Table at `path`, as kubectl asks for it.
async fn table(c: &Cluster, path: &str) -> Value {
    let (status, content_type, body) = get(c, path, KUBECTL_ACCEPT).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "application/json;as=Table;v=v1;g=meta.k8s.io");
    assert_eq!(body["kind"], "Table", "{body}");
    assert_eq!(body["apiVersion"], "meta.k8s.io/v1");
    body
}

/// The column names of a Table, and the priority-0 ones.
fn headers(t: &Value) -> (Vec<String>, Vec<String>) {
    let cols = t["columnDefinitions"]
        .as_array()
        .expect("columnDefinitions");
    let name = |c: &Value| c["name"].as_str().expect("name").to_string();
    (
        cols.iter().map(name).collect(),
        cols.iter()
            .filter(|c| c["priority"] == 0)
            .map(name)
            .collect(),
    )
}

/// The cells of the row of `name`.
fn row<'a>(t: &'a Value, name: &str) -> &'a [Value] {
    t["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["cells"][0] == name || r["object"]["metadata"]["name"] == name)
        .and_then(|r| r["cells"].as_array())
        .unwrap_or_else(|| panic!("no row {name} in {t}"))
}

async fn cluster(nodes: usize) -> Cluster {
    Cluster::builder()
        .nodes(nodes)
        .start()
        .await
        .expect("cluster starts")
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }))
    .expect("pod")
}

#[tokio::test]
async fn pods_list_and_get_as_tables_with_upstreams_columns() {
    let c = cluster(1).await;
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    pods.create(&PostParams::default(), &pod("web"))
        .await
        .expect("create pod");
    until("web running", WAIT, || {
        let pods = pods.clone();
        async move {
            pods.get("web").await.ok().and_then(|p| p.status?.phase) == Some("Running".into())
        }
    })
    .await;
    let t = table(&c, "/api/v1/namespaces/default/pods").await;
    let (all, default) = headers(&t);
    assert_eq!(
        all,
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP",
            "Node",
            "Nominated Node",
            "Readiness Gates"
        ]
    );
    assert_eq!(default, ["Name", "Ready", "Status", "Restarts", "Age"]);
    assert!(
        t["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|rv| !rv.is_empty())
    );
    let cells = row(&t, "web");
    assert_eq!(cells[1..4], [json!("1/1"), json!("Running"), json!("0")]);
    assert!(
        cells[4].as_str().is_some_and(|age| age.ends_with('s')),
        "{cells:?}"
    );
    assert_eq!(cells[6], c.node_names()[0].as_str());
    assert_ne!(cells[5], "<none>", "a running pod has an IP");
    let object = &t["rows"][0]["object"];
    assert_eq!(object["kind"], "PartialObjectMetadata");
    assert_eq!(object["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(object["metadata"]["labels"]["app"], "web");
    assert!(object.get("spec").is_none());

    let one = table(&c, "/api/v1/namespaces/default/pods/web").await;
    assert_eq!(one["rows"].as_array().map(Vec::len), Some(1));
    assert_eq!(row(&one, "web")[2], "Running");
    let rv = pods
        .get("web")
        .await
        .expect("get")
        .metadata
        .resource_version;
    assert_eq!(one["metadata"]["resourceVersion"].as_str(), rv.as_deref());

    // All namespaces: every row says where it lives.
    let all_ns = table(&c, "/api/v1/pods").await;
    assert!(
        all_ns["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .all(|r| r["object"]["metadata"]["namespace"].is_string())
    );

    // Errors stay Status.
    let (status, _, missing) =
        get(&c, "/api/v1/namespaces/default/pods/nope", KUBECTL_ACCEPT).await;
    assert_eq!((status, missing["kind"].as_str()), (404, Some("Status")));
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn deployments_nodes_and_services_print_their_columns() {
    let c = cluster(1).await;
    let deploys: Api<Deployment> = Api::default_namespaced(c.client());
    deploys
        .create(&PostParams::default(), &deployment("web", 2, "nginx"))
        .await
        .expect("create deployment");
    wait_available(&deploys, "web", 2, WAIT).await;
    let t = table(&c, "/apis/apps/v1/namespaces/default/deployments").await;
    let (all, default) = headers(&t);
    assert_eq!(default, ["Name", "Ready", "Up-to-date", "Available", "Age"]);
    assert_eq!(all[5..], ["Containers", "Images", "Selector"]);
    let cells = row(&t, "web");
    assert_eq!(cells[1..4], [json!("2/2"), json!(2), json!(2)]);
    assert_eq!(
        cells[5..],
        [json!("main"), json!("nginx"), json!("app=web")]
    );

    let rs = table(&c, "/apis/apps/v1/namespaces/default/replicasets").await;
    assert_eq!(
        headers(&rs).1,
        ["Name", "Desired", "Current", "Ready", "Age"]
    );
    let rs_cells = rs["rows"][0]["cells"].as_array().expect("cells");
    assert_eq!(rs_cells[1..4], [json!(2), json!(2), json!(2)]);

    let nodes = table(&c, "/api/v1/nodes").await;
    let (all, default) = headers(&nodes);
    assert_eq!(default, ["Name", "Status", "Roles", "Age", "Version"]);
    assert_eq!(
        all[5..],
        [
            "Internal-IP",
            "External-IP",
            "OS-Image",
            "Kernel-Version",
            "Container-Runtime"
        ]
    );
    let node = row(&nodes, &c.node_names()[0]);
    assert_eq!(node[1..3], [json!("Ready"), json!("<none>")]);
    assert!(
        node[4].as_str().is_some_and(|v| v.starts_with("v1.33")),
        "{node:?}"
    );
    assert_eq!(node[6], "<none>");

    let svcs: Api<Service> = Api::default_namespaced(c.client());
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }))
    .expect("service");
    let svc = svcs
        .create(&PostParams::default(), &svc)
        .await
        .expect("create service");
    let ip = svc.spec.and_then(|s| s.cluster_ip).expect("cluster IP");
    let t = table(&c, "/api/v1/namespaces/default/services").await;
    assert_eq!(
        headers(&t).1,
        [
            "Name",
            "Type",
            "Cluster-IP",
            "External-IP",
            "Port(s)",
            "Age"
        ]
    );
    let cells = row(&t, "web");
    assert_eq!(
        cells[1..5],
        [
            json!("ClusterIP"),
            json!(ip),
            json!("<none>"),
            json!("80/TCP")
        ]
    );
    assert_eq!(cells[6], "app=web");
    assert_eq!(row(&t, "kubernetes")[4], "443/TCP");
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn include_object_and_version_negotiation() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client());
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}}))
            .expect("configmap");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    let path = "/api/v1/namespaces/default/configmaps";
    let t = table(&c, path).await;
    assert_eq!(headers(&t).0, ["Name", "Data", "Age"]);
    assert_eq!(row(&t, "cfg")[1], 2);

    let t = table(&c, &format!("{path}?includeObject=None")).await;
    assert_eq!(t["rows"][0]["object"], Value::Null);
    let t = table(&c, &format!("{path}?includeObject=Object")).await;
    assert_eq!(t["rows"][0]["object"]["kind"], "ConfigMap");
    assert_eq!(t["rows"][0]["object"]["data"]["b"], "2");
    let (status, _, bad) = get(&c, &format!("{path}?includeObject=All"), KUBECTL_ACCEPT).await;
    assert_eq!(status, 400);
    assert_eq!(bad["kind"], "Status");
    assert!(
        bad["message"]
            .as_str()
            .is_some_and(|m| m.contains("includeObject")),
        "{bad}"
    );

    let beta = "application/json;as=Table;v=v1beta1;g=meta.k8s.io";
    let (status, content_type, t) = get(&c, path, beta).await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/json;as=Table;v=v1beta1;g=meta.k8s.io")
    );
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1beta1");
    assert_eq!(t["rows"][0]["object"]["apiVersion"], "meta.k8s.io/v1beta1");

    let (status, _, refused) = get(&c, path, "application/json;as=Table;v=v9;g=meta.k8s.io").await;
    assert_eq!(
        (status, refused["reason"].as_str()),
        (406, Some("NotAcceptable"))
    );

    // Plain JSON clients are unaffected.
    let (_, content_type, list) = get(&c, path, "application/json").await;
    assert_eq!(
        (content_type.as_str(), list["kind"].as_str()),
        ("application/json", Some("ConfigMapList"))
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn limit_and_continue_survive_into_the_table() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client());
    for name in ["a", "b", "c"] {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("cm");
        cms.create(&PostParams::default(), &cm)
            .await
            .expect("create");
    }
    let first = table(&c, "/api/v1/namespaces/default/configmaps?limit=2").await;
    assert_eq!(first["rows"].as_array().map(Vec::len), Some(2));
    let token = first["metadata"]["continue"]
        .as_str()
        .expect("continue token");
    let rest = table(
        &c,
        &format!("/api/v1/namespaces/default/configmaps?limit=2&continue={token}"),
    )
    .await;
    assert_eq!(rest["rows"].as_array().map(Vec::len), Some(1));
    assert_eq!(row(&rest, "c")[0], "c");
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn custom_resources_print_their_additional_printer_columns() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let crds: Api<CustomResourceDefinition> = Api::all(c.client());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget"},
            "scope": "Namespaced",
            "versions": [
                {"name": "v1", "served": true, "storage": true,
                 "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
                     "size": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}},
                     "on": {"type": "boolean"}}}}}},
                 "additionalPrinterColumns": [
                     {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                     {"name": "First-Tag", "type": "string", "jsonPath": ".spec.tags[0]", "priority": 1},
                     {"name": "On", "type": "boolean", "jsonPath": ".spec.on"},
                     {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                 ]},
                {"name": "v2", "served": true, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
            ],
        },
    }))
    .expect("crd");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("create CRD");
    tokio::time::timeout(
        WAIT,
        await_condition(
            crds.clone(),
            "gadgets.example.com",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("established in time")
    .expect("condition");
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Gadget");
    let gadgets: Api<DynamicObject> =
        Api::default_namespaced_with(c.client(), &ApiResource::from_gvk(&gvk));
    let g: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Gadget",
        "metadata": {"name": "g1"}, "spec": {"size": 3, "tags": ["blue", "big"], "on": true},
    }))
    .expect("gadget");
    gadgets
        .create(&PostParams::default(), &g)
        .await
        .expect("create gadget");

    let t = table(&c, "/apis/example.com/v1/namespaces/default/gadgets").await;
    let (all, default) = headers(&t);
    assert_eq!(all, ["Name", "Size", "First-Tag", "On", "Age"]);
    assert_eq!(default, ["Name", "Size", "On", "Age"]);
    assert_eq!(t["columnDefinitions"][1]["type"], "integer");
    let cells = row(&t, "g1");
    assert_eq!(
        cells[..4],
        [json!("g1"), json!(3), json!("blue"), json!(true)]
    );
    assert!(
        cells[4].as_str().is_some_and(|a| a.ends_with('s')),
        "{cells:?}"
    );

    // A version without printer columns shows NAME and AGE.
    let t = table(&c, "/apis/example.com/v2/namespaces/default/gadgets").await;
    assert_eq!(headers(&t).0, ["Name", "Age"]);
    // The CRDs themselves print as kinds without a printer: NAME and CREATED AT.
    let t = table(
        &c,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    )
    .await;
    assert_eq!(headers(&t).0, ["Name", "Created At"]);
    assert!(
        row(&t, "gadgets.example.com")[1]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_table_watch_sends_one_row_per_event_and_the_columns_once() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client());
    let cm = |name: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).expect("cm")
    };
    cms.create(&PostParams::default(), &cm("first"))
        .await
        .expect("create");
    let req = request(
        "/api/v1/namespaces/default/configmaps?watch=true",
        KUBECTL_ACCEPT,
    );
    let mut events = c
        .client()
        .request_events::<Value>(req)
        .await
        .expect("watch")
        .boxed();
    let (kind, t) = next_event(&mut events).await;
    assert_eq!(kind, "ADDED");
    assert_eq!(t["kind"], "Table");
    assert_eq!(headers(&t).0, ["Name", "Data", "Age"]);
    assert_eq!(row(&t, "first")[1], 1);
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");

    cms.create(&PostParams::default(), &cm("second"))
        .await
        .expect("create");
    let (kind, t) = next_event(&mut events).await;
    assert_eq!(kind, "ADDED");
    assert_eq!(
        t["columnDefinitions"],
        Value::Null,
        "columns only on the first event"
    );
    assert_eq!(t["rows"].as_array().map(Vec::len), Some(1));
    assert_eq!(row(&t, "second")[0], "second");
    assert!(t["metadata"]["resourceVersion"].is_string());

    cms.delete("first", &Default::default())
        .await
        .expect("delete");
    let (kind, t) = next_event(&mut events).await;
    assert_eq!(
        (kind, &t["rows"][0]["cells"][0]),
        ("DELETED", &json!("first"))
    );
    c.shutdown().await.expect("shutdown");
}

type Events = futures::stream::BoxStream<'static, kube::Result<WatchEvent<Value>>>;

/// The next watch event: its type and object.
async fn next_event(events: &mut Events) -> (&'static str, Value) {
    match tokio::time::timeout(WAIT, events.try_next())
        .await
        .expect("event in time")
        .expect("event")
    {
        Some(WatchEvent::Added(t)) => ("ADDED", t),
        Some(WatchEvent::Modified(t)) => ("MODIFIED", t),
        Some(WatchEvent::Deleted(t)) => ("DELETED", t),
        other => panic!("unexpected {other:?}"),
    }
}

// --- The real kubectl against a served cluster. ---

/// Runs `/usr/bin/kubectl` with the kubeconfig; fails if kubectl is missing or fails.
fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl must be installed at /usr/bin/kubectl (it is on the machine image)");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The whitespace-separated words of a kubectl output line.
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[tokio::test]
async fn kubectl_get_prints_upstreams_columns() {
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
    let deploys: Api<Deployment> = Api::default_namespaced(c.client());
    deploys
        .create(&PostParams::default(), &deployment("web", 2, "nginx"))
        .await
        .expect("create deployment");
    wait_available(&deploys, "web", 2, WAIT).await;
    let run = |args: &'static [&'static str]| {
        let path = kubeconfig.clone();
        async move {
            tokio::task::spawn_blocking(move || kubectl(&path, args))
                .await
                .expect("kubectl task")
        }
    };

    let out = run(&["get", "deploy"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        words(lines[0]),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{out}"
    );
    assert_eq!(words(lines[1])[..4], ["web", "2/2", "2", "2"], "{out}");

    let out = run(&["get", "pods", "-o", "wide"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        words(lines[0]),
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ],
        "{out}"
    );
    assert_eq!(lines.len(), 3, "two pods: {out}");
    let node = c.node_names()[0].clone();
    for line in &lines[1..] {
        let w = words(line);
        assert!(w[0].starts_with("web-"), "{out}");
        assert_eq!(w[1..4], ["1/1", "Running", "0"], "{out}");
        assert_eq!(w[6..], [node.as_str(), "<none>", "<none>"], "{out}");
    }

    // -A and --show-labels read the rows' PartialObjectMetadata.
    let out = run(&["get", "pods", "-A", "--show-labels"]).await;
    let header = words(out.lines().next().unwrap_or(""));
    assert_eq!(header.first(), Some(&"NAMESPACE"), "{out}");
    assert_eq!(header.last(), Some(&"LABELS"), "{out}");
    assert!(
        out.lines()
            .skip(1)
            .all(|l| l.starts_with("default ") && l.contains("app=web")),
        "{out}"
    );

    let out = run(&["get", "nodes"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        words(lines[0]),
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        "{out}"
    );
    assert_eq!(
        words(lines[1])[..3],
        [node.as_str(), "Ready", "<none>"],
        "{out}"
    );
    c.shutdown().await.expect("shutdown");
}
