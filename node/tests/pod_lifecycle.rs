//! Pods from Pending to Running, Succeeded or Failed: IPs, restart policies, back-off, init
//! containers and image pulls.

mod common;

use std::time::Duration;

use common::*;
use kybernetes_runtime::fake::{ContainerScript, PullFailure};
use kybernetes_runtime::{ContainerEventKind, Runtime};
use serde_json::json;

#[tokio::test(start_paused = true)]
async fn pod_reaches_running_and_ready_with_an_ip_in_the_node_pod_cidr() {
    let mut h = harness().await;
    h.start_agent(h.config("node-1"));
    h.create_pod(pod("web", "node-1", &[("nginx", "nginx:1.27")]))
        .await;
    let p = h.wait_pod("web", 30, is_ready("True")).await;
    let status = p.status.clone().unwrap();
    assert_eq!(phase(&p), "Running");
    let cidr: kybernetes_core::ipam::Cidr = h
        .network
        .node("node-1")
        .unwrap()
        .pod_cidr
        .unwrap()
        .parse()
        .unwrap();
    let ip: std::net::IpAddr = status.pod_ip.clone().unwrap().parse().unwrap();
    assert!(cidr.contains(ip), "{ip} in {cidr}");
    assert_eq!(status.pod_ips.unwrap()[0].ip, ip.to_string());
    assert_eq!(
        status.host_ip,
        Some(h.network.node("node-1").unwrap().node_ip.to_string())
    );
    assert!(status.start_time.is_some());
    for t in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
        "PodScheduled",
    ] {
        assert_eq!(condition(&p, t).as_deref(), Some("True"), "{t}");
    }
    let cs = container_status(&p, "nginx").unwrap();
    assert!(cs.ready);
    assert_eq!(cs.started, Some(true));
    assert!(cs.state.as_ref().unwrap().running.is_some());
    assert!(cs.container_id.as_deref().unwrap().starts_with("fake://"));
    assert!(cs.image_id.starts_with("docker.io/library/nginx@sha256:"));
    for reason in ["Pulled", "Created", "Started"] {
        h.wait_event("web", reason, 10).await;
    }
}

#[tokio::test(start_paused = true)]
async fn crashing_container_restarts_with_growing_back_off_and_reaches_crash_loop_back_off() {
    let mut h = harness().await;
    h.fake.script_container(
        "app",
        ContainerScript::new().crash_after(Duration::from_secs(1)),
    );
    let mut events = h.fake.container_events();
    h.start_agent(h.config("node-1"));
    let created = h
        .create_pod(pod("crashy", "node-1", &[("app", "busybox:1.36")]))
        .await;
    let uid = created.metadata.uid.clone().unwrap();
    let mut starts = Vec::new();
    while starts.len() < 5 {
        let e = tokio::time::timeout(Duration::from_secs(600), events.recv())
            .await
            .expect("starts")
            .expect("events");
        if e.pod_uid == uid && e.kind == ContainerEventKind::Started {
            starts.push(e.time);
        }
    }
    let gaps: Vec<i64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]).num_seconds())
        .collect();
    // Runs 1 s each time; back-off before restarts 2, 3, 4: 10 s, 20 s, 40 s.
    assert_eq!(gaps, vec![1, 11, 21, 41], "start times {starts:?}");
    let p = h
        .wait_pod(
            "crashy",
            120,
            |p: Option<&k8s_openapi::api::core::v1::Pod>| {
                p.is_some_and(|p| waiting_reason(p, "app").as_deref() == Some("CrashLoopBackOff"))
            },
        )
        .await;
    assert_eq!(phase(&p), "Running");
    assert!(restart_count(&p, "app") >= 4);
    let cs = container_status(&p, "app").unwrap();
    let last = cs
        .last_state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .expect("lastState.terminated");
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    assert!(
        cs.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .message
            .as_deref()
            .unwrap()
            .starts_with("back-off")
    );
    h.wait_event("crashy", "BackOff", 10).await;
}

#[tokio::test(start_paused = true)]
async fn back_off_is_configurable() {
    let mut h = harness().await;
    h.fake.script_container(
        "app",
        ContainerScript::new().crash_after(Duration::from_millis(100)),
    );
    let config = h.config("node-1").backoff(kybernetes_node::BackoffConfig {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(1),
        reset_after: Duration::from_secs(2),
    });
    h.start_agent(config);
    h.create_pod(pod("quick", "node-1", &[("app", "busybox:1.36")]))
        .await;
    let p = h
        .wait_pod(
            "quick",
            10,
            |p: Option<&k8s_openapi::api::core::v1::Pod>| {
                p.is_some_and(|p| restart_count(p, "app") >= 6)
            },
        )
        .await;
    assert_eq!(phase(&p), "Running");
}

#[tokio::test(start_paused = true)]
async fn restart_policy_never_ends_failed_when_the_container_fails() {
    let mut h = harness().await;
    h.fake.script_container(
        "job",
        ContainerScript::new().exit_after(Duration::from_secs(3), 2),
    );
    h.start_agent(h.config("node-1"));
    let mut p = pod("once", "node-1", &[("job", "busybox:1.36")]);
    p["spec"]["restartPolicy"] = json!("Never");
    h.create_pod(p).await;
    let p = h.wait_pod("once", 60, is_phase("Failed")).await;
    let t = container_status(&p, "job")
        .unwrap()
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .expect("terminated");
    assert_eq!((t.exit_code, t.reason.as_deref()), (2, Some("Error")));
    assert_eq!(restart_count(&p, "job"), 0);
    assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
    assert_eq!(h.fake.created_containers().len(), 1, "never restarted");
    // A finished pod's sandbox is stopped and its IP released.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.network.pod_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn restart_policy_on_failure_restarts_failures_and_ends_succeeded_after_exit_zero() {
    let mut h = harness().await;
    h.fake.script_container(
        "job",
        ContainerScript::new().exit_after(Duration::from_secs(2), 1),
    );
    h.start_agent(h.config("node-1"));
    let mut p = pod("batch", "node-1", &[("job", "busybox:1.36")]);
    p["spec"]["restartPolicy"] = json!("OnFailure");
    h.create_pod(p).await;
    h.wait_pod(
        "batch",
        60,
        |p: Option<&k8s_openapi::api::core::v1::Pod>| {
            p.is_some_and(|p| restart_count(p, "job") >= 1)
        },
    )
    .await;
    // From now on the job succeeds.
    h.fake.script_container(
        "job",
        ContainerScript::new().complete_after(Duration::from_secs(2)),
    );
    let p = h.wait_pod("batch", 120, is_phase("Succeeded")).await;
    let t = container_status(&p, "job")
        .unwrap()
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .expect("terminated");
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
    let ready = p
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready.reason.as_deref(), Some("PodCompleted"));
}

#[tokio::test(start_paused = true)]
async fn init_containers_run_in_order_before_the_app_containers() {
    let mut h = harness().await;
    h.fake.script_container(
        "init-1",
        ContainerScript::new().complete_after(Duration::from_secs(2)),
    );
    h.fake.script_container(
        "init-2",
        ContainerScript::new().complete_after(Duration::from_secs(2)),
    );
    h.start_agent(h.config("node-1"));
    let mut p = pod("inits", "node-1", &[("app", "nginx:1.27")]);
    p["spec"]["initContainers"] = json!([
        { "name": "init-1", "image": "busybox:1.36" },
        { "name": "init-2", "image": "busybox:1.36" }
    ]);
    h.create_pod(p).await;
    let pending = h
        .wait_pod(
            "inits",
            30,
            |p: Option<&k8s_openapi::api::core::v1::Pod>| {
                p.is_some_and(|p| waiting_reason(p, "app").as_deref() == Some("PodInitializing"))
            },
        )
        .await;
    assert_eq!(phase(&pending), "Pending");
    assert_eq!(condition(&pending, "Initialized").as_deref(), Some("False"));
    let p = h.wait_pod("inits", 60, is_ready("True")).await;
    let names: Vec<_> = h
        .fake
        .created_containers()
        .into_iter()
        .map(|c| c.metadata.name)
        .collect();
    assert_eq!(names, ["init-1", "init-2", "app"]);
    let inits = p
        .status
        .as_ref()
        .unwrap()
        .init_container_statuses
        .clone()
        .unwrap();
    assert!(inits.iter().all(|s| {
        s.state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .is_some_and(|t| t.exit_code == 0)
    }));
    assert_eq!(condition(&p, "Initialized").as_deref(), Some("True"));
}

#[tokio::test(start_paused = true)]
async fn image_pull_failure_shows_err_image_pull_then_image_pull_back_off() {
    let mut h = harness().await;
    h.fake.fail_image_pull("nope:1", PullFailure::NotFound);
    h.start_agent(h.config("node-1"));
    h.create_pod(pod("badimage", "node-1", &[("app", "nope:1")]))
        .await;
    h.wait_pod(
        "badimage",
        30,
        |p: Option<&k8s_openapi::api::core::v1::Pod>| {
            p.is_some_and(|p| waiting_reason(p, "app").as_deref() == Some("ErrImagePull"))
        },
    )
    .await;
    let p = h
        .wait_pod(
            "badimage",
            30,
            |p: Option<&k8s_openapi::api::core::v1::Pod>| {
                p.is_some_and(|p| waiting_reason(p, "app").as_deref() == Some("ImagePullBackOff"))
            },
        )
        .await;
    assert_eq!(phase(&p), "Pending");
    h.wait_event("badimage", "Failed", 10).await;
    // Once the image exists, the next retry pulls it and the pod runs.
    h.fake.allow_image_pull("nope:1");
    h.wait_pod("badimage", 600, is_phase("Running")).await;
    assert!(
        h.fake
            .pulled_images()
            .iter()
            .filter(|i| *i == "nope:1")
            .count()
            >= 2
    );
    assert!(h.fake.image_status("nope:1").await.unwrap().is_some());
}

#[tokio::test(start_paused = true)]
async fn pod_shows_container_creating_and_its_ip_while_the_image_is_pulled() {
    let mut h = harness().await;
    h.fake.set_latencies(kybernetes_runtime::fake::Latencies {
        pull: Duration::from_secs(30),
        ..Default::default()
    });
    h.start_agent(h.config("node-1"));
    h.create_pod(pod("slowpull", "node-1", &[("app", "big:1")]))
        .await;
    let p = h
        .wait_pod(
            "slowpull",
            20,
            |p: Option<&k8s_openapi::api::core::v1::Pod>| {
                p.is_some_and(|p| waiting_reason(p, "app").as_deref() == Some("ContainerCreating"))
            },
        )
        .await;
    assert_eq!(phase(&p), "Pending");
    assert!(p.status.as_ref().unwrap().pod_ip.is_some());
    h.wait_event("slowpull", "Pulling", 10).await;
    h.wait_pod("slowpull", 60, is_phase("Running")).await;
}

#[tokio::test(start_paused = true)]
async fn changing_a_container_image_restarts_it_with_the_new_image() {
    let mut h = harness().await;
    h.start_agent(h.config("node-1"));
    h.create_pod(pod("upgrade", "node-1", &[("web", "nginx:1.26")]))
        .await;
    h.wait_pod("upgrade", 30, is_ready("True")).await;
    let patch = json!({ "spec": { "containers": [{ "name": "web", "image": "nginx:1.27" }] } });
    h.pods()
        .patch(
            "upgrade",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let p = h
        .wait_pod(
            "upgrade",
            30,
            |p: Option<&k8s_openapi::api::core::v1::Pod>| {
                p.is_some_and(|p| {
                    container_status(p, "web").is_some_and(|c| c.image == "nginx:1.27" && c.ready)
                })
            },
        )
        .await;
    assert_eq!(restart_count(&p, "web"), 1);
    let images: Vec<_> = h
        .fake
        .created_containers()
        .into_iter()
        .map(|c| c.image)
        .collect();
    assert_eq!(images, ["nginx:1.26", "nginx:1.27"]);
    let killing = h.wait_event("upgrade", "Killing", 10).await;
    assert_eq!(
        killing.message.as_deref(),
        Some("Container web definition changed, will be restarted")
    );
}

#[tokio::test(start_paused = true)]
async fn a_pod_bound_after_creation_is_picked_up() {
    let mut h = harness().await;
    h.start_agent(h.config("node-1"));
    let mut p = pod("late", "node-1", &[("web", "nginx:1.27")]);
    p["spec"].as_object_mut().unwrap().remove("nodeName");
    h.create_pod(p).await;
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": { "name": "late" },
        "target": { "apiVersion": "v1", "kind": "Node", "name": "node-1" }
    });
    let _: serde_json::Value = h
        .pods()
        .create_subresource(
            "binding",
            "late",
            &kube::api::PostParams::default(),
            &binding,
        )
        .await
        .unwrap();
    let p = h.wait_pod("late", 30, is_ready("True")).await;
    assert_eq!(condition(&p, "PodScheduled").as_deref(), Some("True"));
}
