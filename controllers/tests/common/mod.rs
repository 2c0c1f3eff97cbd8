//! Shared test support for the controller integration tests: an in-process API server with
//! controllers spawned on it, polling helpers, and builders for the objects the tests write.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Container, Namespace, Node, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use kybernetes_core::Clock;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The generous timeout the workload tests use.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// An in-process API server on a fresh memory store, and a client for it.
pub async fn api_server() -> Result<(kybernetes_apiserver::ApiServer, Client, Clock)> {
    let store = Arc::new(kybernetes_store::MemoryStore::default());
    let clock = Clock::new();
    let api = kybernetes_apiserver::ApiServer::new(store, clock.clone()).await?;
    let client = Client::new(api.router(), "default");
    Ok((api, client, clock))
}

/// An API server with the controllers a test spawns on it.
pub struct Cluster {
    pub client: Client,
    pub clock: Clock,
    shutdown: CancellationToken,
    handles: Vec<JoinHandle<()>>,
}

impl Cluster {
    /// Starts an API server and the controllers `spawn` starts on it.
    pub async fn start(
        spawn: impl FnOnce(&Client, &Clock, &CancellationToken) -> Vec<JoinHandle<()>>,
    ) -> Result<Cluster> {
        let (_api, client, clock) = api_server().await?;
        let shutdown = CancellationToken::new();
        let handles = spawn(&client, &clock, &shutdown);
        Ok(Cluster {
            client,
            clock,
            shutdown,
            handles,
        })
    }

    /// Stops the controllers and waits up to 10 s for each.
    pub async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        for h in self.handles {
            tokio::time::timeout(Duration::from_secs(10), h).await??;
        }
        Ok(())
    }
}

/// Polls `check` every `interval` until it returns `Some`; `None` once `timeout` has passed.
async fn poll<T, F, Fut>(timeout: Duration, interval: Duration, mut check: F) -> Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await? {
            return Ok(Some(v));
        }
        if tokio::time::Instant::now() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(interval).await;
    }
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    match poll(timeout, Duration::from_millis(20), check).await? {
        Some(v) => Ok(v),
        None => bail!("timed out waiting for {what}"),
    }
}

/// Polls `check` every `interval` until it returns true, for at most `timeout`.
pub async fn eventually_every<F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let found = poll(timeout, interval, || {
        let done = check();
        async move { Ok(done.await?.then_some(())) }
    })
    .await?;
    match found {
        Some(()) => Ok(()),
        None => bail!("timed out waiting until {what}"),
    }
}

/// Polls `check` every 20 ms until it returns true, for up to 20 s.
pub async fn eventually<F, Fut>(what: &str, check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    eventually_every(
        what,
        Duration::from_secs(20),
        Duration::from_millis(20),
        check,
    )
    .await
}

/// Whether the object `name` no longer exists.
pub async fn gone<K>(api: &Api<K>, name: &str) -> Result<bool>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api.get_opt(name).await?.is_none())
}

/// Removes every finalizer of the object `name`.
pub async fn clear_finalizers<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
    )
    .await?;
    Ok(())
}

/// Metadata with only a name.
pub fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    }
}

/// The label set `app=<app>`.
pub fn labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), app.to_string())])
}

/// A container `c` running busybox.
pub fn container() -> Container {
    Container {
        name: "c".into(),
        image: Some("busybox".into()),
        ..Default::default()
    }
}

/// A pod with one busybox container.
pub fn pod(name: &str) -> Pod {
    Pod {
        metadata: meta(name),
        spec: Some(PodSpec {
            containers: vec![container()],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A node with only a name.
pub fn node(name: &str) -> Node {
    Node {
        metadata: meta(name),
        ..Default::default()
    }
}

/// A namespace with only a name.
pub fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: meta(name),
        ..Default::default()
    }
}

/// A ReplicaSet of 0 busybox replicas selecting `app=<app>`.
pub fn replica_set(name: &str, app: &str) -> ReplicaSet {
    ReplicaSet {
        metadata: meta(name),
        spec: Some(ReplicaSetSpec {
            replicas: Some(0),
            selector: LabelSelector {
                match_labels: Some(labels(app)),
                ..Default::default()
            },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(app)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container()],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A controller reference to `owner`.
pub fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into(),
        kind: K::kind(&()).into(),
        name: owner.name_any(),
        uid: owner.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(block),
    }
}
