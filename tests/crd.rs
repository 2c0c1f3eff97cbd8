//! Custom resources defined with `kube::CustomResource` + `schemars`: creating the CRD serves
//! the resource at once, with its status subresource; deleting it stops serving it.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{CustomResource, CustomResourceExt};
use kybernetes::Cluster;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
struct WidgetSpec {
    size: u32,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
struct WidgetStatus {
    ready: bool,
}

#[tokio::test]
async fn a_crd_is_served_as_soon_as_it_is_created() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let crds: Api<CustomResourceDefinition> = Api::all(c.client());
    crds.create(&PostParams::default(), &Widget::crd())
        .await
        .expect("create CRD");
    tokio::time::timeout(
        Duration::from_secs(10),
        await_condition(
            crds.clone(),
            "widgets.example.com",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("established in time")
    .expect("condition");

    let widgets: Api<Widget> = Api::default_namespaced(c.client());
    let mut w = Widget::new("w1", WidgetSpec { size: 3 });
    w.status = Some(WidgetStatus { ready: true });
    let created = widgets
        .create(&PostParams::default(), &w)
        .await
        .expect("create widget");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.status.is_none(),
        "status is only written through /status"
    );
    let st = widgets
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": true}})),
        )
        .await
        .expect("status");
    assert!(st.status.expect("status").ready);
    let bigger = widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 4}})),
        )
        .await
        .expect("patch spec");
    assert_eq!(bigger.metadata.generation, Some(2));

    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .expect("delete CRD");
    let gone = widgets
        .get("w1")
        .await
        .expect_err("resource no longer served");
    assert!(matches!(gone, kube::Error::Api(s) if s.code == 404));
    c.shutdown().await.expect("shutdown");
}
