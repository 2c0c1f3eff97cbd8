//! Liveness, readiness and startup probes.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use kybernetes_runtime::fake::{ContainerScript, ProbeScript, Signal};
use serde_json::json;

fn probed_pod(name: &str, probe_field: &str) -> serde_json::Value {
    let mut p = pod(name, "node-1", &[("app", "nginx:1.27")]);
    p["spec"]["containers"][0][probe_field] = json!({
        "exec": { "command": ["cat", "/tmp/healthy"] },
        "periodSeconds": 1,
        "failureThreshold": 3
    });
    p
}

#[tokio::test(start_paused = true)]
async fn failing_liveness_probe_restarts_the_container() {
    let mut h = harness().await;
    h.fake.script_container(
        "app",
        ContainerScript::new().liveness(ProbeScript::fail_after(Duration::from_secs(5))),
    );
    h.start_agent(h.config("node-1"));
    h.create_pod(probed_pod("live", "livenessProbe")).await;
    let running = h.wait_pod("live", 30, is_ready("True")).await;
    let first_id = container_status(&running, "app")
        .unwrap()
        .container_id
        .clone()
        .unwrap();
    let p = h
        .wait_pod("live", 60, |p: Option<&Pod>| {
            p.is_some_and(|p| restart_count(p, "app") >= 1)
        })
        .await;
    let cs = container_status(&p, "app").unwrap();
    assert_ne!(cs.container_id.as_deref(), Some(first_id.as_str()));
    let last = cs
        .last_state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .expect("lastState.terminated");
    assert_eq!(last.exit_code, 143);
    let id = first_id.trim_start_matches("fake://");
    assert_eq!(h.fake.signals(id), vec![Signal::Term]);
    let unhealthy = h.wait_event("live", "Unhealthy", 10).await;
    assert!(
        unhealthy
            .message
            .unwrap()
            .starts_with("Liveness probe failed")
    );
    let killing = h.wait_event("live", "Killing", 10).await;
    assert_eq!(
        killing.message.as_deref(),
        Some("Container app failed liveness probe, will be restarted")
    );
}

#[tokio::test(start_paused = true)]
async fn failing_readiness_probe_flips_ready_false_without_a_restart() {
    let mut h = harness().await;
    h.fake.script_container(
        "app",
        ContainerScript::new().readiness(ProbeScript::fail_after(Duration::from_secs(20))),
    );
    h.start_agent(h.config("node-1"));
    h.create_pod(probed_pod("ready", "readinessProbe")).await;
    let ready = h.wait_pod("ready", 30, is_ready("True")).await;
    let id = container_status(&ready, "app")
        .unwrap()
        .container_id
        .clone();
    let p = h.wait_pod("ready", 60, is_ready("False")).await;
    assert_eq!(phase(&p), "Running");
    assert_eq!(condition(&p, "ContainersReady").as_deref(), Some("False"));
    let cs = container_status(&p, "app").unwrap();
    assert!(!cs.ready);
    assert!(cs.state.as_ref().unwrap().running.is_some());
    assert_eq!(cs.container_id, id);
    assert_eq!(cs.restart_count, 0);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(h.fake.created_containers().len(), 1, "no restart");
}

#[tokio::test(start_paused = true)]
async fn readiness_waits_for_the_first_passing_probe_after_the_initial_delay() {
    let mut h = harness().await;
    h.start_agent(h.config("node-1"));
    let mut p = probed_pod("slow", "readinessProbe");
    p["spec"]["containers"][0]["readinessProbe"]["initialDelaySeconds"] = json!(15);
    h.create_pod(p).await;
    let running = h.wait_pod("slow", 30, is_phase("Running")).await;
    assert_eq!(condition(&running, "Ready").as_deref(), Some("False"));
    let t0 = tokio::time::Instant::now();
    h.wait_pod("slow", 60, is_ready("True")).await;
    assert!(
        t0.elapsed() >= Duration::from_secs(10),
        "ready only after the initial delay"
    );
}

#[tokio::test(start_paused = true)]
async fn startup_probe_holds_liveness_and_failing_it_restarts_the_container() {
    let mut h = harness().await;
    h.fake.script_container(
        "app",
        ContainerScript::new()
            .startup(ProbeScript::fail())
            .liveness(ProbeScript::fail()),
    );
    h.start_agent(h.config("node-1"));
    let mut p = probed_pod("starting", "startupProbe");
    p["spec"]["containers"][0]["livenessProbe"] =
        json!({ "exec": { "command": ["true"] }, "periodSeconds": 1 });
    h.create_pod(p).await;
    let p = h
        .wait_pod("starting", 60, |p: Option<&Pod>| {
            p.is_some_and(|p| restart_count(p, "app") >= 1)
        })
        .await;
    assert_eq!(container_status(&p, "app").unwrap().started, Some(false));
    let killing = h.wait_event("starting", "Killing", 10).await;
    assert_eq!(
        killing.message.as_deref(),
        Some("Container app failed startup probe, will be restarted")
    );
    // The liveness probe never ran: it waits for the startup probe.
    let first = h.fake.pod_containers("default", "starting")[0].id.clone();
    assert_eq!(
        h.fake
            .probe_count(&first, kybernetes_runtime::ProbeKind::Liveness),
        0
    );
}
