//! The namespace controller against the in-process API server.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, Pod, PodSpec, Secret, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kybernetes_controllers::namespace::{NamespaceConfig, spawn_namespace_controller};
use kybernetes_core::Clock;
use serde_json::json;
use tokio_util::sync::CancellationToken;

struct Cluster {
    client: Client,
    shutdown: CancellationToken,
    controller: tokio::task::JoinHandle<()>,
}

impl Cluster {
    async fn start() -> Result<Cluster> {
        let store = Arc::new(kybernetes_store::MemoryStore::default());
        let clock = Clock::new();
        let api = kybernetes_apiserver::ApiServer::new(store, clock.clone()).await?;
        let client = Client::new(api.router(), "default");
        let shutdown = CancellationToken::new();
        let config = NamespaceConfig { requeue_interval: Duration::from_millis(100), ..NamespaceConfig::default() };
        let controller = spawn_namespace_controller(client.clone(), clock, config, shutdown.clone());
        Ok(Cluster { client, shutdown, controller })
    }

    async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.controller).await??;
        Ok(())
    }

    async fn create_namespace(&self, name: &str) -> Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let ns =
            Namespace { metadata: ObjectMeta { name: Some(name.into()), ..Default::default() }, ..Default::default() };
        namespaces.create(&PostParams::default(), &ns).await?;
        Ok(())
    }
}

async fn eventually<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), ..Default::default() }
}

fn container() -> Container {
    Container { name: "c".into(), image: Some("busybox".into()), ..Default::default() }
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_content_then_the_namespace() -> Result<()> {
    let c = Cluster::start().await?;
    c.create_namespace("team").await?;
    let client = c.client.clone();
    Api::<ConfigMap>::namespaced(client.clone(), "team")
        .create(&PostParams::default(), &ConfigMap { metadata: meta("cm"), ..Default::default() })
        .await?;
    Api::<Secret>::namespaced(client.clone(), "team")
        .create(&PostParams::default(), &Secret { metadata: meta("s"), ..Default::default() })
        .await?;
    let pod = Pod {
        metadata: meta("p"),
        spec: Some(PodSpec { containers: vec![container()], ..Default::default() }),
        ..Default::default()
    };
    Api::<Pod>::namespaced(client.clone(), "team").create(&PostParams::default(), &pod).await?;
    let svc = Service {
        metadata: meta("svc"),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort { port: 80, ..Default::default() }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    Api::<Service>::namespaced(client.clone(), "team").create(&PostParams::default(), &svc).await?;
    let rs = ReplicaSet {
        metadata: meta("rs"),
        spec: Some(ReplicaSetSpec {
            replicas: Some(0),
            selector: LabelSelector {
                match_labels: Some([("app".to_string(), "x".to_string())].into()),
                ..Default::default()
            },
            template: Some(k8s_openapi::api::core::v1::PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some([("app".to_string(), "x".to_string())].into()),
                    ..Default::default()
                }),
                spec: Some(PodSpec { containers: vec![container()], ..Default::default() }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    Api::<ReplicaSet>::namespaced(client.clone(), "team").create(&PostParams::default(), &rs).await?;
    // Content elsewhere is untouched.
    Api::<ConfigMap>::default_namespaced(client.clone())
        .create(&PostParams::default(), &ConfigMap { metadata: meta("keep"), ..Default::default() })
        .await?;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete("team", &DeleteParams::default()).await?;
    eventually("the namespace is gone", || async { Ok(namespaces.get_opt("team").await?.is_none()) }).await?;
    let lp = ListParams::default();
    assert!(Api::<ConfigMap>::namespaced(client.clone(), "team").list(&lp).await?.items.is_empty());
    assert!(Api::<Pod>::namespaced(client.clone(), "team").list(&lp).await?.items.is_empty());
    assert!(Api::<ReplicaSet>::namespaced(client.clone(), "team").list(&lp).await?.items.is_empty());
    assert!(Api::<Service>::namespaced(client.clone(), "team").list(&lp).await?.items.is_empty());
    assert!(Api::<ConfigMap>::default_namespaced(client.clone()).get_opt("keep").await?.is_some());
    c.stop().await
}

#[tokio::test]
async fn content_with_finalizers_holds_the_namespace_until_they_are_removed() -> Result<()> {
    let c = Cluster::start().await?;
    c.create_namespace("team").await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "team");
    let mut held = ConfigMap { metadata: meta("held"), ..Default::default() };
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held).await?;
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    namespaces.delete("team", &DeleteParams::default()).await?;

    eventually("the namespace reports the remaining finalizer", || async {
        let ns = namespaces.get("team").await?;
        let conditions = ns.status.and_then(|s| s.conditions).unwrap_or_default();
        Ok(conditions.iter().any(|c| c.type_ == "NamespaceFinalizersRemaining" && c.status == "True")
            && conditions.iter().any(|c| c.type_ == "NamespaceContentRemaining" && c.status == "True"))
    })
    .await?;
    let ns = namespaces.get("team").await?;
    assert_eq!(ns.status.and_then(|s| s.phase).as_deref(), Some("Terminating"));
    assert!(cms.get("held").await?.metadata.deletion_timestamp.is_some());

    cms.patch("held", &PatchParams::default(), &Patch::Merge(json!({ "metadata": { "finalizers": null } }))).await?;
    eventually("the namespace is gone", || async { Ok(namespaces.get_opt("team").await?.is_none()) }).await?;
    c.stop().await
}

#[tokio::test]
async fn custom_resources_in_a_deleted_namespace_are_deleted_too() -> Result<()> {
    let c = Cluster::start().await?;
    c.create_namespace("team").await?;
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "widgets.example.com" },
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": { "plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList" },
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } }
            }]
        }
    }))?;
    crds.create(&PostParams::default(), &crd).await?;
    let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.com", "v1", "Widget"), "widgets");
    let widgets: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), "team", &resource);
    let widget = DynamicObject::new("w1", &resource).data(json!({ "spec": { "size": 1 } }));
    eventually("the custom resource is served", || async {
        Ok(widgets.create(&PostParams::default(), &widget).await.is_ok())
    })
    .await?;
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    namespaces.delete("team", &DeleteParams::default()).await?;
    eventually("the namespace is gone", || async { Ok(namespaces.get_opt("team").await?.is_none()) }).await?;
    assert!(widgets.list(&ListParams::default()).await?.items.is_empty());
    c.stop().await
}
