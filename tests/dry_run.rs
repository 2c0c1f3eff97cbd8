//! dryRun=All through kube-rs on every write verb, and an admission plugin set through the
//! cluster builder: what a client sends, the server validates and admits, and nothing is
//! stored.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kybernetes::Cluster;
use kybernetes::apiserver::ApiServerConfig;
use kybernetes::apiserver::admission::{Admission, AdmissionAttributes, Operation, async_trait};
use kybernetes::core::ApiError;
use serde_json::{Value, json};

async fn cluster(config: ApiServerConfig) -> Cluster {
    Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .api_server_config(config)
        .start()
        .await
        .expect("cluster starts")
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": name },
        "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": name } },
            "template": { "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "c", "image": "nginx:1.27" }] } } }
    }))
    .expect("deployment manifest")
}

fn dry_post() -> PostParams {
    PostParams {
        dry_run: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn dry_run_writes_through_kube_rs_are_defaulted_and_validated_but_never_stored() {
    let c = cluster(ApiServerConfig::default()).await;
    let deploys: Api<Deployment> = Api::namespaced(c.client(), "default");

    // create: defaulted in the answer, absent from the store.
    let answered = deploys
        .create(&dry_post(), &deployment("web", 2))
        .await
        .expect("dry-run create");
    let spec = answered.spec.expect("spec");
    assert_eq!(spec.revision_history_limit, Some(10), "defaults ran");
    assert!(deploys.get_opt("web").await.expect("get").is_none());

    // create: still validated.
    let mut invalid = deployment("bad", 1);
    if let Some(s) = invalid.spec.as_mut() {
        s.replicas = Some(-1);
    }
    match deploys.create(&dry_post(), &invalid).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 422),
        other => panic!("expected 422, got {other:?}"),
    }

    let stored = deploys
        .create(&PostParams::default(), &deployment("web", 2))
        .await
        .expect("create");
    let rv = stored.metadata.resource_version.clone();

    // replace
    let mut changed = stored.clone();
    if let Some(s) = changed.spec.as_mut() {
        s.replicas = Some(5);
    }
    let answered = deploys
        .replace("web", &dry_post(), &changed)
        .await
        .expect("dry-run replace");
    assert_eq!(answered.spec.and_then(|s| s.replicas), Some(5));

    // patch, main resource and scale
    let dry_patch = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    let answered = deploys
        .patch(
            "web",
            &dry_patch,
            &Patch::Merge(json!({ "spec": { "replicas": 7 } })),
        )
        .await
        .expect("dry-run patch");
    assert_eq!(answered.spec.and_then(|s| s.replicas), Some(7));
    let scale = deploys
        .patch_scale(
            "web",
            &dry_patch,
            &Patch::Merge(json!({ "spec": { "replicas": 9 } })),
        )
        .await
        .expect("dry-run scale patch");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(9));

    // delete
    let dry_delete = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    deploys
        .delete("web", &dry_delete)
        .await
        .expect("dry-run delete");

    let now = deploys.get("web").await.expect("still stored");
    assert_eq!(now.metadata.resource_version, rv, "nothing was written");
    assert_eq!(now.spec.and_then(|s| s.replicas), Some(2));
}

#[tokio::test]
async fn a_dry_run_service_create_allocates_nothing() {
    let c = cluster(ApiServerConfig::default()).await;
    let services: Api<Service> = Api::namespaced(c.client(), "default");
    let svc = |name: &str| -> Service {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": { "name": name },
            "spec": { "type": "NodePort", "ports": [{ "port": 80, "nodePort": 30123 }] }
        }))
        .expect("service manifest")
    };
    services
        .create(&dry_post(), &svc("dry"))
        .await
        .expect("dry-run create");
    assert!(services.get_opt("dry").await.expect("get").is_none());
    services
        .create(&PostParams::default(), &svc("real"))
        .await
        .expect("the NodePort is still free");
}

/// Refuses configmaps that carry a `secret` key: they belong in a Secret.
struct NoSecretsInConfigMaps;

#[async_trait]
impl Admission for NoSecretsInConfigMaps {
    fn name(&self) -> &str {
        "NoSecretsInConfigMaps"
    }

    async fn validate(&self, a: &AdmissionAttributes<'_>, obj: &Value) -> Result<(), ApiError> {
        let is_configmap = a.resource.kind == "ConfigMap";
        let writes = matches!(a.operation, Operation::Create | Operation::Update);
        if is_configmap && writes && obj.pointer("/data/secret").is_some() {
            return Err(ApiError::forbidden(format!(
                "configmaps \"{}\" is forbidden: a secret belongs in a Secret",
                a.name
            )));
        }
        Ok(())
    }
}

#[tokio::test]
async fn an_admission_plugin_from_the_builder_refuses_writes_and_nothing_is_stored() {
    let c = cluster(ApiServerConfig::default().with_admission(NoSecretsInConfigMaps)).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client(), "default");
    let cm = |data: Value| -> ConfigMap {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "settings" }, "data": data
        }))
        .expect("configmap manifest")
    };
    match cms
        .create(&PostParams::default(), &cm(json!({ "secret": "hunter2" })))
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403);
            assert!(s.message.contains("belongs in a Secret"), "{}", s.message);
        }
        other => panic!("expected 403, got {other:?}"),
    }
    assert!(cms.get_opt("settings").await.expect("get").is_none());

    cms.create(&PostParams::default(), &cm(json!({ "level": "debug" })))
        .await
        .expect("an admitted create");
    let refused = cms
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "secret": "x" } })),
        )
        .await;
    assert!(
        matches!(refused, Err(kube::Error::Api(ref s)) if s.code == 403),
        "{refused:?}"
    );
    let stored = cms.get("settings").await.expect("get");
    assert!(stored.data.is_some_and(|d| !d.contains_key("secret")));
}
