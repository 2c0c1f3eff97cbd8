//! A custom controller with a CRD, tested against an in-process cluster in milliseconds.
//!
//! The `Greeting` resource asks for a ConfigMap holding a message; the controller creates it
//! (owned by the Greeting) and reports `status.ready`.
//!
//! Run with `cargo run --example custom_controller`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{Controller, watcher};
use kube::{CustomResource, CustomResourceExt, Resource, ResourceExt};
use kybernetes::Cluster;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "Greeting",
    namespaced,
    status = "GreetingStatus"
)]
struct GreetingSpec {
    message: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
struct GreetingStatus {
    ready: bool,
}

async fn reconcile(g: Arc<Greeting>, client: Arc<kube::Client>) -> Result<Action, kube::Error> {
    let ns = g.namespace().unwrap_or_else(|| "default".into());
    let name = g.name_any();
    let owner = g.controller_owner_ref(&()).map(|o| vec![o]);
    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            owner_references: owner,
            ..Default::default()
        },
        data: Some([("message".to_string(), g.spec.message.clone())].into()),
        ..Default::default()
    };
    let cms: Api<ConfigMap> = Api::namespaced((*client).clone(), &ns);
    match cms.get_opt(&name).await? {
        None => {
            cms.create(&PostParams::default(), &cm).await?;
        }
        Some(_) => {
            cms.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"data": cm.data})),
            )
            .await?;
        }
    }
    let greetings: Api<Greeting> = Api::namespaced((*client).clone(), &ns);
    greetings
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": true}})),
        )
        .await?;
    Ok(Action::await_change())
}

fn error_policy(_: Arc<Greeting>, _: &kube::Error, _: Arc<kube::Client>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let t0 = Instant::now();
    let cluster = Cluster::builder().start().await?;
    let client = cluster.client();

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Greeting::crd())
        .await?;
    await_condition(
        crds,
        "greetings.example.com",
        conditions::is_crd_established(),
    )
    .await?;

    let greetings: Api<Greeting> = Api::default_namespaced(client.clone());
    let controller = Controller::new(greetings.clone(), watcher::Config::default())
        .owns(
            Api::<ConfigMap>::default_namespaced(client.clone()),
            watcher::Config::default(),
        )
        .run(reconcile, error_policy, Arc::new(client.clone()))
        .for_each(|_| async {});
    let task = tokio::spawn(controller);

    greetings
        .create(
            &PostParams::default(),
            &Greeting::new(
                "hello",
                GreetingSpec {
                    message: "hi there".into(),
                },
            ),
        )
        .await?;
    let ready = |g: Option<&Greeting>| g.and_then(|g| g.status.as_ref()).is_some_and(|s| s.ready);
    cluster
        .wait_until(&greetings, "hello", ready, Duration::from_secs(10))
        .await?;

    let cm = Api::<ConfigMap>::default_namespaced(client)
        .get("hello")
        .await?;
    println!("ConfigMap hello: {:?}", cm.data.unwrap_or_default());
    println!("reconciled in {:?} (cluster start included)", t0.elapsed());
    task.abort();
    cluster.shutdown().await?;
    Ok(())
}
