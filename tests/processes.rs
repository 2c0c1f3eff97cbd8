//! ProcessRuntime under a whole cluster: the processes example end to end, an httpGet
//! readiness probe against `busybox httpd` gating a Service's Endpoints, and a second pod
//! claiming a port already held. Needs `/bin/busybox` (scripts/test installs busybox-static);
//! without it these tests fail, not skip.

use crate::common;

#[allow(dead_code)]
#[path = "../examples/processes.rs"]
pub(crate) mod processes_example;

use std::time::Duration;

use common::until;
use k8s_openapi::api::core::v1::{Endpoints, Event, Pod, Service};
use kube::api::{Api, ListParams, PostParams};
use kybernetes::Cluster;
use kybernetes::runtime::ProcessRuntime;
use serde_json::json;

const BUSYBOX: &str = "/bin/busybox";

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn need_busybox() {
    assert!(
        std::path::Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: install busybox-static (scripts/test does)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processes_example_restarts_a_killed_replica_rolls_out_and_leaves_no_process() {
    need_busybox();
    processes_example::run(free_port())
        .await
        .expect("the processes example runs to completion");
}

fn web_pod(name: &str, port: u16, serve_after_secs: u32) -> Pod {
    let script = format!(
        "sleep {serve_after_secs}; echo ok > index.html; exec {BUSYBOX} httpd -f -p 127.0.0.1:{port} -h ."
    );
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "app": "web" } },
        "spec": { "containers": [{
            "name": "web",
            "image": "local",
            "command": ["/bin/sh", "-c", script],
            "ports": [{ "containerPort": port }],
            "readinessProbe": { "httpGet": { "path": "/", "port": port }, "periodSeconds": 1 }
        }]}
    }))
    .expect("pod")
}

fn addresses(e: &Endpoints) -> (usize, usize) {
    let subsets = e.subsets.clone().unwrap_or_default();
    let count = |f: fn(&k8s_openapi::api::core::v1::EndpointSubset) -> usize| {
        subsets.iter().map(f).sum::<usize>()
    };
    (
        count(|s| s.addresses.as_ref().map_or(0, Vec::len)),
        count(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_readiness_probe_against_busybox_httpd_gates_the_endpoints() {
    need_busybox();
    let processes = ProcessRuntime::host();
    let cluster = Cluster::builder()
        .runtime(processes.clone())
        .start()
        .await
        .expect("cluster");
    let client = cluster.client();
    let services: Api<Service> = Api::default_namespaced(client.clone());
    let svc = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": { "selector": { "app": "web" }, "ports": [{ "port": 80 }] }
    }))
    .expect("service");
    services
        .create(&PostParams::default(), &svc)
        .await
        .expect("service");
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pods.create(&PostParams::default(), &web_pod("web", free_port(), 3))
        .await
        .expect("pod");
    let endpoints: Api<Endpoints> = Api::default_namespaced(client.clone());
    let get = || async {
        endpoints
            .get_opt("web")
            .await
            .ok()
            .flatten()
            .map(|e| addresses(&e))
    };
    until(
        "the running, unready pod is a not-ready address",
        Duration::from_secs(30),
        || async { get().await == Some((0, 1)) },
    )
    .await;
    until(
        "the ready pod is a ready address",
        Duration::from_secs(30),
        || async { get().await == Some((1, 0)) },
    )
    .await;
    let pids = processes.running_pids();
    assert_eq!(pids.len(), 1);
    cluster.shutdown().await.expect("shutdown");
    assert!(processes.running_pids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_pod_claiming_a_held_port_gets_a_clear_error() {
    need_busybox();
    let cluster = Cluster::builder()
        .runtime(ProcessRuntime::host())
        .start()
        .await
        .expect("cluster");
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    let port = free_port();
    pods.create(&PostParams::default(), &web_pod("first", port, 0))
        .await
        .expect("first");
    let ready = |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref()?.conditions.clone())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    cluster
        .wait_until(&pods, "first", ready, Duration::from_secs(30))
        .await
        .expect("first is ready");
    pods.create(&PostParams::default(), &web_pod("second", port, 0))
        .await
        .expect("second");
    let events: Api<Event> = Api::default_namespaced(cluster.client());
    let want = format!("port {port}/TCP is already claimed by pod default/first");
    until(
        "a FailedCreatePodSandBox event naming the port and the holder",
        Duration::from_secs(30),
        || async {
            events
                .list(&ListParams::default())
                .await
                .map(|l| {
                    l.items.iter().any(|e| {
                        e.involved_object.name.as_deref() == Some("second")
                            && e.reason.as_deref() == Some("FailedCreatePodSandBox")
                            && e.message.as_deref().is_some_and(|m| m.contains(&want))
                    })
                })
                .unwrap_or(false)
        },
    )
    .await;
    let second = pods.get("second").await.expect("second");
    assert_eq!(
        second.status.and_then(|s| s.phase).as_deref(),
        Some("Pending")
    );
    cluster.shutdown().await.expect("shutdown");
}
