//! A user-written `kube::runtime::Controller` against the in-process cluster: every ConfigMap
//! labelled `mirror=true` in `default` gets a copy in `mirror`, kept in step on update and
//! removed when the source goes.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::{Controller, watcher};
use kybernetes::Cluster;
use serde_json::json;

use crate::common;
use common::until;

const FINALIZER: &str = "example.com/mirror";

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[from] Box<kube::runtime::finalizer::Error<kube::Error>>),
}

struct Ctx {
    client: kube::Client,
}

async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let sources: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), "default");
    let mirrors: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), "mirror");
    finalizer(&sources, FINALIZER, cm, |event| async {
        match event {
            Finalizer::Apply(cm) => {
                let name = cm.metadata.name.clone().unwrap_or_default();
                let copy = json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "labels": {"mirrored-from": "default"}},
                    "data": cm.data.clone().unwrap_or_default(),
                });
                match mirrors.get_opt(&name).await? {
                    None => {
                        let obj: ConfigMap =
                            serde_json::from_value(copy).map_err(kube::Error::SerdeError)?;
                        mirrors.create(&PostParams::default(), &obj).await?;
                    }
                    Some(_) => {
                        mirrors
                            .patch(&name, &PatchParams::default(), &Patch::Merge(&copy))
                            .await?;
                    }
                }
                Ok(Action::await_change())
            }
            Finalizer::Cleanup(cm) => {
                let name = cm.metadata.name.clone().unwrap_or_default();
                match mirrors.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e),
                }
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

fn error_policy(_: Arc<ConfigMap>, _: &Error, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(100))
}

#[tokio::test]
async fn mirror_controller_reconciles_create_update_and_delete() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let client = c.client();
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "mirror"}})).expect("ns"),
    )
    .await
    .expect("namespace");

    let sources: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mirrors: Api<ConfigMap> = Api::namespaced(client.clone(), "mirror");
    let controller = Controller::new(
        sources.clone(),
        watcher::Config::default().labels("mirror=true"),
    )
    .run(
        reconcile,
        error_policy,
        Arc::new(Ctx {
            client: client.clone(),
        }),
    )
    .for_each(|_| async {});
    let task = tokio::spawn(controller);

    let source: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "app-config", "labels": {"mirror": "true"}}, "data": {"color": "blue"}
    }))
    .expect("cm");
    sources
        .create(&PostParams::default(), &source)
        .await
        .expect("create source");
    let ignored: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "private"}, "data": {"x": "y"}}))
            .expect("cm");
    sources
        .create(&PostParams::default(), &ignored)
        .await
        .expect("create unlabelled");

    until("the mirror to be created", Duration::from_secs(30), || {
        let m = mirrors.clone();
        async move {
            m.get_opt("app-config")
                .await
                .ok()
                .flatten()
                .and_then(|c| c.data)
                .is_some_and(|d| d["color"] == "blue")
        }
    })
    .await;

    sources
        .patch(
            "app-config",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"color": "green"}})),
        )
        .await
        .expect("update source");
    until(
        "the mirror to follow the update",
        Duration::from_secs(30),
        || {
            let m = mirrors.clone();
            async move {
                m.get_opt("app-config")
                    .await
                    .ok()
                    .flatten()
                    .and_then(|c| c.data)
                    .is_some_and(|d| d["color"] == "green")
            }
        },
    )
    .await;

    sources
        .delete("app-config", &DeleteParams::default())
        .await
        .expect("delete source");
    until(
        "the mirror and the source to be gone",
        Duration::from_secs(30),
        || {
            let (m, s) = (mirrors.clone(), sources.clone());
            async move {
                m.get_opt("app-config").await.ok().flatten().is_none()
                    && s.get_opt("app-config").await.ok().flatten().is_none()
            }
        },
    )
    .await;
    assert!(
        mirrors.get_opt("private").await.expect("get").is_none(),
        "unlabelled configmaps are not mirrored"
    );
    task.abort();
    c.shutdown().await.expect("shutdown");
}
