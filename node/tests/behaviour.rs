//! The node-agent behaviour suite, run on every runtime: restart policies, back-off, probes,
//! graceful termination, env, volumes, logs and bad input (an absent image, a missing
//! command, a missing ConfigMap or hostPath). Each test body is generic over a [`Backend`];
//! the macros at the end run it on the fake (`fake::…`), on real processes (`process::…`),
//! on processes under runc in isolated mode (`process_isolated::…`, as root) and, with the
//! `containerd` feature, on a real containerd (`containerd::…`). The tests
//! about images and mounted files need an [`Isolated`] runtime, which the process
//! runtime's host mode is not.
//!
//! Real processes cannot run under tokio's paused clock, so the whole suite uses the real
//! clock with short back-off and probe periods, and waits for positive signals with generous
//! limits. The fake-only tests in the other files check exact timings under the paused clock.

mod common;

use std::time::Duration;

use common::backend::{Act, Backend, Isolated, MISSING_COMMAND, exec_output, free_port};
use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kybernetes_node::{BackoffConfig, ContainerLogRequest, container_logs};
use kybernetes_runtime::{ContainerFilter, PodSandboxFilter, labels};
use serde_json::{Value, json};

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
    let config = h
        .config("node-1")
        .backoff(quick_backoff())
        .volume_resync_interval(Duration::from_secs(1));
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

async fn env_values_config_maps_secrets_and_pod_fields_reach_the_container<B: Backend>() {
    let h = started::<B>().await;
    config_map(&h, "settings", &[("mode", "fast"), ("level", "3")]).await;
    secret(&h, "creds", &[("password", "s3cret")]).await;
    let mut app = B::container(&h, "app", Act::Forever);
    app["envFrom"] = json!([{ "configMapRef": { "name": "settings" }, "prefix": "CFG_" }]);
    app["env"] = json!([
        { "name": "GREETING", "value": "hello" },
        { "name": "MESSAGE", "value": "$(GREETING) world" },
        { "name": "MY_POD", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
        { "name": "MODE", "valueFrom": { "configMapKeyRef": { "name": "settings", "key": "mode" } } },
        { "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "password" } } }
    ]);
    h.create_pod(pod_with("envy", vec![app])).await;
    let p = h.wait_pod("envy", 60, is_ready("True")).await;
    let id = runtime_id(&p, "app");
    // `env`, not `printenv`: Debian's busybox has no printenv applet.
    let (out, code) = exec_output(h.runtime.as_ref(), &id, &["env"]).await;
    assert_eq!(code, 0, "{out}");
    let env: std::collections::HashMap<&str, &str> =
        out.lines().filter_map(|l| l.split_once('=')).collect();
    for (var, want) in [
        ("MESSAGE", "hello world"),
        ("MY_POD", "envy"),
        ("MODE", "fast"),
        ("PASSWORD", "s3cret"),
        ("CFG_level", "3"),
    ] {
        assert_eq!(env.get(var).copied(), Some(want), "{var} in {out}");
    }
}

/// The runtime's containers and sandboxes of pod `uid`.
async fn left_of(h: &Harness, uid: &str) -> (usize, usize) {
    let containers = h
        .runtime
        .list_containers(&ContainerFilter::default().label(labels::POD_UID, uid))
        .await
        .expect("list containers");
    let sandboxes = h
        .runtime
        .list_pod_sandboxes(&PodSandboxFilter::default().label(labels::POD_UID, uid))
        .await
        .expect("list sandboxes");
    (containers.len(), sandboxes.len())
}

async fn an_absent_image_is_err_image_pull_then_image_pull_back_off_and_leaves_nothing<
    B: Isolated,
>() {
    let h = started::<B>().await;
    let mut app = B::container(&h, "app", Act::Forever);
    let image = B::missing_image(&h);
    app["image"] = json!(image);
    let created = h.create_pod(pod_with("badimage", vec![app])).await;
    let uid = created.metadata.uid.clone().expect("uid");
    h.wait_pod("badimage", 60, |p: Option<&Pod>| {
        p.is_some_and(|p| waiting_reason(p, "app").as_deref() == Some("ErrImagePull"))
    })
    .await;
    let p = h
        .wait_pod("badimage", 60, |p: Option<&Pod>| {
            p.is_some_and(|p| waiting_reason(p, "app").as_deref() == Some("ImagePullBackOff"))
        })
        .await;
    assert_eq!(phase(&p), "Pending");
    let failed = h.wait_event("badimage", "Failed", 10).await;
    assert!(
        failed
            .message
            .as_deref()
            .unwrap_or_default()
            .contains(image),
        "{failed:?}"
    );
    h.wait_event("badimage", "BackOff", 30).await;
    assert_eq!(
        left_of(&h, &uid).await.0,
        0,
        "no container without its image"
    );
    assert!(
        h.runtime
            .image_status(image)
            .await
            .expect("image status")
            .is_none()
    );

    h.pods()
        .delete("badimage", &DeleteParams::default())
        .await
        .expect("delete");
    h.wait_pod_gone("badimage", 60).await;
    assert_eq!(left_of(&h, &uid).await, (0, 0), "nothing left behind");
}

async fn a_command_that_is_not_found_ends_the_container_with_start_error<B: Backend>() {
    let h = started::<B>().await;
    let app = B::container(&h, "app", Act::CommandNotFound);
    let mut pod = pod_with("nocmd", vec![app]);
    pod["spec"]["restartPolicy"] = json!("Never");
    h.create_pod(pod).await;
    let p = h.wait_pod("nocmd", 60, is_phase("Failed")).await;
    let t = container_status(&p, "app")
        .and_then(|c| c.state.as_ref()?.terminated.clone())
        .unwrap_or_else(|| panic!("terminated: {:#?}", p.status));
    assert_eq!(
        (t.exit_code, t.reason.as_deref()),
        (128, Some("StartError"))
    );
    let message = t.message.unwrap_or_default();
    assert!(message.contains(MISSING_COMMAND), "{message}");
    let failed = h.wait_event("nocmd", "Failed", 10).await;
    assert!(
        failed
            .message
            .as_deref()
            .unwrap_or_default()
            .contains(MISSING_COMMAND),
        "{failed:?}"
    );
}

/// The message of the `CreateContainerConfigError` that container `app` of pod `name` waits
/// with.
async fn config_error_of(h: &Harness, name: &str) -> String {
    let p = h
        .wait_pod(name, 60, |p: Option<&Pod>| {
            p.and_then(|p| waiting_reason(p, "app")).as_deref()
                == Some("CreateContainerConfigError")
        })
        .await;
    container_status(&p, "app")
        .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.message.clone())
        .unwrap_or_default()
}

async fn run_as_non_root_refuses_an_image_that_runs_as_root_and_runs_a_non_root_user<B: Backend>() {
    let h = started::<B>().await;
    let app = B::container(&h, "app", Act::Forever);
    let mut pod = pod_with("rooted", vec![app.clone()]);
    pod["spec"]["securityContext"] = json!({"runAsNonRoot": true});
    h.create_pod(pod).await;
    let message = config_error_of(&h, "rooted").await;
    assert!(
        message.starts_with(
            "container has runAsNonRoot and image will run as root (pod: \"rooted_default("
        ),
        "{message}"
    );
    assert!(message.ends_with("container: app)"), "{message}");

    // runAsUser 0 breaks the policy whatever the image says; a non-zero one passes it.
    let mut zero = pod_with("zero", vec![app.clone()]);
    zero["spec"]["securityContext"] = json!({"runAsNonRoot": true, "runAsUser": 0});
    h.create_pod(zero).await;
    let message = config_error_of(&h, "zero").await;
    assert!(
        message.starts_with("container's runAsUser breaks non-root policy"),
        "{message}"
    );

    let mut user = pod_with("user", vec![app]);
    user["spec"]["securityContext"] = json!({"runAsNonRoot": true, "runAsUser": 1000});
    h.create_pod(user).await;
    h.wait_pod("user", 60, is_phase("Running")).await;
}

async fn failed_mount_message(h: &Harness, pod: &str) -> String {
    h.wait_event(pod, "FailedMount", 30)
        .await
        .message
        .unwrap_or_default()
}

async fn wait_container_creating(h: &Harness, pod: &str) -> Pod {
    let p = h
        .wait_pod(pod, 30, |p: Option<&Pod>| {
            p.is_some_and(|p| waiting_reason(p, "app").as_deref() == Some("ContainerCreating"))
        })
        .await;
    assert_eq!(phase(&p), "Pending");
    p
}

async fn a_missing_config_map_volume_holds_the_pod_in_container_creating_until_it_exists<
    B: Isolated,
>() {
    let h = started::<B>().await;
    let mut app = B::container(&h, "app", Act::Forever);
    app["volumeMounts"] = json!([{ "name": "config", "mountPath": "/etc/config" }]);
    let mut pod = pod_with("needs-cm", vec![app]);
    pod["spec"]["volumes"] = json!([{ "name": "config", "configMap": { "name": "later" } }]);
    let created = h.create_pod(pod).await;
    let uid = created.metadata.uid.clone().expect("uid");
    assert_eq!(
        failed_mount_message(&h, "needs-cm").await,
        "MountVolume.SetUp failed for volume \"config\" : configmap \"later\" not found"
    );
    wait_container_creating(&h, "needs-cm").await;
    assert_eq!(left_of(&h, &uid).await, (0, 0), "no sandbox before volumes");

    config_map(&h, "later", &[("k", "v")]).await;
    let p = h.wait_pod("needs-cm", 120, is_ready("True")).await;
    let id = runtime_id(&p, "app");
    assert_eq!(
        B::read_file(&h, &id, "/etc/config/k").await.as_deref(),
        Some("v")
    );
}

async fn a_host_path_directory_that_does_not_exist_fails_the_mount_until_it_does<B: Backend>() {
    let h = started::<B>().await;
    let host = tempfile::tempdir().expect("tempdir");
    let missing = host.path().join("missing");
    let mut app = B::container(&h, "app", Act::Forever);
    app["volumeMounts"] = json!([{ "name": "data", "mountPath": "/data" }]);
    let mut pod = pod_with("hp-bad", vec![app]);
    pod["spec"]["volumes"] =
        json!([{ "name": "data", "hostPath": { "path": missing, "type": "Directory" } }]);
    let created = h.create_pod(pod).await;
    let uid = created.metadata.uid.clone().expect("uid");
    assert_eq!(
        failed_mount_message(&h, "hp-bad").await,
        format!(
            "MountVolume.SetUp failed for volume \"data\" : hostPath type check failed: {} is not a directory",
            missing.display()
        )
    );
    wait_container_creating(&h, "hp-bad").await;
    assert_eq!(left_of(&h, &uid).await, (0, 0), "no sandbox before volumes");
    std::fs::create_dir(&missing).expect("mkdir");
    h.wait_pod("hp-bad", 120, is_ready("True")).await;
}

async fn config_map_and_secret_volumes_show_their_files_and_follow_updates<B: Isolated>() {
    let h = started::<B>().await;
    config_map(&h, "settings", &[("greeting", "hello")]).await;
    secret(&h, "creds", &[("password", "s3cret")]).await;
    let mut app = B::container(&h, "app", Act::Forever);
    app["volumeMounts"] = json!([
        { "name": "config", "mountPath": "/etc/config" },
        { "name": "creds", "mountPath": "/etc/creds", "readOnly": true }
    ]);
    let mut pod = pod_with("vols", vec![app]);
    pod["spec"]["volumes"] = json!([
        { "name": "config", "configMap": { "name": "settings" } },
        { "name": "creds", "secret": { "secretName": "creds" } }
    ]);
    h.create_pod(pod).await;
    let p = h.wait_pod("vols", 60, is_ready("True")).await;
    let id = runtime_id(&p, "app");
    assert_eq!(
        B::read_file(&h, &id, "/etc/config/greeting")
            .await
            .as_deref(),
        Some("hello")
    );
    assert_eq!(
        B::read_file(&h, &id, "/etc/creds/password")
            .await
            .as_deref(),
        Some("s3cret")
    );

    let patch = json!({ "data": { "greeting": "hi" } });
    Api::<ConfigMap>::namespaced(h.client.clone(), "default")
        .patch("settings", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("update configmap");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = B::read_file(&h, &id, "/etc/config/greeting").await;
        if now.as_deref() == Some("hi") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the mounted file still reads {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the generic test bodies `$name` on backend `$backend`, each as a test of that name.
macro_rules! tests_on {
    ($backend:ty, #[$test:meta], $($name:ident),* $(,)?) => {
        $(
            #[$test]
            async fn $name() {
                super::$name::<$backend>().await
            }
        )*
    };
}

/// The tests every runtime runs, then those of `$more`.
macro_rules! every_runtime {
    ($backend:ty, #[$test:meta] $(, $more:ident)*) => {
        tests_on!(
            $backend,
            #[$test],
            restart_policy_never_ends_failed_and_on_failure_ends_succeeded,
            a_crashing_container_restarts_with_back_off_and_keeps_its_previous_log,
            a_failing_exec_liveness_probe_restarts_the_container,
            an_http_readiness_probe_gates_ready_after_a_tcp_startup_probe,
            graceful_deletion_sends_term_and_kills_what_ignores_it_at_the_end_of_the_grace_period,
            env_values_config_maps_secrets_and_pod_fields_reach_the_container,
            a_command_that_is_not_found_ends_the_container_with_start_error,
            a_host_path_directory_that_does_not_exist_fails_the_mount_until_it_does,
            run_as_non_root_refuses_an_image_that_runs_as_root_and_runs_a_non_root_user,
            $($more,)*
        );
    };
}

/// The tests of [`Isolated`] runtimes, beside every runtime's.
macro_rules! every_isolated_runtime {
    ($backend:ty, #[$test:meta]) => {
        every_runtime!(
            $backend,
            #[$test],
            an_absent_image_is_err_image_pull_then_image_pull_back_off_and_leaves_nothing,
            a_missing_config_map_volume_holds_the_pod_in_container_creating_until_it_exists,
            config_map_and_secret_volumes_show_their_files_and_follow_updates
        );
    };
}

mod fake {
    every_isolated_runtime!(super::common::backend::Fake, #[tokio::test]);
}

mod process {
    every_runtime!(super::common::backend::Processes, #[tokio::test]);
}

mod process_isolated {
    every_runtime!(
        super::common::backend::IsolatedProcesses,
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    );
}

#[cfg(feature = "containerd")]
mod containerd {
    every_isolated_runtime!(
        super::common::backend::Containerd,
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    );
}
