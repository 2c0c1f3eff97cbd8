//! One scheduling loop serving several profiles: each pod is placed by the profile its
//! `spec.schedulerName` names, events report that profile, and a pod naming no profile is
//! left alone.

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::ListParams;
use kybernetes_sched::{KubeSchedulerConfiguration, SchedulerConfig};
use serde_json::json;

mod support;
use support::TestCluster;

/// `default-scheduler` and the MostAllocated `bin-packer`, as in the `scheduler_profiles`
/// example.
const CONFIG: &str = include_str!("../testdata/bin-packer.yaml");

async fn events_about(cluster: &TestCluster, pod: &str) -> anyhow::Result<Vec<Event>> {
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    Ok(events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod))
        .collect())
}

#[tokio::test]
async fn each_pod_is_placed_by_the_profile_it_names() -> anyhow::Result<()> {
    let profiles = KubeSchedulerConfiguration::from_yaml(CONFIG)?.build()?;
    let cluster = TestCluster::start_profiles(profiles, SchedulerConfig::default()).await?;
    cluster.add_node("busy", "4", json!({}), json!({})).await?;
    cluster.add_node("idle", "4", json!({}), json!({})).await?;
    cluster
        .add_pod("running", "2", json!({"nodeName": "busy"}))
        .await?;
    cluster
        .add_pod("packed", "1", json!({"schedulerName": "bin-packer"}))
        .await?;
    assert_eq!(cluster.node_of("packed").await?, "busy");
    cluster.add_pod("spread", "1", json!({})).await?;
    assert_eq!(cluster.node_of("spread").await?, "idle");
    let (kind, message) = cluster.event("packed", "Scheduled").await?;
    assert_eq!(kind, "Normal");
    assert_eq!(message, "Successfully assigned default/packed to busy");
    let scheduled = events_about(&cluster, "packed").await?;
    let reporter: Vec<_> = scheduled
        .iter()
        .map(|e| {
            (
                e.reporting_component.clone(),
                e.source.as_ref().and_then(|s| s.component.clone()),
            )
        })
        .collect();
    assert_eq!(
        reporter,
        [(
            Some("bin-packer".to_string()),
            Some("bin-packer".to_string())
        )]
    );
    let (_, message) = cluster.event("spread", "Scheduled").await?;
    assert_eq!(message, "Successfully assigned default/spread to idle");
    let spread = events_about(&cluster, "spread").await?;
    assert_eq!(
        spread[0].reporting_component.as_deref(),
        Some("default-scheduler")
    );
    cluster.stop().await
}

#[tokio::test]
async fn a_pod_naming_no_profile_gets_no_condition_and_no_event() -> anyhow::Result<()> {
    let profiles = KubeSchedulerConfiguration::from_yaml(CONFIG)?.build()?;
    let cluster = TestCluster::start_profiles(profiles, SchedulerConfig::default()).await?;
    cluster.add_node("n", "4", json!({}), json!({})).await?;
    cluster
        .add_pod("stranger", "100m", json!({"schedulerName": "nobody"}))
        .await?;
    // The loop handles pod events in order: once a later pod of each profile is bound and
    // reported, the stranger has been seen and passed over.
    cluster
        .add_pod(
            "after-packed",
            "100m",
            json!({"schedulerName": "bin-packer"}),
        )
        .await?;
    cluster.add_pod("after", "100m", json!({})).await?;
    assert_eq!(cluster.node_of("after-packed").await?, "n");
    assert_eq!(cluster.node_of("after").await?, "n");
    cluster.event("after", "Scheduled").await?;
    let pods: Api<Pod> = cluster.pods();
    let stranger = pods.get("stranger").await?;
    assert_eq!(stranger.spec.and_then(|s| s.node_name), None);
    assert_eq!(
        stranger
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default(),
        []
    );
    assert!(events_about(&cluster, "stranger").await?.is_empty());
    cluster.stop().await
}
