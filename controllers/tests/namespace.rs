//! The namespace controller against the in-process API server.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{Cluster, clear_finalizers, eventually, meta, namespace, pod, replica_set};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, Pod, Secret, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
};
use kybernetes_controllers::namespace::{NamespaceConfig, spawn_namespace_controller};
use serde_json::json;

/// An API server with the namespace controller.
async fn start() -> Result<Cluster> {
    Cluster::start(|client, clock, shutdown| {
        let config = NamespaceConfig {
            requeue_interval: Duration::from_millis(100),
            ..NamespaceConfig::default()
        };
        vec![spawn_namespace_controller(
            client.clone(),
            clock.clone(),
            config,
            shutdown.clone(),
        )]
    })
    .await
}

/// Creates the namespace `name`.
async fn create_namespace(c: &Cluster, name: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    namespaces
        .create(&PostParams::default(), &namespace(name))
        .await?;
    Ok(())
}

/// Deletes the namespace `team` and waits until it is gone.
async fn delete_team(namespaces: &Api<Namespace>) -> Result<()> {
    namespaces.delete("team", &DeleteParams::default()).await?;
    wait_until_team_is_gone(namespaces).await
}

async fn wait_until_team_is_gone(namespaces: &Api<Namespace>) -> Result<()> {
    eventually("the namespace is gone", || async {
        Ok(namespaces.get_opt("team").await?.is_none())
    })
    .await
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_content_then_the_namespace() -> Result<()> {
    let c = start().await?;
    create_namespace(&c, "team").await?;
    let client = c.client.clone();
    Api::<ConfigMap>::namespaced(client.clone(), "team")
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta("cm"),
                ..Default::default()
            },
        )
        .await?;
    Api::<Secret>::namespaced(client.clone(), "team")
        .create(
            &PostParams::default(),
            &Secret {
                metadata: meta("s"),
                ..Default::default()
            },
        )
        .await?;
    Api::<Pod>::namespaced(client.clone(), "team")
        .create(&PostParams::default(), &pod("p"))
        .await?;
    let svc = Service {
        metadata: meta("svc"),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    Api::<Service>::namespaced(client.clone(), "team")
        .create(&PostParams::default(), &svc)
        .await?;
    let rs = replica_set("rs", "x");
    Api::<ReplicaSet>::namespaced(client.clone(), "team")
        .create(&PostParams::default(), &rs)
        .await?;
    // Content elsewhere is untouched.
    Api::<ConfigMap>::default_namespaced(client.clone())
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta("keep"),
                ..Default::default()
            },
        )
        .await?;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    delete_team(&namespaces).await?;
    let lp = ListParams::default();
    assert!(
        Api::<ConfigMap>::namespaced(client.clone(), "team")
            .list(&lp)
            .await?
            .items
            .is_empty()
    );
    assert!(
        Api::<Pod>::namespaced(client.clone(), "team")
            .list(&lp)
            .await?
            .items
            .is_empty()
    );
    assert!(
        Api::<ReplicaSet>::namespaced(client.clone(), "team")
            .list(&lp)
            .await?
            .items
            .is_empty()
    );
    assert!(
        Api::<Service>::namespaced(client.clone(), "team")
            .list(&lp)
            .await?
            .items
            .is_empty()
    );
    assert!(
        Api::<ConfigMap>::default_namespaced(client.clone())
            .get_opt("keep")
            .await?
            .is_some()
    );
    c.stop().await
}

#[tokio::test]
async fn content_with_finalizers_holds_the_namespace_until_they_are_removed() -> Result<()> {
    let c = start().await?;
    create_namespace(&c, "team").await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "team");
    let mut held = ConfigMap {
        metadata: meta("held"),
        ..Default::default()
    };
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held).await?;
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    namespaces.delete("team", &DeleteParams::default()).await?;

    eventually("the namespace reports the remaining finalizer", || async {
        let ns = namespaces.get("team").await?;
        let conditions = ns.status.and_then(|s| s.conditions).unwrap_or_default();
        Ok(conditions
            .iter()
            .any(|c| c.type_ == "NamespaceFinalizersRemaining" && c.status == "True")
            && conditions
                .iter()
                .any(|c| c.type_ == "NamespaceContentRemaining" && c.status == "True"))
    })
    .await?;
    let ns = namespaces.get("team").await?;
    assert_eq!(
        ns.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    assert!(cms.get("held").await?.metadata.deletion_timestamp.is_some());

    clear_finalizers(&cms, "held").await?;
    wait_until_team_is_gone(&namespaces).await?;
    c.stop().await
}

#[tokio::test]
async fn custom_resources_in_a_deleted_namespace_are_deleted_too() -> Result<()> {
    let c = start().await?;
    create_namespace(&c, "team").await?;
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
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), "team", &resource);
    let widget = DynamicObject::new("w1", &resource).data(json!({ "spec": { "size": 1 } }));
    eventually("the custom resource is served", || async {
        Ok(widgets
            .create(&PostParams::default(), &widget)
            .await
            .is_ok())
    })
    .await?;
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    delete_team(&namespaces).await?;
    assert!(widgets.list(&ListParams::default()).await?.items.is_empty());
    c.stop().await
}
