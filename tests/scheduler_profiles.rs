//! Scheduler profiles through the whole cluster: `Cluster::builder().scheduler_config(..)`
//! serves each profile's `schedulerName`, and a pod naming no profile stays Pending untouched.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, PostParams};
use kybernetes::Cluster;
use kybernetes::sched::{ConfigError, KubeSchedulerConfiguration};
use serde_json::json;

use crate::common::until;

/// Upstream's multiple-profiles example: the default profile and `no-scoring-scheduler`.
const CONFIG: &str = include_str!("../sched/testdata/multiple-profiles.yaml");

fn pod(name: &str, scheduler: Option<&str>) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "schedulerName": scheduler,
            "containers": [{"name": "c", "image": "busybox"}],
        },
    }))
    .expect("pod")
}

async fn bound(pods: &Api<Pod>, name: &str) -> Option<String> {
    pods.get(name).await.ok()?.spec?.node_name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_profile_schedules_its_pods_and_unknown_names_stay_pending() {
    // The shared file holds only upstream's profiles; a top-level setting rides along, as
    // the cluster builder takes the configuration's backoffs as well as its profiles.
    let config = KubeSchedulerConfiguration {
        pod_max_backoff_seconds: Some(5),
        ..KubeSchedulerConfiguration::from_yaml(CONFIG).expect("config")
    };
    let c = Cluster::builder()
        .nodes(2)
        .scheduler_config(config)
        .start()
        .await
        .expect("start");
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let create = |p: Pod| {
        let pods = pods.clone();
        async move {
            pods.create(&PostParams::default(), &p)
                .await
                .expect("create")
        }
    };
    create(pod("stranger", Some("nobody"))).await;
    create(pod("unscored", Some("no-scoring-scheduler"))).await;
    create(pod("plain", None)).await;
    until(
        "both profiles to bind their pods",
        Duration::from_secs(30),
        || async {
            bound(&pods, "unscored").await.is_some() && bound(&pods, "plain").await.is_some()
        },
    )
    .await;
    let events: Api<Event> = Api::default_namespaced(c.client());
    until(
        "the Scheduled event of the second profile",
        Duration::from_secs(30),
        || async {
            events
                .list(&ListParams::default())
                .await
                .expect("events")
                .items
                .iter()
                .any(|e| {
                    e.involved_object.name.as_deref() == Some("unscored")
                        && e.reason.as_deref() == Some("Scheduled")
                        && e.reporting_component.as_deref() == Some("no-scoring-scheduler")
                })
        },
    )
    .await;
    // The stranger was created first; the loop handles pods in order, so it was seen and
    // passed over before the later pods were bound.
    let stranger = pods.get("stranger").await.expect("get");
    assert_eq!(stranger.spec.and_then(|s| s.node_name), None);
    let status = stranger.status.unwrap_or_default();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert!(
        !status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|cond| cond.type_ == "PodScheduled"),
        "no scheduler touched the stranger"
    );
    let all = events.list(&ListParams::default()).await.expect("events");
    let about_stranger: Vec<&Event> = all
        .items
        .iter()
        .filter(|e| e.involved_object.name.as_deref() == Some("stranger"))
        .collect();
    assert!(about_stranger.is_empty(), "{about_stranger:?}");
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn an_invalid_scheduler_config_stops_the_cluster_from_starting() {
    let config = KubeSchedulerConfiguration::from_yaml(
        "apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
  - schedulerName: a
  - schedulerName: a
    plugins:
      score:
        enabled:
        - name: NoSuchPlugin
",
    )
    .expect("decodes");
    let err = match Cluster::builder().scheduler_config(config).start().await {
        Ok(_) => panic!("an invalid configuration must not start"),
        Err(e) => e,
    };
    let kybernetes::Error::SchedulerConfig(ConfigError::Invalid(errors)) = &err else {
        panic!("unexpected error {err}");
    };
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|e| e
                == "profiles[1].schedulerName: Duplicate value: \"profiles[0].schedulerName\""),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|e| e.contains("\"NoSuchPlugin\": unknown plugin")),
        "{text:?}"
    );
}
