//! The Deployment controller (with the ReplicaSet controller and a fake kubelet) against the
//! in-process API server.

mod common;
mod fake_kubelet;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TIMEOUT, wait_for};
use fake_kubelet::TestCluster;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH: &str = "pod-template-hash";

fn deployment(name: &str, replicas: i32, image: &str, extra_spec: Value) -> Deployment {
    let mut spec = json!({
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "main", "image": image}]}
        }
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("a valid deployment")
}

async fn set_image(client: &Client, name: &str, image: &str) -> anyhow::Result<()> {
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// The deployment's ReplicaSets, lowest revision first.
async fn replica_sets(client: &Client, d: &Deployment) -> anyhow::Result<Vec<ReplicaSet>> {
    let api: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let uid = d.uid().unwrap_or_default();
    let mut rss: Vec<ReplicaSet> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|rs| rs.owner_references().iter().any(|r| r.uid == uid))
        .collect();
    let revision = |rs: &ReplicaSet| {
        revision_of(rs)
            .and_then(|r| r.parse::<i64>().ok())
            .unwrap_or(0)
    };
    rss.sort_by_key(revision);
    Ok(rss)
}

fn revision_of<K: ResourceExt>(obj: &K) -> Option<String> {
    obj.annotations().get(REVISION).cloned()
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// A ReplicaSet's (name, revision, spec.replicas).
fn name_revision_replicas(rs: &ReplicaSet) -> (String, Option<String>, i32) {
    (rs.name_any(), revision_of(rs), spec_replicas(rs))
}

/// Creates `d` and waits for its first rollout to complete.
async fn roll_out(
    client: &Client,
    d: &Deployment,
) -> anyhow::Result<(Api<Deployment>, Deployment)> {
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), d).await?;
    let d = wait_for_rollout(client, &d.name_any()).await?;
    Ok((api, d))
}

/// Merges `spec` into the spec of the deployment `web`.
async fn patch_spec(api: &Api<Deployment>, spec: Value) -> anyhow::Result<()> {
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({ "spec": spec })),
    )
    .await?;
    Ok(())
}

/// Waits until the deployment `web` has as many ReplicaSets as `want`, with these
/// `spec.replicas`, lowest revision first.
async fn wait_for_rs_replicas(
    client: &Client,
    api: &Api<Deployment>,
    what: &str,
    want: &[i32],
) -> anyhow::Result<()> {
    wait_for(what, TIMEOUT, || async {
        let d = api.get("web").await?;
        let rss = replica_sets(client, &d).await?;
        Ok((rss.iter().map(spec_replicas).collect::<Vec<_>>() == want).then_some(()))
    })
    .await
}

/// Waits until the rollout is complete: every replica updated and available, no old pods, and
/// the status about the latest generation.
async fn wait_for_rollout(client: &Client, name: &str) -> anyhow::Result<Deployment> {
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    wait_for(&format!("rollout of {name}"), TIMEOUT, || async {
        let d = api.get(name).await?;
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let s = d.status.clone().unwrap_or_default();
        let done = s.observed_generation == d.metadata.generation
            && s.updated_replicas.unwrap_or(0) == want
            && s.replicas.unwrap_or(0) == want
            && s.available_replicas.unwrap_or(0) == want;
        Ok(done.then_some(d))
    })
    .await
}

fn condition(d: &Deployment, type_: &str) -> Option<(String, String)> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

#[tokio::test]
async fn deployment_creates_a_replica_set_with_revision_1_and_the_pod_template_hash()
-> anyhow::Result<()> {
    let cluster = TestCluster::start(None).await?;
    let (api, d) = roll_out(
        &cluster.client,
        &deployment("web", 3, "nginx:1.25", json!({})),
    )
    .await?;

    let rss = replica_sets(&cluster.client, &d).await?;
    assert_eq!(rss.len(), 1);
    let rs = &rss[0];
    let hash = rs.labels().get(HASH).cloned().unwrap_or_default();
    assert!(!hash.is_empty());
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    let spec = rs.spec.clone().unwrap_or_default();
    assert_eq!(
        spec.selector
            .match_labels
            .as_ref()
            .and_then(|m| m.get(HASH)),
        Some(&hash)
    );
    assert_eq!(
        spec.template
            .and_then(|t| t.metadata)
            .and_then(|m| m.labels)
            .and_then(|l| l.get(HASH).cloned()),
        Some(hash.clone())
    );
    assert_eq!(revision_of(rs).as_deref(), Some("1"));
    assert_eq!(
        rs.annotations()
            .get("deployment.kubernetes.io/desired-replicas")
            .map(String::as_str),
        Some("3")
    );
    assert_eq!(
        rs.annotations()
            .get("deployment.kubernetes.io/max-replicas")
            .map(String::as_str),
        Some("4")
    );
    assert_eq!(revision_of(&d).as_deref(), Some("1"));

    let pods: Api<Pod> = Api::default_namespaced(cluster.client.clone());
    let pods = pods
        .list(&ListParams::default().labels(&format!("{HASH}={hash}")))
        .await?
        .items;
    assert_eq!(pods.len(), 3);

    let d = wait_for("complete conditions", TIMEOUT, || async {
        let d = api.get("web").await?;
        Ok(
            (condition(&d, "Progressing").map(|c| c.1) == Some("NewReplicaSetAvailable".into()))
                .then_some(d),
        )
    })
    .await?;
    assert_eq!(
        condition(&d, "Available"),
        Some(("True".into(), "MinimumReplicasAvailable".into()))
    );
    assert_eq!(d.status.as_ref().and_then(|s| s.ready_replicas), Some(3));
    cluster.stop().await;
    Ok(())
}

#[tokio::test]
async fn changing_the_image_rolls_out_a_second_replica_set() -> anyhow::Result<()> {
    let cluster = TestCluster::start(None).await?;
    roll_out(
        &cluster.client,
        &deployment("web", 3, "nginx:1.25", json!({})),
    )
    .await?;

    set_image(&cluster.client, "web", "nginx:1.26").await?;
    let d = wait_for_rollout(&cluster.client, "web").await?;
    let rss = replica_sets(&cluster.client, &d).await?;
    assert_eq!(rss.len(), 2);
    assert_eq!(
        (revision_of(&rss[0]).as_deref(), spec_replicas(&rss[0])),
        (Some("1"), 0)
    );
    assert_eq!(
        (revision_of(&rss[1]).as_deref(), spec_replicas(&rss[1])),
        (Some("2"), 3)
    );
    assert_eq!(revision_of(&d).as_deref(), Some("2"));
    cluster.stop().await;
    Ok(())
}

/// What a pod watcher saw during a rolling update.
#[derive(Debug, Default)]
struct Observed {
    min_available: usize,
    max_total: usize,
}

/// Watches every pod of `app` and records, after each event, the fewest ready pods and the most
/// pods (not being deleted) seen at once.
fn observe_pods(
    client: Client,
    app: &str,
    stop: CancellationToken,
) -> (Arc<Mutex<Observed>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Observed {
        min_available: usize::MAX,
        max_total: 0,
    }));
    let out = seen.clone();
    let api: Api<Pod> = Api::default_namespaced(client);
    let config = watcher::Config::default().labels(&format!("app={app}"));
    let handle = tokio::spawn(async move {
        let mut pods: HashMap<String, Pod> = HashMap::new();
        let mut initialised = false;
        let mut events = watcher(api, config).boxed();
        loop {
            let event = tokio::select! {
                _ = stop.cancelled() => return,
                e = events.next() => match e { Some(Ok(e)) => e, _ => return },
            };
            match event {
                watcher::Event::Init => pods.clear(),
                watcher::Event::InitApply(p) | watcher::Event::Apply(p) => {
                    pods.insert(p.name_any(), p);
                }
                watcher::Event::Delete(p) => {
                    pods.remove(&p.name_any());
                }
                watcher::Event::InitDone => initialised = true,
            }
            if !initialised {
                continue;
            }
            let live: Vec<&Pod> = pods
                .values()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let ready = live
                .iter()
                .filter(|p| {
                    p.status
                        .iter()
                        .flat_map(|s| s.conditions.iter().flatten())
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
                .count();
            let mut o = out.lock().unwrap();
            o.min_available = o.min_available.min(ready);
            o.max_total = o.max_total.max(live.len());
        }
    });
    (seen, handle)
}

#[tokio::test]
async fn rolling_update_never_exceeds_surge_or_unavailability() -> anyhow::Result<()> {
    let cluster = TestCluster::start(None).await?;
    let (api, d) = roll_out(
        &cluster.client,
        &deployment("web", 20, "nginx:1.25", json!({})),
    )
    .await?;
    let first = replica_sets(&cluster.client, &d).await?.remove(0);

    let stop = CancellationToken::new();
    let (seen, watcher) = observe_pods(cluster.client.clone(), "web", stop.clone());
    // Let the watcher see the steady state first.
    wait_for("the watcher to start", TIMEOUT, || async {
        Ok((seen.lock().unwrap().max_total == 20).then_some(()))
    })
    .await?;

    set_image(&cluster.client, "web", "nginx:1.26").await?;
    let d = wait_for_rollout(&cluster.client, "web").await?;
    let rss = replica_sets(&cluster.client, &d).await?;
    assert_eq!(rss.len(), 2);
    assert_eq!(
        name_revision_replicas(&rss[0]),
        (first.name_any(), Some("1".into()), 0)
    );
    assert_eq!(
        (revision_of(&rss[1]), spec_replicas(&rss[1])),
        (Some("2".into()), 20)
    );
    let second = rss[1].name_any();

    // Roll back as `kubectl rollout undo` does: write revision 1's template back.
    let mut template: PodTemplateSpec = first
        .spec
        .clone()
        .and_then(|s| s.template)
        .unwrap_or_default();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH);
    }
    patch_spec(&api, json!({"template": template})).await?;
    let d = wait_for("revision 3", TIMEOUT, || async {
        let d = wait_for_rollout(&cluster.client, "web").await?;
        Ok((revision_of(&d).as_deref() == Some("3")).then_some(d))
    })
    .await?;
    let rss = replica_sets(&cluster.client, &d).await?;
    assert_eq!(rss.len(), 2, "the rollback reuses the first replica set");
    // Sorted by revision: the second (revision 2), then the first again (revision 3).
    assert_eq!(
        name_revision_replicas(&rss[0]),
        (second, Some("2".into()), 0)
    );
    assert_eq!(
        name_revision_replicas(&rss[1]),
        (first.name_any(), Some("3".into()), 20)
    );
    assert_eq!(
        rss[1]
            .annotations()
            .get("deployment.kubernetes.io/revision-history")
            .map(String::as_str),
        Some("1")
    );

    stop.cancel();
    watcher.await?;
    let (min_available, max_total) = {
        let seen = seen.lock().unwrap();
        (seen.min_available, seen.max_total)
    };
    assert!(
        min_available >= 15,
        "saw only {min_available} available pods (maxUnavailable 25% of 20)"
    );
    assert!(max_total <= 25, "saw {max_total} pods (maxSurge 25% of 20)");
    cluster.stop().await;
    Ok(())
}

#[tokio::test]
async fn recreate_never_runs_old_and_new_together() -> anyhow::Result<()> {
    // Pods are bound to a node, so they terminate gracefully and linger until the kubelet
    // finishes them.
    let cluster = TestCluster::start(Some("node-1")).await?;
    roll_out(
        &cluster.client,
        &deployment(
            "web",
            3,
            "nginx:1.25",
            json!({"strategy": {"type": "Recreate"}}),
        ),
    )
    .await?;

    let overlap = Arc::new(Mutex::new(None::<String>));
    let stop = CancellationToken::new();
    let pods: Api<Pod> = Api::default_namespaced(cluster.client.clone());
    let found = overlap.clone();
    let stopped = stop.clone();
    let watch = tokio::spawn(async move {
        let mut live: HashMap<String, String> = HashMap::new();
        let mut events = watcher(pods, watcher::Config::default().labels("app=web")).boxed();
        loop {
            let event = tokio::select! {
                _ = stopped.cancelled() => return,
                e = events.next() => match e { Some(Ok(e)) => e, _ => return },
            };
            match event {
                watcher::Event::InitApply(p) | watcher::Event::Apply(p) => {
                    let image = p
                        .spec
                        .iter()
                        .flat_map(|s| &s.containers)
                        .filter_map(|c| c.image.clone())
                        .next()
                        .unwrap_or_default();
                    live.insert(p.name_any(), image);
                }
                watcher::Event::Delete(p) => {
                    live.remove(&p.name_any());
                }
                _ => {}
            }
            let old = live.values().any(|i| i == "nginx:1.25");
            let new = live.values().any(|i| i == "nginx:1.26");
            if old && new {
                found
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| format!("{live:?}"));
            }
        }
    });

    set_image(&cluster.client, "web", "nginx:1.26").await?;
    let d = wait_for_rollout(&cluster.client, "web").await?;
    stop.cancel();
    watch.await?;
    assert_eq!(
        *overlap.lock().unwrap(),
        None,
        "old and new pods existed together"
    );
    let rss = replica_sets(&cluster.client, &d).await?;
    assert_eq!((spec_replicas(&rss[0]), spec_replicas(&rss[1])), (0, 3));
    assert_eq!(revision_of(&d).as_deref(), Some("2"));
    cluster.stop().await;
    Ok(())
}

#[tokio::test]
async fn paused_deployment_does_not_roll_out_but_still_scales() -> anyhow::Result<()> {
    let cluster = TestCluster::start(None).await?;
    let (api, _) = roll_out(
        &cluster.client,
        &deployment("web", 2, "nginx:1.25", json!({})),
    )
    .await?;

    patch_spec(&api, json!({"paused": true})).await?;
    set_image(&cluster.client, "web", "nginx:1.26").await?;
    patch_spec(&api, json!({"replicas": 4})).await?;
    let d = wait_for("the paused deployment to scale", TIMEOUT, || async {
        let d = api.get("web").await?;
        let rss = replica_sets(&cluster.client, &d).await?;
        let scaled = rss.len() == 1 && spec_replicas(&rss[0]) == 4;
        let observed =
            d.status.as_ref().and_then(|s| s.observed_generation) == d.metadata.generation;
        Ok((scaled
            && observed
            && condition(&d, "Progressing").map(|c| c.1) == Some("DeploymentPaused".into()))
        .then_some(d))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        replica_sets(&cluster.client, &d).await?.len(),
        1,
        "no rollout while paused"
    );

    patch_spec(&api, json!({"paused": false})).await?;
    let d = wait_for_rollout(&cluster.client, "web").await?;
    let rss = replica_sets(&cluster.client, &d).await?;
    assert_eq!(rss.len(), 2);
    assert_eq!((spec_replicas(&rss[0]), spec_replicas(&rss[1])), (0, 4));
    cluster.stop().await;
    Ok(())
}

#[tokio::test]
async fn progress_deadline_exceeded_when_new_pods_never_become_ready() -> anyhow::Result<()> {
    let cluster = TestCluster::start(None).await?;
    let (api, _) = roll_out(
        &cluster.client,
        &deployment(
            "web",
            2,
            "nginx:1.25",
            json!({"progressDeadlineSeconds": 2}),
        ),
    )
    .await?;

    cluster.kubelet.set_not_ready_image("nginx:broken");
    set_image(&cluster.client, "web", "nginx:broken").await?;
    let d = wait_for(
        "ProgressDeadlineExceeded",
        Duration::from_secs(30),
        || async {
            let d = api.get("web").await?;
            let c = condition(&d, "Progressing");
            Ok((c == Some(("False".into(), "ProgressDeadlineExceeded".into()))).then_some(d))
        },
    )
    .await?;
    // The old pods keep serving: maxUnavailable 25% of 2 rounds down to 0.
    assert_eq!(
        d.status.as_ref().and_then(|s| s.available_replicas),
        Some(2)
    );
    assert_eq!(
        condition(&d, "Available").map(|c| c.0).as_deref(),
        Some("True")
    );
    cluster.stop().await;
    Ok(())
}

#[tokio::test]
async fn scaling_mid_rollout_is_proportional() -> anyhow::Result<()> {
    let cluster = TestCluster::start(None).await?;
    let strategy = json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 0}}});
    let (api, _) = roll_out(
        &cluster.client,
        &deployment("web", 10, "nginx:1.25", strategy),
    )
    .await?;

    // The rollout stalls: the new pods never become ready, so the old ones stay.
    cluster.kubelet.set_not_ready_image("nginx:broken");
    set_image(&cluster.client, "web", "nginx:broken").await?;
    wait_for_rs_replicas(&cluster.client, &api, "the stalled rollout", &[10, 3]).await?;

    // 10 -> 20: 13 replicas become 23, shared in proportion (10 -> 18, 3 -> 5).
    patch_spec(&api, json!({"replicas": 20})).await?;
    wait_for_rs_replicas(&cluster.client, &api, "proportional scaling", &[18, 5]).await?;
    cluster.stop().await;
    Ok(())
}

#[tokio::test]
async fn revision_history_limit_trims_old_replica_sets() -> anyhow::Result<()> {
    let cluster = TestCluster::start(None).await?;
    let (api, _) = roll_out(
        &cluster.client,
        &deployment("web", 1, "nginx:1", json!({"revisionHistoryLimit": 1})),
    )
    .await?;
    for image in ["nginx:2", "nginx:3", "nginx:4"] {
        set_image(&cluster.client, "web", image).await?;
        wait_for_rollout(&cluster.client, "web").await?;
    }
    let d = wait_for("old replica sets to be trimmed", TIMEOUT, || async {
        let d = api.get("web").await?;
        Ok((replica_sets(&cluster.client, &d).await?.len() == 2).then_some(d))
    })
    .await?;
    let revisions: Vec<_> = replica_sets(&cluster.client, &d)
        .await?
        .iter()
        .filter_map(revision_of)
        .collect();
    assert_eq!(revisions, ["3", "4"]);
    cluster.stop().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn default_progress_deadline_passes_under_a_paused_clock() -> anyhow::Result<()> {
    // Ten minutes of cluster time pass in an instant: the controller reads wall time from the
    // cluster clock and waits with tokio timers.
    let cluster = TestCluster::start(None).await?;
    let (api, _) = roll_out(
        &cluster.client,
        &deployment("web", 1, "nginx:1.25", json!({})),
    )
    .await?;

    cluster.kubelet.set_not_ready_image("nginx:broken");
    set_image(&cluster.client, "web", "nginx:broken").await?;
    let started = cluster.clock.now();
    loop {
        let d = api.get("web").await?;
        if condition(&d, "Progressing").map(|c| c.1) == Some("ProgressDeadlineExceeded".into()) {
            break;
        }
        anyhow::ensure!(
            (cluster.clock.now() - started).num_seconds() < 3600,
            "no ProgressDeadlineExceeded after an hour"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    assert!((cluster.clock.now() - started).num_seconds() >= 600);
    cluster.stop().await;
    Ok(())
}
