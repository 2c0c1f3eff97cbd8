//! The node-agent behaviour suite, run on every runtime: restart policies, back-off, probes,
//! graceful termination, env and logs. Each test body is generic over a [`Backend`]; the
//! macro at the end runs it on the fake (`fake::…`) and on real processes (`process::…`).
//!
//! Real processes cannot run under tokio's paused clock, so the whole suite uses the real
//! clock with short back-off and probe periods, and waits for positive signals with generous
//! limits. The fake-only tests in the other files check exact timings under the paused clock.

mod common;

use std::time::Duration;

use common::backend::{Act, Backend, free_port};
use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use kybernetes_node::{BackoffConfig, ContainerLogRequest, container_logs};
use kybernetes_runtime::{ExecRequest, labels};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

/// Short back-off, so restarts happen within a test's patience.
fn quick_backoff() -> BackoffConfig {
    BackoffConfig {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(1),
        reset_after: Duration::from_secs(60),
    }
}

async fn started<B: Backend>() -> Harness {
    let mut h = B::harness().await;
    let config = h.config("node-1").backoff(quick_backoff());
    h.start_agent(config);
    h
}

fn pod_with(name: &str, containers: Vec<Value>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": "default", "labels": { "app": name } },
        "spec": { "nodeName": "node-1", "containers": containers }
    })
}

fn terminated(p: &Pod, name: &str) -> Option<(i32, String)> {
    let t = container_status(p, name)?
        .state
        .as_ref()?
        .terminated
        .as_ref()?;
    Some((t.exit_code, t.reason.clone().unwrap_or_default()))
}

/// The runtime id of a container, from its status (`<runtime>://<id>`).
fn runtime_id(p: &Pod, name: &str) -> String {
    let id = container_status(p, name)
        .and_then(|c| c.container_id.clone())
        .expect("containerID");
    id.split_once("://")
        .map(|(_, id)| id.to_string())
        .unwrap_or(id)
}

async fn restart_policy_never_ends_failed_and_on_failure_ends_succeeded<B: Backend>() {
    let h = started::<B>().await;
    let fails = B::container(
        &h,
        "fails",
        Act::LogThenExit {
            line: "bye",
            after: Duration::from_millis(200),
            code: 2,
        },
    );
    let mut never = pod_with("never", vec![fails]);
    never["spec"]["restartPolicy"] = json!("Never");
    h.create_pod(never).await;
    let p = h.wait_pod("never", 60, is_phase("Failed")).await;
    assert_eq!(terminated(&p, "fails"), Some((2, "Error".into())));
    assert_eq!(restart_count(&p, "fails"), 0);

    let done = B::container(
        &h,
        "done",
        Act::LogThenExit {
            line: "done",
            after: Duration::from_millis(200),
            code: 0,
        },
    );
    let mut on_failure = pod_with("onfailure", vec![done]);
    on_failure["spec"]["restartPolicy"] = json!("OnFailure");
    h.create_pod(on_failure).await;
    let p = h.wait_pod("onfailure", 60, is_phase("Succeeded")).await;
    assert_eq!(terminated(&p, "done"), Some((0, "Completed".into())));
}

async fn a_crashing_container_restarts_with_back_off_and_keeps_its_previous_log<B: Backend>() {
    let h = started::<B>().await;
    let crash = B::container(
        &h,
        "app",
        Act::LogThenExit {
            line: "started",
            after: Duration::from_millis(100),
            code: 1,
        },
    );
    let created = h.create_pod(pod_with("crashy", vec![crash])).await;
    let p = h
        .wait_pod("crashy", 60, |p: Option<&Pod>| {
            p.is_some_and(|p| restart_count(p, "app") >= 3)
        })
        .await;
    assert_eq!(phase(&p), "Running");
    let last = container_status(&p, "app")
        .and_then(|c| c.last_state.as_ref()?.terminated.clone())
        .expect("lastState.terminated");
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    h.wait_event("crashy", "BackOff", 30).await;

    let request = ContainerLogRequest {
        namespace: "default".into(),
        pod: "crashy".into(),
        pod_uid: created.metadata.uid.clone().unwrap_or_default(),
        container: "app".into(),
        previous: true,
        ..Default::default()
    };
    let bytes: Vec<_> = container_logs(h.runtime.as_ref(), &request)
        .await
        .expect("previous log")
        .collect()
        .await;
    assert_eq!(bytes.concat(), b"started\n");
}

async fn a_failing_exec_liveness_probe_restarts_the_container<B: Backend>() {
    let h = started::<B>().await;
    let mut app = B::container(&h, "app", Act::HealthyFor(Duration::from_secs(2)));
    app["livenessProbe"] = json!({
        "exec": { "command": ["cat", "healthy"] },
        "periodSeconds": 1,
        "failureThreshold": 1
    });
    let mut pod = pod_with("live", vec![app]);
    pod["spec"]["terminationGracePeriodSeconds"] = json!(2);
    h.create_pod(pod).await;
    let p = h
        .wait_pod("live", 60, |p: Option<&Pod>| {
            p.is_some_and(|p| restart_count(p, "app") >= 1)
        })
        .await;
    assert_eq!(phase(&p), "Running");
    let unhealthy = h.wait_event("live", "Unhealthy", 10).await;
    assert!(
        unhealthy
            .message
            .unwrap_or_default()
            .starts_with("Liveness probe failed")
    );
    let killing = h.wait_event("live", "Killing", 10).await;
    assert_eq!(
        killing.message.as_deref(),
        Some("Container app failed liveness probe, will be restarted")
    );
}

async fn an_http_readiness_probe_gates_ready_after_a_tcp_startup_probe<B: Backend>() {
    let h = started::<B>().await;
    let port = free_port();
    let mut web = B::container(
        &h,
        "web",
        Act::ServeHttpAfter {
            after: Duration::from_secs(1),
            port,
        },
    );
    web["ports"] = json!([{ "containerPort": port, "name": "http" }]);
    web["readinessProbe"] = json!({
        "httpGet": { "path": "/", "port": "http" },
        "periodSeconds": 1
    });
    web["startupProbe"] = json!({
        "tcpSocket": { "port": port },
        "periodSeconds": 1,
        "failureThreshold": 30
    });
    h.create_pod(pod_with("web", vec![web])).await;
    let first = h
        .wait_pod("web", 30, |p: Option<&Pod>| {
            p.is_some_and(|p| phase(p) == "Running" && condition(p, "Ready").is_some())
        })
        .await;
    assert_eq!(
        condition(&first, "Ready").as_deref(),
        Some("False"),
        "not ready before it serves"
    );
    let p = h.wait_pod("web", 30, is_ready("True")).await;
    let cs = container_status(&p, "web").expect("status");
    assert_eq!(cs.started, Some(true), "the tcpSocket startup probe passed");
    assert_eq!(cs.restart_count, 0);
}

async fn graceful_deletion_sends_term_and_kills_what_ignores_it_at_the_end_of_the_grace_period<
    B: Backend,
>() {
    let h = started::<B>().await;
    let polite = B::container(&h, "polite", Act::TrapTerm);
    let stubborn = B::container(&h, "stubborn", Act::IgnoreTerm);
    let mut pod = pod_with("bye", vec![polite, stubborn]);
    pod["spec"]["terminationGracePeriodSeconds"] = json!(3);
    let created = h.create_pod(pod).await;
    let uid = created.metadata.uid.clone().unwrap_or_default();
    let running = h.wait_pod("bye", 30, is_ready("True")).await;
    let polite_id = runtime_id(&running, "polite");
    // The trap must be set before the TERM comes: the shell sets it first thing.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let t0 = tokio::time::Instant::now();
    h.pods()
        .delete("bye", &DeleteParams::default())
        .await
        .expect("delete");
    // The stubborn container holds the pod for the grace period: the polite one's log
    // shows its trap ran meanwhile.
    let deadline = t0 + Duration::from_secs(3);
    let log = loop {
        let options = kybernetes_runtime::LogOptions::default();
        let lines: Vec<_> = match h.runtime.logs(&polite_id, &options).await {
            Ok(s) => s.collect().await,
            Err(_) => Vec::new(),
        };
        if lines.iter().any(|l| l.line == "terminating") || tokio::time::Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        log.iter().any(|l| l.line == "terminating"),
        "polite log: {log:?}"
    );
    h.wait_pod_gone("bye", 60).await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "waited out the grace period: {took:?}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    let left = h
        .runtime
        .list_containers(
            &kybernetes_runtime::ContainerFilter::default().label(labels::POD_UID, &uid),
        )
        .await
        .expect("list");
    assert!(left.is_empty(), "containers removed: {left:?}");
}

async fn env_values_and_pod_fields_reach_the_container<B: Backend>() {
    let h = started::<B>().await;
    let mut app = B::container(&h, "app", Act::Forever);
    app["env"] = json!([
        { "name": "GREETING", "value": "hello" },
        { "name": "MESSAGE", "value": "$(GREETING) world" },
        { "name": "MY_POD", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }
    ]);
    h.create_pod(pod_with("envy", vec![app])).await;
    let p = h.wait_pod("envy", 30, is_ready("True")).await;
    let id = runtime_id(&p, "app");
    for (var, want) in [("MESSAGE", "hello world"), ("MY_POD", "envy")] {
        let request = ExecRequest {
            cmd: vec!["printenv".into(), var.into()],
            stdout: true,
            ..Default::default()
        };
        let mut session = h.runtime.exec(&id, request).await.expect("exec");
        let mut out = String::new();
        session
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .await
            .expect("read");
        assert_eq!(out.trim_end(), want, "{var}");
        assert_eq!(session.exit.await.expect("exit code"), 0);
    }
}

/// Runs each generic test body on every runtime, as `fake::NAME` and `process::NAME`.
macro_rules! on_every_runtime {
    ($($name:ident),* $(,)?) => {
        mod fake {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name::<super::common::backend::Fake>().await
                }
            )*
        }
        mod process {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name::<super::common::backend::Processes>().await
                }
            )*
        }
    };
}

on_every_runtime!(
    restart_policy_never_ends_failed_and_on_failure_ends_succeeded,
    a_crashing_container_restarts_with_back_off_and_keeps_its_previous_log,
    a_failing_exec_liveness_probe_restarts_the_container,
    an_http_readiness_probe_gates_ready_after_a_tcp_startup_probe,
    graceful_deletion_sends_term_and_kills_what_ignores_it_at_the_end_of_the_grace_period,
    env_values_and_pod_fields_reach_the_container,
);
