//! The garbage collector against the in-process API server: Background, Foreground and Orphan
//! propagation over ownerReferences that the tests write themselves.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{Cluster, clear_finalizers, eventually, gone, meta, namespace, node, owner_ref};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kybernetes_controllers::garbage_collector::{GarbageCollectorConfig, spawn_garbage_collector};

/// An API server with the garbage collector.
async fn start() -> Result<Cluster> {
    Cluster::start(|client, clock, shutdown| {
        let config = GarbageCollectorConfig {
            workers: 4,
            ..GarbageCollectorConfig::default()
        };
        vec![spawn_garbage_collector(
            client.clone(),
            clock.clone(),
            config,
            shutdown.clone(),
        )]
    })
    .await
}

/// An unbound pod (deleted at once, as no node agent has to stop it).
fn pod(name: &str, owners: Vec<OwnerReference>, finalizers: &[&str]) -> Pod {
    let mut pod = common::pod(name);
    pod.metadata.owner_references = Some(owners);
    pod.metadata.finalizers =
        (!finalizers.is_empty()).then(|| finalizers.iter().map(|f| f.to_string()).collect());
    pod
}

/// A config map owned by `owners`.
fn config_map(name: &str, owners: Vec<OwnerReference>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            owner_references: Some(owners),
            ..meta(name)
        },
        ..Default::default()
    }
}

/// Creates the ReplicaSet `web`; returns it with the ReplicaSet and pod APIs.
async fn create_web(c: &Cluster) -> Result<(Api<ReplicaSet>, Api<Pod>, ReplicaSet)> {
    let rss: Api<ReplicaSet> = Api::default_namespaced(c.client.clone());
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    let rs = rss
        .create(&PostParams::default(), &replica_set("web"))
        .await?;
    Ok((rss, pods, rs))
}

/// Creates pods with a blocking controller reference to `owner`.
async fn create_owned_pods(pods: &Api<Pod>, owner: &ReplicaSet, names: &[&str]) -> Result<()> {
    for name in names {
        pods.create(
            &PostParams::default(),
            &pod(name, vec![owner_ref(owner, true)], &[]),
        )
        .await?;
    }
    Ok(())
}

fn replica_set(name: &str) -> ReplicaSet {
    common::replica_set(name, name)
}

#[tokio::test]
async fn background_deletion_removes_dependents_once_the_owner_is_gone() -> Result<()> {
    let c = start().await?;
    let (rss, pods, rs) = create_web(&c).await?;
    create_owned_pods(&pods, &rs, &["web-a", "web-b"]).await?;
    rss.delete("web", &DeleteParams::background()).await?;
    eventually("both pods are deleted", || async {
        Ok(gone(&pods, "web-a").await? && gone(&pods, "web-b").await?)
    })
    .await?;
    c.stop().await
}

#[tokio::test]
async fn a_dependent_with_another_live_owner_only_loses_the_dangling_reference() -> Result<()> {
    let c = start().await?;
    let rss: Api<ReplicaSet> = Api::default_namespaced(c.client.clone());
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client.clone());
    let first = rss
        .create(&PostParams::default(), &replica_set("first"))
        .await?;
    let second = rss
        .create(&PostParams::default(), &replica_set("second"))
        .await?;
    let shared = config_map(
        "shared",
        vec![owner_ref(&first, false), owner_ref(&second, false)],
    );
    cms.create(&PostParams::default(), &shared).await?;
    rss.delete("first", &DeleteParams::background()).await?;
    let second_uid = second.uid();
    eventually("the dangling reference is removed", || async {
        let cm = cms.get("shared").await?;
        let uids: Vec<Option<String>> = cm
            .owner_references()
            .iter()
            .map(|o| Some(o.uid.clone()))
            .collect();
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
    let c = start().await?;
    let (rss, pods, rs) = create_web(&c).await?;
    pods.create(
        &PostParams::default(),
        &pod("free", vec![owner_ref(&rs, true)], &[]),
    )
    .await?;
    // A finalizer keeps this blocking dependent around after it is deleted.
    pods.create(
        &PostParams::default(),
        &pod("held", vec![owner_ref(&rs, true)], &["example.com/hold"]),
    )
    .await?;
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

    clear_finalizers(&pods, "held").await?;
    eventually("the owner is deleted", || async { gone(&rss, "web").await }).await?;
    c.stop().await
}

#[tokio::test]
async fn dependents_without_block_owner_deletion_do_not_hold_a_foreground_owner() -> Result<()> {
    let c = start().await?;
    let (rss, pods, rs) = create_web(&c).await?;
    pods.create(
        &PostParams::default(),
        &pod("held", vec![owner_ref(&rs, false)], &["example.com/hold"]),
    )
    .await?;
    rss.delete("web", &DeleteParams::foreground()).await?;
    eventually("the owner is deleted", || async { gone(&rss, "web").await }).await?;
    // The dependent was still deleted; only its own finalizer keeps it.
    eventually("the dependent is being deleted", || async {
        Ok(pods
            .get("held")
            .await?
            .metadata
            .deletion_timestamp
            .is_some())
    })
    .await?;
    clear_finalizers(&pods, "held").await?;
    eventually("the dependent is gone", || async {
        gone(&pods, "held").await
    })
    .await?;
    c.stop().await
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_and_drops_their_owner_references() -> Result<()> {
    let c = start().await?;
    let (rss, pods, rs) = create_web(&c).await?;
    create_owned_pods(&pods, &rs, &["web-a", "web-b"]).await?;
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
    let c = start().await?;
    let (rss, pods, rs) = create_web(&c).await?;
    let mut stale = owner_ref(&rs, true);
    stale.uid = "00000000-0000-0000-0000-000000000000".into();
    pods.create(&PostParams::default(), &pod("stale", vec![stale], &[]))
        .await?;
    pods.create(
        &PostParams::default(),
        &pod("live", vec![owner_ref(&rs, true)], &[]),
    )
    .await?;
    eventually("the pod with the stale owner is deleted", || async {
        gone(&pods, "stale").await
    })
    .await?;
    assert!(pods.get_opt("live").await?.is_some());
    assert!(rss.get_opt("web").await?.is_some());
    c.stop().await
}

#[tokio::test]
async fn a_cluster_scoped_owner_owns_namespaced_dependents() -> Result<()> {
    let c = start().await?;
    let nodes: Api<Node> = Api::all(c.client.clone());
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client.clone());
    let node = nodes.create(&PostParams::default(), &node("n1")).await?;
    let cm = config_map("node-config", vec![owner_ref(&node, false)]);
    cms.create(&PostParams::default(), &cm).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        cms.get_opt("node-config").await?.is_some(),
        "a live cluster-scoped owner is honoured"
    );
    nodes.delete("n1", &DeleteParams::default()).await?;
    eventually("the configmap is deleted", || async {
        gone(&cms, "node-config").await
    })
    .await?;
    c.stop().await
}

#[tokio::test]
async fn a_namespaced_owner_in_another_namespace_does_not_own() -> Result<()> {
    let c = start().await?;
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    namespaces
        .create(&PostParams::default(), &namespace("other"))
        .await?;
    let rss: Api<ReplicaSet> = Api::default_namespaced(c.client.clone());
    let rs = rss
        .create(&PostParams::default(), &replica_set("web"))
        .await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "other");
    let cm = config_map("cross", vec![owner_ref(&rs, false)]);
    cms.create(&PostParams::default(), &cm).await?;
    eventually("the cross-namespace dependent is deleted", || async {
        gone(&cms, "cross").await
    })
    .await?;
    assert!(rss.get_opt("web").await?.is_some());
    c.stop().await
}

#[tokio::test]
async fn foreground_deletion_cascades_through_a_chain_of_owners() -> Result<()> {
    let c = start().await?;
    let rss: Api<ReplicaSet> = Api::default_namespaced(c.client.clone());
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client.clone());
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    let rs = rss
        .create(&PostParams::default(), &replica_set("top"))
        .await?;
    let middle = config_map("middle", vec![owner_ref(&rs, true)]);
    let middle = cms.create(&PostParams::default(), &middle).await?;
    pods.create(
        &PostParams::default(),
        &pod(
            "leaf",
            vec![owner_ref(&middle, true)],
            &["example.com/hold"],
        ),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    rss.delete("top", &DeleteParams::foreground()).await?;
    eventually("the leaf is being deleted", || async {
        Ok(pods
            .get("leaf")
            .await?
            .metadata
            .deletion_timestamp
            .is_some())
    })
    .await?;
    // The middle object is deleted in the foreground too, so both owners wait for the leaf.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        cms.get("middle")
            .await?
            .metadata
            .deletion_timestamp
            .is_some()
    );
    assert!(rss.get_opt("top").await?.is_some());
    clear_finalizers(&pods, "leaf").await?;
    eventually("the whole chain is deleted", || async {
        Ok(gone(&pods, "leaf").await? && gone(&cms, "middle").await? && gone(&rss, "top").await?)
    })
    .await?;
    c.stop().await
}
