//! The ReplicaSet controller against the in-process API server, with a fake kubelet.

mod common;
mod fake_kubelet;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{TIMEOUT, wait_for};
use fake_kubelet::TestCluster;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

fn replica_set(name: &str, replicas: i32, min_ready_seconds: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready_seconds,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "nginx:1.25"}]}
            }
        }
    }))
    .expect("a valid replica set")
}

/// Creates the ReplicaSet `web` and returns its uid.
async fn create_web(
    client: &Client,
    replicas: i32,
    min_ready_seconds: i32,
) -> anyhow::Result<String> {
    let rss: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let rs = rss
        .create(
            &PostParams::default(),
            &replica_set("web", replicas, min_ready_seconds),
        )
        .await?;
    Ok(rs.uid().unwrap_or_default())
}

/// The active pods controlled by the ReplicaSet with this uid.
async fn owned_pods(client: &Client, uid: &str) -> anyhow::Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    Ok(pods
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|r| r.uid == uid && r.controller == Some(true))
        })
        .collect())
}

async fn wait_for_pod_count(client: &Client, uid: &str, n: usize) -> anyhow::Result<Vec<Pod>> {
    wait_for(&format!("{n} pods"), TIMEOUT, || async {
        let pods = owned_pods(client, uid).await?;
        Ok((pods.len() == n).then_some(pods))
    })
    .await
}

async fn wait_for_status(
    client: &Client,
    name: &str,
    ready: i32,
    available: i32,
) -> anyhow::Result<ReplicaSet> {
    let rss: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    wait_for(
        &format!("{name} ready={ready} available={available}"),
        TIMEOUT,
        || async {
            let rs = rss.get(name).await?;
            let s = rs.status.clone().unwrap_or_default();
            let done = s.ready_replicas.unwrap_or(0) == ready
                && s.available_replicas.unwrap_or(0) == available
                && s.observed_generation == rs.metadata.generation;
            Ok(done.then_some(rs))
        },
    )
    .await
}

async fn scale(client: &Client, name: &str, replicas: i32) -> anyhow::Result<()> {
    let rss: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    rss.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": replicas}})),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn replica_set_creates_pods_with_controller_owner_references() -> anyhow::Result<()> {
    let cluster = TestCluster::start(None).await?;
    let uid = create_web(&cluster.client, 3, 0).await?;

    let pods = wait_for_pod_count(&cluster.client, &uid, 3).await?;
    for pod in &pods {
        let suffix = pod
            .name_any()
            .strip_prefix("web-")
            .map(str::to_string)
            .unwrap_or_default();
        assert_eq!(
            suffix.len(),
            5,
            "pod {} is named <rs>-<5 chars>",
            pod.name_any()
        );
        let owner = &pod.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("ReplicaSet", "web")
        );
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
        assert_eq!(pod.labels().get("app").map(String::as_str), Some("web"));
    }
    let rs = wait_for_status(&cluster.client, "web", 3, 3).await?;
    let status = rs.status.unwrap_or_default();
    assert_eq!(
        (status.replicas, status.fully_labeled_replicas),
        (3, Some(3))
    );
    cluster.stop().await;
    Ok(())
}

#[tokio::test]
async fn replica_set_scales_up_and_down() -> anyhow::Result<()> {
    let cluster = TestCluster::start(None).await?;
    let uid = create_web(&cluster.client, 2, 0).await?;
    wait_for_status(&cluster.client, "web", 2, 2).await?;

    scale(&cluster.client, "web", 5).await?;
    wait_for_pod_count(&cluster.client, &uid, 5).await?;
    wait_for_status(&cluster.client, "web", 5, 5).await?;

    scale(&cluster.client, "web", 1).await?;
    wait_for_pod_count(&cluster.client, &uid, 1).await?;
    let rs = wait_for_status(&cluster.client, "web", 1, 1).await?;
    assert_eq!(rs.status.map(|s| s.replicas), Some(1));

    scale(&cluster.client, "web", 0).await?;
    wait_for_pod_count(&cluster.client, &uid, 0).await?;
    cluster.stop().await;
    Ok(())
}

#[tokio::test]
async fn replica_set_adopts_an_orphan_pod_that_matches_its_selector() -> anyhow::Result<()> {
    let cluster = TestCluster::start(None).await?;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client.clone());
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "main", "image": "nginx:1.25"}]}
    }))?;
    pods.create(&PostParams::default(), &orphan).await?;

    let uid = create_web(&cluster.client, 2, 0).await?;
    let owned = wait_for_pod_count(&cluster.client, &uid, 2).await?;
    assert!(
        owned.iter().any(|p| p.name_any() == "orphan"),
        "the orphan was adopted"
    );
    let adopted = pods.get("orphan").await?;
    let owner = &adopted.owner_references()[0];
    assert_eq!(
        (
            owner.uid.as_str(),
            owner.controller,
            owner.block_owner_deletion
        ),
        (uid.as_str(), Some(true), Some(true))
    );
    // Adoption counts: only one pod was created.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pods.list(&ListParams::default()).await?.items.len(), 2);
    cluster.stop().await;
    Ok(())
}

#[tokio::test]
async fn replica_set_releases_a_pod_whose_labels_no_longer_match() -> anyhow::Result<()> {
    let cluster = TestCluster::start(None).await?;
    let uid = create_web(&cluster.client, 2, 0).await?;
    let owned = wait_for_pod_count(&cluster.client, &uid, 2).await?;
    let leaving = owned[0].name_any();

    let pods: Api<Pod> = Api::default_namespaced(cluster.client.clone());
    pods.patch(
        &leaving,
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"labels": {"app": "debug"}}})),
    )
    .await?;

    wait_for("the pod to be released", TIMEOUT, || async {
        let pod = pods.get(&leaving).await?;
        Ok(pod.owner_references().is_empty().then_some(()))
    })
    .await?;
    // A replacement keeps the ReplicaSet at 2.
    let owned = wait_for_pod_count(&cluster.client, &uid, 2).await?;
    assert!(owned.iter().all(|p| p.name_any() != leaving));
    assert_eq!(pods.list(&ListParams::default()).await?.items.len(), 3);
    cluster.stop().await;
    Ok(())
}

#[tokio::test]
async fn replica_set_replaces_a_deleted_pod() -> anyhow::Result<()> {
    let cluster = TestCluster::start(None).await?;
    let uid = create_web(&cluster.client, 3, 0).await?;
    let before = wait_for_pod_count(&cluster.client, &uid, 3).await?;
    let gone = before[1].name_any();

    let pods: Api<Pod> = Api::default_namespaced(cluster.client.clone());
    pods.delete(&gone, &DeleteParams::default()).await?;
    wait_for("a replacement pod", TIMEOUT, || async {
        let now = owned_pods(&cluster.client, &uid).await?;
        Ok((now.len() == 3 && now.iter().all(|p| p.name_any() != gone)).then_some(()))
    })
    .await?;
    wait_for_status(&cluster.client, "web", 3, 3).await?;
    cluster.stop().await;
    Ok(())
}

#[tokio::test]
async fn available_replicas_wait_for_min_ready_seconds() -> anyhow::Result<()> {
    let cluster = TestCluster::start(None).await?;
    create_web(&cluster.client, 2, 2).await?;
    let rss: Api<ReplicaSet> = Api::default_namespaced(cluster.client.clone());
    // Ready first, available only once the pods have been ready for 2 s.
    let rs = wait_for("ready replicas", TIMEOUT, || async {
        let rs = rss.get("web").await?;
        Ok((rs.status.as_ref().and_then(|s| s.ready_replicas) == Some(2)).then_some(rs))
    })
    .await?;
    assert_eq!(rs.status.as_ref().and_then(|s| s.available_replicas), None);
    wait_for_status(&cluster.client, "web", 2, 2).await?;
    cluster.stop().await;
    Ok(())
}

#[tokio::test]
async fn replica_set_ignores_pods_of_other_controllers_and_finished_pods() -> anyhow::Result<()> {
    let cluster = TestCluster::start(None).await?;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client.clone());
    // A finished pod with matching labels is neither adopted nor counted.
    let done: Pod = serde_json::from_value(json!({
        "metadata": {"name": "finished", "labels": {"app": "web"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}
    }))?;
    pods.create(&PostParams::default(), &done).await?;
    pods.patch_status(
        "finished",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"phase": "Succeeded"}})),
    )
    .await?;
    // A matching pod controlled by someone else is left alone.
    let taken: Pod = serde_json::from_value(json!({
        "metadata": {"name": "taken", "labels": {"app": "web"}, "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "other", "uid": "0000-other", "controller": true
        }]},
        "spec": {"containers": [{"name": "main", "image": "nginx:1.25"}]}
    }))?;
    pods.create(&PostParams::default(), &taken).await?;

    let uid = create_web(&cluster.client, 2, 0).await?;
    wait_for_status(&cluster.client, "web", 2, 2).await?;
    let owned = owned_pods(&cluster.client, &uid).await?;
    assert_eq!(owned.len(), 2);
    assert!(pods.get("finished").await?.owner_references().is_empty());
    assert_eq!(
        pods.get("taken").await?.owner_references()[0].uid,
        "0000-other"
    );
    let labels: BTreeMap<_, _> = owned[0].labels().clone();
    assert_eq!(labels.get("app").map(String::as_str), Some("web"));
    cluster.stop().await;
    Ok(())
}

/// Upstream's replica set controller reports each pod it creates and deletes as an Event on
/// the ReplicaSet ("Created pod: NAME", "Deleted pod: NAME"), which `kubectl describe rs`
/// shows.
#[tokio::test]
async fn replica_set_records_an_event_for_each_pod_it_creates_and_deletes() -> anyhow::Result<()> {
    let cluster = TestCluster::start(None).await?;
    let uid = create_web(&cluster.client, 2, 0).await?;
    let pods = wait_for_pod_count(&cluster.client, &uid, 2).await?;
    let events: Api<Event> = Api::default_namespaced(cluster.client.clone());
    let messages = |reason: &'static str| {
        let events = events.clone();
        let uid = uid.clone();
        async move {
            let list = events.list(&ListParams::default()).await?;
            Ok::<_, anyhow::Error>(
                list.items
                    .into_iter()
                    .filter(|e| e.involved_object.uid.as_deref() == Some(uid.as_str()))
                    .filter(|e| e.involved_object.kind.as_deref() == Some("ReplicaSet"))
                    .filter(|e| e.reason.as_deref() == Some(reason))
                    .filter_map(|e| e.message)
                    .collect::<Vec<_>>(),
            )
        }
    };
    let created = wait_for("two SuccessfulCreate events", TIMEOUT, || async {
        let m = messages("SuccessfulCreate").await?;
        Ok((m.len() == 2).then_some(m))
    })
    .await?;
    for pod in &pods {
        assert!(
            created.contains(&format!("Created pod: {}", pod.name_any())),
            "{created:?} names {}",
            pod.name_any()
        );
    }

    scale(&cluster.client, "web", 1).await?;
    let deleted = wait_for("a SuccessfulDelete event", TIMEOUT, || async {
        let m = messages("SuccessfulDelete").await?;
        Ok((!m.is_empty()).then_some(m))
    })
    .await?;
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert!(deleted[0].starts_with("Deleted pod: web-"), "{deleted:?}");
    cluster.stop().await;
    Ok(())
}
