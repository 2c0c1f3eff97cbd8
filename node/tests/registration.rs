//! Node registration, lease heartbeats, and what stopping and restarting the agent does.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kybernetes_node::NODE_LEASE_NAMESPACE;

async fn wait_node_ready(h: &Harness, name: &str) -> Node {
    let nodes: Api<Node> = Api::all(h.client.clone());
    let ready = |n: Option<&Node>| {
        n.and_then(|n| n.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    tokio::time::timeout(
        Duration::from_secs(30),
        kube::runtime::wait::await_condition(nodes, name, ready),
    )
    .await
    .expect("node becomes ready")
    .expect("watch")
    .expect("node exists")
}

async fn lease(h: &Harness, name: &str) -> Option<Lease> {
    let leases: Api<Lease> = Api::namespaced(h.client.clone(), NODE_LEASE_NAMESPACE);
    leases.get_opt(name).await.expect("get lease")
}

async fn renew_time(h: &Harness, name: &str) -> String {
    let l = lease(h, name).await.expect("lease exists");
    serde_json::to_value(l.spec.and_then(|s| s.renew_time))
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(start_paused = true)]
async fn node_registers_with_capacity_labels_and_pod_cidr_and_renews_its_lease() {
    let mut h = harness().await;
    h.start_agent(h.config("node-1").label("topology.kubernetes.io/zone", "a"));
    let node = wait_node_ready(&h, "node-1").await;
    let labels = node.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], "node-1");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert!(labels.contains_key("kubernetes.io/arch"));
    assert_eq!(labels["topology.kubernetes.io/zone"], "a");
    let spec = node.spec.clone().unwrap();
    let cidr = spec.pod_cidr.clone().expect("podCIDR");
    assert_eq!(
        Some(cidr.clone()),
        h.network.node("node-1").and_then(|n| n.pod_cidr)
    );
    let status = node.status.clone().unwrap();
    let capacity = status.capacity.clone().unwrap();
    assert_eq!(capacity["cpu"].0, "4");
    assert_eq!(capacity["memory"].0, "16Gi");
    assert_eq!(capacity["pods"].0, "110");
    assert_eq!(status.allocatable, status.capacity);
    let types: Vec<_> = status
        .conditions
        .iter()
        .flatten()
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(
        types,
        ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    );
    let addresses: Vec<_> = status
        .addresses
        .iter()
        .flatten()
        .map(|a| a.type_.as_str())
        .collect();
    assert_eq!(addresses, ["InternalIP", "Hostname"]);
    assert_eq!(
        status.node_info.unwrap().container_runtime_version,
        format!("fake://{}", env!("CARGO_PKG_VERSION"))
    );

    // The lease exists at once and is renewed every 10 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while lease(&h, "node-1").await.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "lease created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let l = lease(&h, "node-1").await.unwrap();
    let spec = l.spec.clone().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("node-1"));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    assert_eq!(l.metadata.owner_references.unwrap()[0].kind, "Node");
    let first = renew_time(&h, "node-1").await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    let second = renew_time(&h, "node-1").await;
    assert!(second > first, "lease renewed: {first} then {second}");
}

#[tokio::test(start_paused = true)]
async fn stopping_the_agent_stops_the_lease_and_leaves_containers_running() {
    let mut h = harness().await;
    let i = h.start_agent(h.config("node-1"));
    h.create_pod(pod("web", "node-1", &[("nginx", "nginx:1.27")]))
        .await;
    h.wait_pod("web", 30, is_phase("Running")).await;
    h.stop_agent(i).await;
    let before = renew_time(&h, "node-1").await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        renew_time(&h, "node-1").await,
        before,
        "no renewal after stop"
    );
    let c = h
        .fake
        .latest_container("default", "web", "nginx")
        .expect("container still there");
    assert!(c.state.is_running());
}

#[tokio::test(start_paused = true)]
async fn a_restarted_agent_adopts_the_running_containers() {
    let mut h = harness().await;
    let i = h.start_agent(h.config("node-1"));
    h.create_pod(pod(
        "web",
        "node-1",
        &[("nginx", "nginx:1.27"), ("sidecar", "busybox:1.36")],
    ))
    .await;
    let running = h.wait_pod("web", 30, is_ready("True")).await;
    let ids: Vec<_> = running
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.container_id.clone())
        .collect();
    let ip = running.status.as_ref().unwrap().pod_ip.clone();
    let created = h.fake.created_containers().len();
    assert_eq!(created, 2);
    h.stop_agent(i).await;

    let before = renew_time(&h, "node-1").await;
    h.start_agent(h.config("node-1"));
    // Wait until the new agent has started (it renews the lease) and had time to sync.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while renew_time(&h, "node-1").await == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "new agent renews the lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = h.wait_pod("web", 30, is_ready("True")).await;
    let ids_after: Vec<_> = after
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.container_id.clone())
        .collect();
    assert_eq!(ids, ids_after, "same containers");
    assert_eq!(after.status.as_ref().unwrap().pod_ip, ip, "same pod IP");
    assert_eq!(restart_count(&after, "nginx"), 0);
    assert_eq!(
        h.fake.created_containers().len(),
        created,
        "nothing recreated"
    );
    assert_eq!(h.fake.sandboxes().len(), 1, "one sandbox");
}
