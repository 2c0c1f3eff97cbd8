//! The garbage collector against the in-process API server: Background, Foreground and Orphan
//! propagation over ownerReferences that the tests write themselves.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Node, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use kybernetes_controllers::garbage_collector::{GarbageCollectorConfig, spawn_garbage_collector};
use kybernetes_core::Clock;
use serde_json::json;
use tokio_util::sync::CancellationToken;

struct Cluster {
    client: Client,
    shutdown: CancellationToken,
    gc: tokio::task::JoinHandle<()>,
}

impl Cluster {
    async fn start() -> Result<Cluster> {
        let store = Arc::new(kybernetes_store::MemoryStore::default());
        let clock = Clock::new();
        let api = kybernetes_apiserver::ApiServer::new(store, clock.clone()).await?;
        let client = Client::new(api.router(), "default");
        let shutdown = CancellationToken::new();
        let config = GarbageCollectorConfig { workers: 4, ..GarbageCollectorConfig::default() };
        let gc = spawn_garbage_collector(client.clone(), clock, config, shutdown.clone());
        Ok(Cluster { client, shutdown, gc })
    }

    async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.gc).await??;
        Ok(())
    }
}

/// Polls `check` until it returns true.
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

fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into(),
        kind: K::kind(&()).into(),
        name: owner.name_any(),
        uid: owner.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(block),
    }
}

fn replica_set(name: &str) -> ReplicaSet {
    let labels = BTreeMap::from([("app".to_string(), name.to_string())]);
    ReplicaSet {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        spec: Some(ReplicaSetSpec {
            replicas: Some(0),
            selector: LabelSelector { match_labels: Some(labels.clone()), ..Default::default() },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "c".into(),
                        image: Some("busybox".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An unbound pod (deleted at once, as no node agent has to stop it).
fn pod(name: &str, owners: Vec<OwnerReference>, finalizers: &[&str]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            owner_references: Some(owners),
            finalizers: (!finalizers.is_empty()).then(|| finalizers.iter().map(|f| f.to_string()).collect()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container { name: "c".into(), image: Some("busybox".into()), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn gone<K>(api: &Api<K>, name: &str) -> Result<bool>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api.get_opt(name).await?.is_none())
}

#[tokio::test]
async fn background_deletion_removes_dependents_once_the_owner_is_gone() -> Result<()> {
    let c = Cluster::start().await?;
    let rss: Api<ReplicaSet> = Api::default_namespaced(c.client.clone());
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    let rs = rss.create(&PostParams::default(), &replica_set("web")).await?;
    for name in ["web-a", "web-b"] {
        pods.create(&PostParams::default(), &pod(name, vec![owner_ref(&rs, true)], &[])).await?;
    }
    rss.delete("web", &DeleteParams::background()).await?;
    eventually("both pods are deleted", || async { Ok(gone(&pods, "web-a").await? && gone(&pods, "web-b").await?) })
        .await?;
    c.stop().await
}

#[tokio::test]
async fn a_dependent_with_another_live_owner_only_loses_the_dangling_reference() -> Result<()> {
    let c = Cluster::start().await?;
    let rss: Api<ReplicaSet> = Api::default_namespaced(c.client.clone());
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client.clone());
    let first = rss.create(&PostParams::default(), &replica_set("first")).await?;
    let second = rss.create(&PostParams::default(), &replica_set("second")).await?;
    let shared = ConfigMap {
        metadata: ObjectMeta {
            name: Some("shared".into()),
            owner_references: Some(vec![owner_ref(&first, false), owner_ref(&second, false)]),
            ..Default::default()
        },
        ..Default::default()
    };
    cms.create(&PostParams::default(), &shared).await?;
    rss.delete("first", &DeleteParams::background()).await?;
    let second_uid = second.uid();
    eventually("the dangling reference is removed", || async {
        let cm = cms.get("shared").await?;
        let uids: Vec<Option<String>> = cm.owner_references().iter().map(|o| Some(o.uid.clone())).collect();
        Ok(uids == vec![second_uid.clone()])
    })
    .await?;
    // The configmap survives because its other owner is alive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(cms.get_opt("shared").await?.is_some());
    c.stop().await
}

#[tokio::test]
async fn foreground_deletion_keeps_the_owner_until_blocking_dependents_are_gone() -> Result<()> {
    let c = Cluster::start().await?;
    let rss: Api<ReplicaSet> = Api::default_namespaced(c.client.clone());
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    let rs = rss.create(&PostParams::default(), &replica_set("web")).await?;
    pods.create(&PostParams::default(), &pod("free", vec![owner_ref(&rs, true)], &[])).await?;
    // A finalizer keeps this blocking dependent around after it is deleted.
    pods.create(&PostParams::default(), &pod("held", vec![owner_ref(&rs, true)], &["example.com/hold"])).await?;
    rss.delete("web", &DeleteParams::foreground()).await?;

    eventually("the dependents are deleted", || async {
        let held = pods.get("held").await?;
        Ok(gone(&pods, "free").await? && held.metadata.deletion_timestamp.is_some())
    })
    .await?;
    // The owner waits for the blocking dependent that still exists.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let owner = rss.get("web").await?;
    assert!(owner.metadata.deletion_timestamp.is_some());
    assert!(owner.finalizers().iter().any(|f| f == "foregroundDeletion"));

    pods.patch("held", &PatchParams::default(), &Patch::Merge(json!({ "metadata": { "finalizers": null } }))).await?;
    eventually("the owner is deleted", || async { gone(&rss, "web").await }).await?;
    c.stop().await
}

#[tokio::test]
async fn dependents_without_block_owner_deletion_do_not_hold_a_foreground_owner() -> Result<()> {
    let c = Cluster::start().await?;
    let rss: Api<ReplicaSet> = Api::default_namespaced(c.client.clone());
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    let rs = rss.create(&PostParams::default(), &replica_set("web")).await?;
    pods.create(&PostParams::default(), &pod("held", vec![owner_ref(&rs, false)], &["example.com/hold"])).await?;
    rss.delete("web", &DeleteParams::foreground()).await?;
    eventually("the owner is deleted", || async { gone(&rss, "web").await }).await?;
    // The dependent was still deleted; only its own finalizer keeps it.
    eventually("the dependent is being deleted", || async {
        Ok(pods.get("held").await?.metadata.deletion_timestamp.is_some())
    })
    .await?;
    pods.patch("held", &PatchParams::default(), &Patch::Merge(json!({ "metadata": { "finalizers": null } }))).await?;
    eventually("the dependent is gone", || async { gone(&pods, "held").await }).await?;
    c.stop().await
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_and_drops_their_owner_references() -> Result<()> {
    let c = Cluster::start().await?;
    let rss: Api<ReplicaSet> = Api::default_namespaced(c.client.clone());
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    let rs = rss.create(&PostParams::default(), &replica_set("web")).await?;
    for name in ["web-a", "web-b"] {
        pods.create(&PostParams::default(), &pod(name, vec![owner_ref(&rs, true)], &[])).await?;
    }
    // Let the collector observe the dependents before the owner goes away.
    tokio::time::sleep(Duration::from_millis(200)).await;
    rss.delete("web", &DeleteParams::orphan()).await?;
    eventually("the owner is deleted", || async { gone(&rss, "web").await }).await?;
    for name in ["web-a", "web-b"] {
        let p = pods.get(name).await?;
        assert!(p.owner_references().is_empty(), "{name} still has owners");
        assert!(p.metadata.deletion_timestamp.is_none());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(pods.get_opt("web-a").await?.is_some());
    c.stop().await
}

#[tokio::test]
async fn a_dependent_whose_owner_uid_no_longer_matches_is_collected() -> Result<()> {
    let c = Cluster::start().await?;
    let rss: Api<ReplicaSet> = Api::default_namespaced(c.client.clone());
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    let rs = rss.create(&PostParams::default(), &replica_set("web")).await?;
    let mut stale = owner_ref(&rs, true);
    stale.uid = "00000000-0000-0000-0000-000000000000".into();
    pods.create(&PostParams::default(), &pod("stale", vec![stale], &[])).await?;
    pods.create(&PostParams::default(), &pod("live", vec![owner_ref(&rs, true)], &[])).await?;
    eventually("the pod with the stale owner is deleted", || async { gone(&pods, "stale").await }).await?;
    assert!(pods.get_opt("live").await?.is_some());
    assert!(rss.get_opt("web").await?.is_some());
    c.stop().await
}

#[tokio::test]
async fn a_cluster_scoped_owner_owns_namespaced_dependents() -> Result<()> {
    let c = Cluster::start().await?;
    let nodes: Api<Node> = Api::all(c.client.clone());
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client.clone());
    let node = Node { metadata: ObjectMeta { name: Some("n1".into()), ..Default::default() }, ..Default::default() };
    let node = nodes.create(&PostParams::default(), &node).await?;
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("node-config".into()),
            owner_references: Some(vec![owner_ref(&node, false)]),
            ..Default::default()
        },
        ..Default::default()
    };
    cms.create(&PostParams::default(), &cm).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(cms.get_opt("node-config").await?.is_some(), "a live cluster-scoped owner is honoured");
    nodes.delete("n1", &DeleteParams::default()).await?;
    eventually("the configmap is deleted", || async { gone(&cms, "node-config").await }).await?;
    c.stop().await
}

#[tokio::test]
async fn a_namespaced_owner_in_another_namespace_does_not_own() -> Result<()> {
    let c = Cluster::start().await?;
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    let ns =
        Namespace { metadata: ObjectMeta { name: Some("other".into()), ..Default::default() }, ..Default::default() };
    namespaces.create(&PostParams::default(), &ns).await?;
    let rss: Api<ReplicaSet> = Api::default_namespaced(c.client.clone());
    let rs = rss.create(&PostParams::default(), &replica_set("web")).await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "other");
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("cross".into()),
            owner_references: Some(vec![owner_ref(&rs, false)]),
            ..Default::default()
        },
        ..Default::default()
    };
    cms.create(&PostParams::default(), &cm).await?;
    eventually("the cross-namespace dependent is deleted", || async { gone(&cms, "cross").await }).await?;
    assert!(rss.get_opt("web").await?.is_some());
    c.stop().await
}

#[tokio::test]
async fn foreground_deletion_cascades_through_a_chain_of_owners() -> Result<()> {
    let c = Cluster::start().await?;
    let rss: Api<ReplicaSet> = Api::default_namespaced(c.client.clone());
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client.clone());
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    let rs = rss.create(&PostParams::default(), &replica_set("top")).await?;
    let middle = ConfigMap {
        metadata: ObjectMeta {
            name: Some("middle".into()),
            owner_references: Some(vec![owner_ref(&rs, true)]),
            ..Default::default()
        },
        ..Default::default()
    };
    let middle = cms.create(&PostParams::default(), &middle).await?;
    pods.create(&PostParams::default(), &pod("leaf", vec![owner_ref(&middle, true)], &["example.com/hold"])).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    rss.delete("top", &DeleteParams::foreground()).await?;
    eventually("the leaf is being deleted", || async {
        Ok(pods.get("leaf").await?.metadata.deletion_timestamp.is_some())
    })
    .await?;
    // The middle object is deleted in the foreground too, so both owners wait for the leaf.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(cms.get("middle").await?.metadata.deletion_timestamp.is_some());
    assert!(rss.get_opt("top").await?.is_some());
    pods.patch("leaf", &PatchParams::default(), &Patch::Merge(json!({ "metadata": { "finalizers": null } }))).await?;
    eventually("the whole chain is deleted", || async {
        Ok(gone(&pods, "leaf").await? && gone(&cms, "middle").await? && gone(&rss, "top").await?)
    })
    .await?;
    c.stop().await
}
