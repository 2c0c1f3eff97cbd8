//! Graceful deletion and forced removal.

mod common;

use std::time::Duration;

use common::*;
use kube::api::DeleteParams;
use kybernetes_runtime::fake::{ContainerScript, Signal};
use serde_json::json;

#[tokio::test(start_paused = true)]
async fn graceful_deletion_runs_pre_stop_sends_term_then_removes_the_pod() {
    let mut h = harness().await;
    h.fake
        .script_container("stubborn", ContainerScript::new().ignore_term());
    h.start_agent(h.config("node-1"));
    let mut p = pod(
        "bye",
        "node-1",
        &[("web", "nginx:1.27"), ("stubborn", "busybox:1.36")],
    );
    p["spec"]["terminationGracePeriodSeconds"] = json!(20);
    p["spec"]["containers"][0]["lifecycle"] =
        json!({ "preStop": { "exec": { "command": ["nginx", "-s", "quit"] } } });
    h.create_pod(p).await;
    let running = h.wait_pod("bye", 30, is_ready("True")).await;
    let id = |name: &str| {
        container_status(&running, name)
            .unwrap()
            .container_id
            .clone()
            .unwrap()
            .trim_start_matches("fake://")
            .to_string()
    };
    let (web, stubborn) = (id("web"), id("stubborn"));

    let t0 = tokio::time::Instant::now();
    h.pods()
        .delete("bye", &DeleteParams::default())
        .await
        .unwrap();
    h.wait_pod_gone("bye", 120).await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(20),
        "waited out the grace period for the stubborn container: {took:?}"
    );
    assert!(took < Duration::from_secs(40), "{took:?}");
    assert_eq!(h.fake.signals(&web), vec![Signal::Term]);
    assert_eq!(h.fake.signals(&stubborn), vec![Signal::Term, Signal::Kill]);
    let pre_stop: Vec<_> = h
        .fake
        .exec_calls()
        .into_iter()
        .filter(|c| c.container_id == web)
        .map(|c| c.cmd)
        .collect();
    assert_eq!(
        pre_stop,
        vec![vec!["nginx".to_string(), "-s".into(), "quit".into()]]
    );
    assert!(h.fake.sandboxes().is_empty(), "sandbox removed");
    assert!(h.fake.containers().is_empty(), "containers removed");
    assert_eq!(h.network.pod_count(), 0, "IP released");
    let killing = h.wait_event("bye", "Killing", 10).await;
    assert!(killing.message.unwrap().starts_with("Stopping container"));
}

#[tokio::test(start_paused = true)]
async fn a_pod_deleted_outright_is_cleaned_up_locally() {
    let mut h = harness().await;
    h.start_agent(h.config("node-1"));
    h.create_pod(pod("gone", "node-1", &[("web", "nginx:1.27")]))
        .await;
    h.wait_pod("gone", 30, is_phase("Running")).await;
    h.pods()
        .delete(
            "gone",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !h.fake.sandboxes().is_empty() || h.network.pod_count() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "runtime objects removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(h.fake.containers().is_empty());
}
