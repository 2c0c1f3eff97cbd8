//! Server-side apply and strategic merge patch through kube-rs, as controllers and kubectl use
//! them: `Patch::Apply` with field managers, conflicts and `force`, `managedFields` for Apply
//! and Update, apply of a custom resource's status, and `Patch::Strategic`.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{CustomResource, CustomResourceExt};
use kybernetes::Cluster;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

async fn cluster() -> Cluster {
    Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start")
}

fn deployment(replicas: i32, containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers}
            }
        }
    })
}

fn nginx() -> Value {
    json!([{"name": "nginx", "image": "nginx:1.27"}])
}

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected a Status error, got {other:?}"),
    }
}

fn entry<'a>(
    d: &'a Deployment,
    manager: &str,
    operation: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry> {
    d.metadata.managed_fields.as_ref()?.iter().find(|e| {
        e.manager.as_deref() == Some(manager) && e.operation.as_deref() == Some(operation)
    })
}

#[tokio::test]
async fn apply_of_a_missing_deployment_creates_it_and_records_managed_fields() {
    let c = cluster().await;
    let api: Api<Deployment> = Api::default_namespaced(c.client());
    let d = api
        .patch(
            "web",
            &PatchParams::apply("ctl"),
            &Patch::Apply(deployment(2, nginx())),
        )
        .await
        .expect("apply creates");
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(2));
    let e = entry(&d, "ctl", "Apply").expect("an Apply entry for ctl");
    assert_eq!(e.fields_type.as_deref(), Some("FieldsV1"));
    assert_eq!(e.api_version.as_deref(), Some("apps/v1"));
    assert!(e.time.is_some());
    let fields = &e.fields_v1.as_ref().expect("fieldsV1").0;
    assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
    assert_eq!(
        fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"]["f:image"],
        json!({})
    );
    let stored = api.get("web").await.expect("stored");
    assert!(entry(&stored, "ctl", "Apply").is_some());
}

#[tokio::test]
async fn a_second_manager_applying_other_replicas_gets_409_naming_field_and_manager() {
    let c = cluster().await;
    let api: Api<Deployment> = Api::default_namespaced(c.client());
    api.patch(
        "web",
        &PatchParams::apply("kubectl"),
        &Patch::Apply(deployment(2, nginx())),
    )
    .await
    .expect("first apply");
    let err = api
        .patch(
            "web",
            &PatchParams::apply("autoscaler"),
            &Patch::Apply(json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                "spec": {"replicas": 5}
            })),
        )
        .await
        .expect_err("conflict");
    let status = api_error(err);
    assert_eq!(status.code, 409);
    assert_eq!(status.reason, "Conflict");
    assert_eq!(
        status.message,
        "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
    );
    let stored = api.get("web").await.expect("get");
    assert_eq!(
        stored.spec.and_then(|s| s.replicas),
        Some(2),
        "nothing stored on conflict"
    );
}

#[tokio::test]
async fn conflict_causes_name_each_field_and_manager() {
    // Read raw, to see the Status's causes that kube-rs's error type does not carry.
    let c = cluster().await;
    let client = c.client();
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    api.patch(
        "web",
        &PatchParams::apply("kubectl"),
        &Patch::Apply(deployment(2, nginx())),
    )
    .await
    .expect("first apply");
    let resp = client
        .send(
            http::Request::patch(
                "/apis/apps/v1/namespaces/default/deployments/web?fieldManager=other",
            )
            .header("content-type", "application/apply-patch+yaml")
            .body(
                serde_json::to_vec(&deployment(
                    3,
                    json!([{"name": "nginx", "image": "nginx:2"}]),
                ))
                .expect("encode")
                .into(),
            )
            .expect("request"),
        )
        .await
        .expect("send");
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    let body: Value = serde_json::from_slice(&bytes).expect("status json");
    assert_eq!(body["code"], 409);
    let causes = body["details"]["causes"].as_array().expect("causes");
    let fields: Vec<&str> = causes.iter().filter_map(|c| c["field"].as_str()).collect();
    assert_eq!(
        fields,
        [
            ".spec.replicas",
            ".spec.template.spec.containers[name=\"nginx\"].image"
        ]
    );
    for cause in causes {
        assert_eq!(cause["reason"], "FieldManagerConflict");
        assert_eq!(cause["message"], "conflict with \"kubectl\"");
    }
}

#[tokio::test]
async fn force_takes_ownership_of_the_conflicting_field() {
    let c = cluster().await;
    let api: Api<Deployment> = Api::default_namespaced(c.client());
    api.patch(
        "web",
        &PatchParams::apply("kubectl"),
        &Patch::Apply(deployment(2, nginx())),
    )
    .await
    .expect("first apply");
    let d = api
        .patch(
            "web",
            &PatchParams::apply("autoscaler").force(),
            &Patch::Apply(json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                "spec": {"replicas": 5}
            })),
        )
        .await
        .expect("forced apply");
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(5));
    let kubectl = &entry(&d, "kubectl", "Apply")
        .expect("kubectl keeps the rest")
        .fields_v1;
    let kubectl = &kubectl.as_ref().expect("fields").0;
    assert!(kubectl["f:spec"].get("f:replicas").is_none(), "{kubectl}");
    let scaler = &entry(&d, "autoscaler", "Apply")
        .expect("autoscaler entry")
        .fields_v1;
    assert_eq!(
        scaler.as_ref().expect("fields").0,
        json!({"f:spec": {"f:replicas": {}}})
    );
    // kubectl now conflicts in turn.
    let err = api
        .patch(
            "web",
            &PatchParams::apply("kubectl"),
            &Patch::Apply(deployment(2, nginx())),
        )
        .await
        .expect_err("kubectl conflicts now");
    assert_eq!(api_error(err).code, 409);
}

#[tokio::test]
async fn a_field_the_manager_alone_stops_applying_is_removed() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    let cm = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": data});
    api.patch(
        "cfg",
        &PatchParams::apply("a"),
        &Patch::Apply(cm(json!({"x": "1", "y": "2"}))),
    )
    .await
    .expect("a applies x and y");
    api.patch(
        "cfg",
        &PatchParams::apply("b"),
        &Patch::Apply(cm(json!({"y": "2"}))),
    )
    .await
    .expect("b co-owns y");
    let out = api
        .patch(
            "cfg",
            &PatchParams::apply("a"),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}
            })),
        )
        .await
        .expect("a applies nothing");
    let data = out.data.unwrap_or_default();
    assert!(!data.contains_key("x"), "x was a's alone: removed");
    assert_eq!(
        data.get("y").map(String::as_str),
        Some("2"),
        "y is b's too: kept"
    );
}

#[tokio::test]
async fn dry_run_apply_stores_nothing() {
    let c = cluster().await;
    let api: Api<Deployment> = Api::default_namespaced(c.client());
    let mut pp = PatchParams::apply("ctl");
    pp.dry_run = true;
    let d = api
        .patch("web", &pp, &Patch::Apply(deployment(2, nginx())))
        .await
        .expect("dry-run apply");
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(2));
    let err = api.get("web").await.expect_err("not stored");
    assert_eq!(api_error(err).code, 404);

    api.patch(
        "web",
        &PatchParams::apply("ctl"),
        &Patch::Apply(deployment(2, nginx())),
    )
    .await
    .expect("apply");
    api.patch("web", &pp, &Patch::Apply(deployment(7, nginx())))
        .await
        .expect("dry-run change");
    let stored = api.get("web").await.expect("get");
    assert_eq!(stored.spec.and_then(|s| s.replicas), Some(2));
}

#[tokio::test]
async fn a_non_apply_update_records_an_update_entry() {
    let c = cluster().await;
    let api: Api<Deployment> = Api::default_namespaced(c.client());
    let d: Deployment = serde_json::from_value(deployment(1, nginx())).expect("typed");
    let created = api
        .create(
            &PostParams {
                field_manager: Some("creator".into()),
                ..Default::default()
            },
            &d,
        )
        .await
        .expect("create");
    let e = entry(&created, "creator", "Update").expect("create records an Update entry");
    assert!(
        e.fields_v1.as_ref().expect("fields").0["f:spec"]
            .get("f:replicas")
            .is_some()
    );

    let patched = api
        .patch(
            "web",
            &PatchParams {
                field_manager: Some("scaler".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .expect("merge patch");
    let scaler = entry(&patched, "scaler", "Update").expect("scaler Update entry");
    assert_eq!(
        scaler.fields_v1.as_ref().expect("fields").0,
        json!({"f:spec": {"f:replicas": {}}})
    );
    let creator = entry(&patched, "creator", "Update").expect("creator keeps the rest");
    assert!(
        creator.fields_v1.as_ref().expect("fields").0["f:spec"]
            .get("f:replicas")
            .is_none(),
        "ownership of replicas moved to scaler"
    );
}

#[tokio::test]
async fn strategic_patch_of_a_container_image_keeps_the_other_containers() {
    let c = cluster().await;
    let api: Api<Deployment> = Api::default_namespaced(c.client());
    let two = json!([
        {"name": "nginx", "image": "nginx:1.27"},
        {"name": "sidecar", "image": "envoy:1"}
    ]);
    let d: Deployment = serde_json::from_value(deployment(1, two)).expect("typed");
    api.create(&PostParams::default(), &d)
        .await
        .expect("create");
    let out = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "sidecar", "image": "envoy:2"}
            ]}}}})),
        )
        .await
        .expect("strategic merge patch");
    let containers = out
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers)
        .unwrap_or_default();
    let images: Vec<(String, Option<String>)> =
        containers.into_iter().map(|c| (c.name, c.image)).collect();
    assert_eq!(
        images,
        [
            ("nginx".to_string(), Some("nginx:1.27".to_string())),
            ("sidecar".to_string(), Some("envoy:2".to_string()))
        ]
    );
}

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "Gadget",
    namespaced,
    status = "GadgetStatus"
)]
struct GadgetSpec {
    size: u32,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
struct GadgetStatus {
    ready: bool,
    message: Option<String>,
}

async fn gadgets(c: &Cluster) -> Api<Gadget> {
    let crds: Api<CustomResourceDefinition> = Api::all(c.client());
    crds.create(&PostParams::default(), &Gadget::crd())
        .await
        .expect("create CRD");
    tokio::time::timeout(
        Duration::from_secs(10),
        await_condition(
            crds,
            "gadgets.example.com",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("established in time")
    .expect("condition");
    Api::default_namespaced(c.client())
}

#[tokio::test]
async fn apply_of_a_custom_resource_status_through_patch_status() {
    let c = cluster().await;
    let api = gadgets(&c).await;
    api.patch(
        "g1",
        &PatchParams::apply("owner"),
        &Patch::Apply(json!({
            "apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g1"},
            "spec": {"size": 3}
        })),
    )
    .await
    .expect("apply spec");
    let out = api
        .patch_status(
            "g1",
            &PatchParams::apply("gadget-controller").force(),
            &Patch::Apply(json!({
                "apiVersion": "example.com/v1", "kind": "Gadget",
                "status": {"ready": true, "message": "up"}
            })),
        )
        .await
        .expect("apply status");
    assert_eq!(out.status.as_ref().map(|s| s.ready), Some(true));
    assert_eq!(out.spec.size, 3, "a status apply leaves the spec alone");
    let entries = out.metadata.managed_fields.unwrap_or_default();
    let status_entry = entries
        .iter()
        .find(|e| e.manager.as_deref() == Some("gadget-controller"))
        .expect("status entry");
    assert_eq!(status_entry.subresource.as_deref(), Some("status"));
    assert_eq!(status_entry.operation.as_deref(), Some("Apply"));
    assert_eq!(
        status_entry.fields_v1.as_ref().expect("fields").0,
        json!({"f:status": {"f:message": {}, "f:ready": {}}})
    );
}

#[tokio::test]
async fn strategic_merge_patch_of_a_custom_resource_is_unsupported() {
    let c = cluster().await;
    let api = gadgets(&c).await;
    api.create(
        &PostParams::default(),
        &Gadget::new("g1", GadgetSpec { size: 1 }),
    )
    .await
    .expect("create");
    let err = api
        .patch(
            "g1",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"size": 2}})),
        )
        .await
        .expect_err("415");
    assert_eq!(api_error(err).code, 415);
}

#[tokio::test]
async fn apply_without_a_field_manager_is_invalid_as_upstream_says() {
    let c = cluster().await;
    let resp = c
        .client()
        .send(
            http::Request::patch("/api/v1/namespaces/default/configmaps/cfg")
                .header("content-type", "application/apply-patch+yaml")
                .body(
                    b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n"
                        .to_vec()
                        .into(),
                )
                .expect("request"),
        )
        .await
        .expect("send");
    // Upstream validates PatchOptions into a 422 Invalid (not a 400).

    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    let status: Value = serde_json::from_slice(&bytes).expect("status json");
    assert_eq!(status["code"], 422, "{status}");
    assert_eq!(
        status["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
}

#[tokio::test]
async fn force_on_a_non_apply_patch_is_invalid() {
    let c = cluster().await;
    let resp = c
        .client()
        .send(
            http::Request::patch("/api/v1/namespaces/default/configmaps/cfg?force=true")
                .header("content-type", "application/merge-patch+json")
                .body(b"{}".to_vec().into())
                .expect("request"),
        )
        .await
        .expect("send");
    assert_eq!(resp.status(), http::StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn apply_of_the_scale_subresource_owns_the_parent_replicas() {
    let c = cluster().await;
    let client = c.client();
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    api.patch(
        "web",
        &PatchParams::apply("kubectl"),
        &Patch::Apply(deployment(2, nginx())),
    )
    .await
    .expect("apply");
    let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"}, "spec": {"replicas": 4}});
    let err = api
        .patch_scale("web", &PatchParams::apply("hpa"), &Patch::Apply(&scale))
        .await
        .expect_err("replicas belong to kubectl");
    assert_eq!(api_error(err).code, 409);
    let s = api
        .patch_scale(
            "web",
            &PatchParams::apply("hpa").force(),
            &Patch::Apply(&scale),
        )
        .await
        .expect("forced scale apply");
    assert_eq!(s.spec.and_then(|s| s.replicas), Some(4));
    let d = api.get("web").await.expect("get");
    let hpa = d
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .find(|e| e.manager.as_deref() == Some("hpa"))
        .expect("hpa entry");
    assert_eq!(hpa.subresource.as_deref(), Some("scale"));
    assert_eq!(
        hpa.fields_v1.expect("fields").0,
        json!({"f:spec": {"f:replicas": {}}})
    );
}

#[tokio::test]
async fn kubectl_three_way_strategic_patch_reorders_containers_and_clears_the_strategy_union() {
    let c = cluster().await;
    let api: Api<Deployment> = Api::default_namespaced(c.client());
    let mut d = deployment(
        1,
        json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]),
    );
    d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}});
    let d: Deployment = serde_json::from_value(d).expect("typed");
    api.create(&PostParams::default(), &d)
        .await
        .expect("create");
    // What `kubectl apply` sends after the manifest swapped the containers and switched to
    // Recreate.
    let out = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {
                "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null},
                "template": {"spec": {
                    "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                    "containers": [{"name": "b", "image": "b:2"}]
                }}
            }})),
        )
        .await
        .expect("three-way patch");
    let spec = out.spec.expect("spec");
    let strategy = spec.strategy.expect("strategy");
    assert_eq!(strategy.type_.as_deref(), Some("Recreate"));
    assert!(strategy.rolling_update.is_none());
    let names: Vec<(String, Option<String>)> = spec
        .template
        .spec
        .map(|p| p.containers)
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.name, c.image))
        .collect();
    assert_eq!(
        names,
        [
            ("b".to_string(), Some("b:2".to_string())),
            ("a".to_string(), Some("a:1".to_string()))
        ]
    );
}

#[tokio::test]
async fn reapplying_a_service_keeps_one_port_per_number_and_protocol() {
    let c = cluster().await;
    let api: Api<k8s_openapi::api::core::v1::Service> = Api::default_namespaced(c.client());
    let svc = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    });
    api.patch("web", &PatchParams::apply("kubectl"), &Patch::Apply(&svc))
        .await
        .expect("first apply");
    let out = api
        .patch("web", &PatchParams::apply("kubectl"), &Patch::Apply(&svc))
        .await
        .expect("second apply");
    let ports = out.spec.and_then(|s| s.ports).unwrap_or_default();
    assert_eq!(ports.len(), 1);
    let e = out
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .find(|e| e.manager.as_deref() == Some("kubectl"))
        .expect("entry");
    let fields = e.fields_v1.expect("fields").0;
    assert!(
        fields["f:spec"]["f:ports"]
            .get("k:{\"port\":80,\"protocol\":\"TCP\"}")
            .is_some(),
        "{fields}"
    );
}

#[tokio::test]
async fn apply_yaml_removes_fields_dropped_from_the_manifest() {
    use kybernetes::ApplyOutcome;
    let c = cluster().await;
    let first =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: \"1\"\n  b: \"2\"\n";
    let second = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: \"1\"\n";
    assert_eq!(
        c.apply_yaml(first).await.expect("create"),
        [ApplyOutcome::Created("configmaps/cfg".into())]
    );
    assert_eq!(
        c.apply_yaml(second).await.expect("drop b"),
        [ApplyOutcome::Configured("configmaps/cfg".into())]
    );
    assert_eq!(
        c.apply_yaml(second).await.expect("again"),
        [ApplyOutcome::Unchanged("configmaps/cfg".into())]
    );
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    let data = api.get("cfg").await.expect("get").data.unwrap_or_default();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["a"]);
}
