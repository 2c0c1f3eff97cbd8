//! CRUD through `kube::Api` on the in-process client for every built-in kind of the
//! foundation, and the error contract (409, 422, 404 with a `Status` body).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, Pod, Secret, Service, ServiceAccount,
};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use kybernetes::Cluster;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

async fn cluster() -> Cluster {
    Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("cluster starts")
}

fn api_code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error with a Status body, got {other:?}"),
    }
}

/// Create, get, list, replace, merge-patch, JSON-patch and delete one object.
async fn crud<K>(api: Api<K>, manifest: Value)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(manifest.clone()).expect("manifest parses");
    let name = manifest["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    let created = api
        .create(&PostParams::default(), &obj)
        .await
        .expect("create");
    let meta = created.meta();
    assert_eq!(meta.name.as_deref(), Some(name.as_str()));
    assert!(meta.uid.is_some(), "uid is set");
    assert!(
        meta.creation_timestamp.is_some(),
        "creationTimestamp is set"
    );
    let rv1: i64 = meta
        .resource_version
        .as_deref()
        .expect("rv")
        .parse()
        .expect("rv is decimal");

    let got = api.get(&name).await.expect("get");
    assert_eq!(got.meta().uid, meta.uid);
    let listed = api.list(&ListParams::default()).await.expect("list");
    assert!(
        listed
            .items
            .iter()
            .any(|o| o.meta().name.as_deref() == Some(name.as_str())),
        "list has it"
    );

    let mut changed = got.clone();
    changed.meta_mut().labels = Some(BTreeMap::from([(
        "step".to_string(),
        "replaced".to_string(),
    )]));
    let replaced = api
        .replace(&name, &PostParams::default(), &changed)
        .await
        .expect("replace");
    let rv2: i64 = replaced
        .meta()
        .resource_version
        .as_deref()
        .expect("rv")
        .parse()
        .expect("decimal");
    assert!(rv2 > rv1, "resourceVersion moves forward on update");

    // A stale update is refused with 409 Conflict.
    let stale = api
        .replace(&name, &PostParams::default(), &got)
        .await
        .expect_err("stale update fails");
    assert_eq!(api_code(stale), 409);

    let merged = api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"step": "merged"}}})),
        )
        .await
        .expect("merge patch");
    assert_eq!(
        merged
            .meta()
            .labels
            .as_ref()
            .and_then(|l| l.get("step"))
            .map(String::as_str),
        Some("merged")
    );
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}
    ]))
    .expect("json patch");
    let jp = api
        .patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .expect("json patch applies");
    assert_eq!(
        jp.meta()
            .annotations
            .as_ref()
            .and_then(|a| a.get("a"))
            .map(String::as_str),
        Some("b")
    );

    api.delete(&name, &DeleteParams::default())
        .await
        .expect("delete");
    match api.get_opt(&name).await.expect("get after delete") {
        None => {}
        // A namespace waits in Terminating for the namespace controller to empty it.
        Some(o) if K::kind(&()) == "Namespace" => assert!(o.meta().deletion_timestamp.is_some()),
        Some(o) => panic!("deleted object is still there: {o:?}"),
    }
}

#[tokio::test]
async fn crud_works_for_every_foundation_kind() {
    let c = cluster().await;
    let client: Client = c.client();
    crud(
        Api::<Namespace>::all(client.clone()),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "crud-ns"}}),
    )
    .await;
    crud(
        Api::<Node>::all(client.clone()),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}, "spec": {}}),
    )
    .await;
    crud(
        Api::<Pod>::default_namespaced(client.clone()),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await;
    crud(
        Api::<Service>::default_namespaced(client.clone()),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
               "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}}),
    )
    .await;
    crud(
        Api::<Endpoints>::default_namespaced(client.clone()),
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "svc"}}),
    )
    .await;
    crud(
        Api::<ConfigMap>::default_namespaced(client.clone()),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"}}),
    )
    .await;
    crud(
        Api::<Secret>::default_namespaced(client.clone()),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "dg=="}}),
    )
    .await;
    crud(
        Api::<Event>::default_namespaced(client.clone()),
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "ev.1"},
               "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Test"}),
    )
    .await;
    crud(
        Api::<ServiceAccount>::default_namespaced(client.clone()),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}}),
    )
    .await;
    let template = json!({"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "web", "image": "nginx"}]}});
    crud(
        Api::<Deployment>::default_namespaced(client.clone()),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template}}),
    )
    .await;
    crud(
        Api::<ReplicaSet>::default_namespaced(client.clone()),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-rs"},
               "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template}}),
    )
    .await;
    crud(
        Api::<Lease>::namespaced(client.clone(), "kube-node-lease"),
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "node-a"},
               "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 40}}),
    )
    .await;
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn invalid_names_are_rejected_with_422_and_nothing_is_stored() {
    let c = cluster().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client());
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("Not_A_Valid_Name".into());
    let err = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect_err("bad name is refused");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422);
            assert_eq!(s.reason, "Invalid");
            assert!(
                s.message.contains("metadata.name"),
                "message names the field: {}",
                s.message
            );
        }
        other => panic!("expected a Status, got {other:?}"),
    }
    assert!(
        cms.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty(),
        "nothing was stored"
    );

    let mut bad_label = ConfigMap::default();
    bad_label.metadata.name = Some("ok".into());
    bad_label.metadata.labels = Some(BTreeMap::from([("bad key!".to_string(), "v".to_string())]));
    assert_eq!(
        api_code(
            cms.create(&PostParams::default(), &bad_label)
                .await
                .expect_err("bad label")
        ),
        422
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn unknown_resources_get_404_with_a_status_body() {
    let c = cluster().await;
    let req = http::Request::get("/apis/example.com/v1/namespaces/default/widgets")
        .body(Vec::new())
        .expect("request");
    let err = c
        .client()
        .request::<Value>(req)
        .await
        .expect_err("unknown resource");
    assert_eq!(api_code(err), 404);
    let missing: Api<ConfigMap> = Api::default_namespaced(c.client());
    assert_eq!(
        api_code(missing.get("nope").await.expect_err("missing object")),
        404
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn namespaced_objects_need_an_existing_namespace() {
    let c = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client(), "does-not-exist");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("x".into());
    assert_eq!(
        api_code(
            cms.create(&PostParams::default(), &cm)
                .await
                .expect_err("no namespace")
        ),
        404
    );
    let nss: Api<Namespace> = Api::all(c.client());
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        nss.get(ns)
            .await
            .unwrap_or_else(|e| panic!("{ns} exists at start: {e}"));
    }
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn already_exists_is_409() {
    let c = cluster().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client());
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("dup".into());
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("first create");
    let err = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect_err("second create");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "AlreadyExists");
        }
        other => panic!("expected a Status, got {other:?}"),
    }
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn generate_name_gives_a_unique_name() {
    let c = cluster().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client());
    let mut cm = ConfigMap::default();
    cm.metadata.generate_name = Some("gen-".into());
    let a = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect("create a");
    let b = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect("create b");
    let (a, b) = (
        a.metadata.name.expect("name"),
        b.metadata.name.expect("name"),
    );
    assert!(a.starts_with("gen-") && a.len() == 9, "{a}");
    assert_ne!(a, b);
    c.shutdown().await.expect("shutdown");
}

/// Upstream's node strategy keeps the status of a created Node (the kubelet registers its
/// node with capacity and conditions in one POST), while other kinds drop it.
#[tokio::test]
async fn a_created_node_keeps_its_status_and_a_created_service_does_not() {
    let c = cluster().await;
    let nodes: Api<Node> = Api::all(c.client());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": "registered"},
        "status": {"allocatable": {"cpu": "4", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .expect("node manifest");
    let created = nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
    let status = created.status.expect("the node keeps its status");
    let allocatable = status.allocatable.expect("allocatable kept");
    assert_eq!(allocatable.get("pods").map(|q| q.0.as_str()), Some("110"));
    assert_eq!(status.conditions.map(|c| c.len()), Some(1));

    let services: Api<Service> = Api::default_namespaced(c.client());
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"ports": [{"port": 80}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}},
    }))
    .expect("service manifest");
    let created = services
        .create(&PostParams::default(), &svc)
        .await
        .expect("create service");
    let ingress = created
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .unwrap_or_default();
    assert!(
        ingress.is_empty(),
        "a POSTed Service status is dropped: {ingress:?}"
    );
    c.shutdown().await.expect("shutdown");
}
