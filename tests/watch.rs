//! Watch semantics through kube-runtime: reflectors converge, 410 Gone after compaction and
//! the watcher's relist, selector transitions, and bookmarks.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kybernetes::Cluster;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::common;
use common::until;

fn configmap(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"v": value}}, "data": {"v": value}}),
    )
    .expect("configmap")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_converges_to_the_store_after_1000_random_concurrent_writes() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    let (reader, writer) = reflector::store();
    let stream =
        reflector(writer, watcher(api.clone(), watcher::Config::default())).applied_objects();
    let reflector_task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });

    let mut workers = Vec::new();
    for w in 0..4u64 {
        let api = api.clone();
        workers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w);
            for i in 0..250 {
                let name = format!("cm-{}", rng.random_range(0..40));
                let value = format!("{w}-{i}");
                match rng.random_range(0..3) {
                    0 => {
                        let _ = api
                            .create(&PostParams::default(), &configmap(&name, &value))
                            .await;
                    }
                    1 => {
                        let patch =
                            json!({"metadata": {"labels": {"v": value}}, "data": {"v": value}});
                        let _ = api
                            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                            .await;
                    }
                    _ => {
                        let _ = api.delete(&name, &DeleteParams::default()).await;
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let truth: BTreeMap<String, (String, Option<String>)> = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|cm| {
            let name = cm.metadata.name.clone().unwrap_or_default();
            (
                name,
                (
                    cm.metadata.resource_version.clone().unwrap_or_default(),
                    cm.data.and_then(|d| d.get("v").cloned()),
                ),
            )
        })
        .collect();
    until(
        "the reflector to match the store",
        Duration::from_secs(30),
        || {
            let reader = reader.clone();
            let truth = truth.clone();
            async move {
                let seen: BTreeMap<String, (String, Option<String>)> = reader
                    .state()
                    .iter()
                    .map(|cm| {
                        (
                            cm.metadata.name.clone().unwrap_or_default(),
                            (
                                cm.metadata.resource_version.clone().unwrap_or_default(),
                                cm.data.as_ref().and_then(|d| d.get("v").cloned()),
                            ),
                        )
                    })
                    .collect();
                seen == truth
            }
        },
    )
    .await;
    reflector_task.abort();
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn watch_from_a_compacted_revision_is_gone_and_the_watcher_relists() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    let first = api
        .create(&PostParams::default(), &configmap("a", "1"))
        .await
        .expect("create");
    let old_rv = first.metadata.resource_version.clone().expect("rv");
    for i in 0..5 {
        api.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": i.to_string()}})),
        )
        .await
        .expect("patch");
    }
    let current = api
        .get("a")
        .await
        .expect("get")
        .metadata
        .resource_version
        .expect("rv");
    c.api_server()
        .compact(current.parse().expect("decimal"))
        .await
        .expect("compact");

    let stream = api
        .watch(&WatchParams::default(), &old_rv)
        .await
        .expect("watch starts");
    let events: Vec<_> = stream.take(1).try_collect().await.expect("events");
    match &events[0] {
        WatchEvent::Error(e) => assert_eq!(e.code, 410, "watch from a compacted revision is Gone"),
        other => panic!("expected a 410 error event, got {other:?}"),
    }

    // kube-runtime's watcher treats the 410 as "relist" and carries on.
    let (reader, writer) = reflector::store();
    let stream =
        reflector(writer, watcher(api.clone(), watcher::Config::default())).applied_objects();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });
    api.create(&PostParams::default(), &configmap("b", "1"))
        .await
        .expect("create b");
    until(
        "the watcher to see both objects",
        Duration::from_secs(30),
        || {
            let reader = reader.clone();
            async move { reader.state().len() == 2 }
        },
    )
    .await;
    task.abort();
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_label_filtered_watch_sees_objects_enter_and_leave_the_selection() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    let rv = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    let stream = api
        .watch(&WatchParams::default().labels("v=in"), &rv)
        .await
        .expect("watch");
    api.create(&PostParams::default(), &configmap("x", "out"))
        .await
        .expect("create");
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"v": "in"}}})),
    )
    .await
    .expect("enter");
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"v": "out"}}})),
    )
    .await
    .expect("leave");
    let events: Vec<_> = stream.take(2).try_collect().await.expect("events");
    assert!(
        matches!(events[0], WatchEvent::Added(_)),
        "entering the selection is ADDED: {:?}",
        events[0]
    );
    assert!(
        matches!(events[1], WatchEvent::Deleted(_)),
        "leaving the selection is DELETED: {:?}",
        events[1]
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn bookmarks_arrive_when_allowed() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    let rv = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    let stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("watch");
    let mut stream = std::pin::pin!(stream);
    let first = tokio::time::timeout(Duration::from_secs(60), stream.next())
        .await
        .expect("an event within a minute");
    assert!(
        matches!(first, Some(Ok(WatchEvent::Bookmark(_)))),
        "got {first:?}"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn watch_without_resource_version_starts_with_synthetic_added_events() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    for n in ["p", "q"] {
        api.create(&PostParams::default(), &configmap(n, "1"))
            .await
            .expect("create");
    }
    let req =
        http::Request::get("/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1")
            .body(Vec::new())
            .expect("request");
    let lines = c
        .client()
        .request_events::<ConfigMap>(req)
        .await
        .expect("watch");
    let events: Vec<_> = lines.take(2).try_collect().await.expect("events");
    let names: Vec<String> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(cm) => cm.metadata.name.clone().unwrap_or_default(),
            other => panic!("expected ADDED, got {other:?}"),
        })
        .collect();
    assert_eq!(names, ["p", "q"]);
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn metadata_only_requests_get_partial_object_metadata() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    api.create(&PostParams::default(), &configmap("meta", "1"))
        .await
        .expect("create");
    let one = api.get_metadata("meta").await.expect("get metadata");
    assert_eq!(one.metadata.name.as_deref(), Some("meta"));
    assert_eq!(
        one.types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata")
    );
    let list = api
        .list_metadata(&ListParams::default())
        .await
        .expect("list metadata");
    assert_eq!(list.items.len(), 1);
    let req = http::Request::get("/api/v1/namespaces/default/configmaps")
        .header(
            "Accept",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        )
        .body(Vec::new())
        .expect("request");
    let raw: serde_json::Value = c.client().request(req).await.expect("raw list");
    assert_eq!(raw["kind"], "PartialObjectMetadataList");
    assert!(
        raw["items"][0].get("data").is_none(),
        "no data, only metadata"
    );
    let rv = list.metadata.resource_version.clone().expect("rv");
    let stream = api
        .watch_metadata(&WatchParams::default(), &rv)
        .await
        .expect("watch metadata");
    api.create(&PostParams::default(), &configmap("meta2", "1"))
        .await
        .expect("create");
    let events: Vec<_> = stream.take(1).try_collect().await.expect("events");
    match &events[0] {
        WatchEvent::Added(m) => assert_eq!(m.metadata.name.as_deref(), Some("meta2")),
        other => panic!("expected ADDED, got {other:?}"),
    }
    c.shutdown().await.expect("shutdown");
}
