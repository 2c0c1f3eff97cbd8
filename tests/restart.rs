//! A cluster on SQLite that is stopped and started again on the same file has all its objects
//! back; its node agents adopt the pods that are still running and nothing is duplicated.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kybernetes::Cluster;
use kybernetes::runtime::FakeRuntime;

use crate::common;

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kyb-restart-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

async fn running_pods(pods: &Api<Pod>, want: usize) -> BTreeMap<String, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(list) = pods.list(&ListParams::default().labels("app=web")).await {
            let running: BTreeMap<String, String> = list
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .map(|p| {
                    (
                        p.metadata.name.clone().unwrap_or_default(),
                        p.metadata.uid.clone().unwrap_or_default(),
                    )
                })
                .collect();
            if running.len() == want && list.items.len() == want {
                return running;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pods did not settle at {want}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Each node's `spec.podCIDR` and InternalIP.
async fn node_networks(c: &Cluster) -> BTreeMap<String, (String, String)> {
    let nodes: Api<Node> = Api::all(c.client());
    let list = nodes
        .list(&ListParams::default())
        .await
        .expect("list nodes");
    list.items
        .iter()
        .map(|n| {
            let cidr = n.spec.as_ref().and_then(|s| s.pod_cidr.clone());
            let ip = n
                .status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
                .map(|a| a.address.clone());
            (
                n.metadata.name.clone().unwrap_or_default(),
                (cidr.unwrap_or_default(), ip.unwrap_or_default()),
            )
        })
        .collect()
}

/// Waits until every pod's IP lies inside its node's `spec.podCIDR`.
async fn pods_inside_their_node_cidr(c: &Cluster) {
    let nodes = node_networks(c).await;
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    common::until(
        "pod IPs inside their node's pod CIDR",
        Duration::from_secs(30),
        || async {
            let Ok(list) = pods.list(&ListParams::default()).await else {
                return false;
            };
            list.items.iter().all(|p| {
                let node = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default();
                let ip = p
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ip.clone())
                    .unwrap_or_default();
                let cidr = nodes
                    .get(&node)
                    .map(|(c, _)| c.as_str())
                    .unwrap_or_default();
                match (
                    cidr.parse::<kybernetes::core::ipam::Cidr>(),
                    ip.parse::<std::net::IpAddr>(),
                ) {
                    (Ok(cidr), Ok(ip)) => cidr.contains(ip),
                    _ => false,
                }
            })
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_cluster_adopts_its_running_pods_and_creates_none() {
    let dir = temp_dir();
    // The runtime outlives the cluster, as containers outlive a restarted kubelet.
    let runtime = FakeRuntime::default();
    let before = {
        let c = Cluster::builder()
            .data_dir(&dir)
            .expect("data dir")
            .nodes(2)
            .runtime(runtime.clone())
            .start()
            .await
            .expect("start");
        let deploys: Api<Deployment> = Api::default_namespaced(c.client());
        let d = common::deployment("web", 4, "nginx");
        deploys
            .create(&PostParams::default(), &d)
            .await
            .expect("create");
        let pods: Api<Pod> = Api::default_namespaced(c.client());
        let before = running_pods(&pods, 4).await;
        let networks = node_networks(&c).await;
        c.shutdown().await.expect("shutdown");
        (before, networks)
    };
    let (before, networks_before) = before;
    let containers_before = runtime.containers().len();

    let c = Cluster::builder()
        .data_dir(&dir)
        .expect("reopen")
        .nodes(2)
        .runtime(runtime.clone())
        .start()
        .await
        .expect("restart");
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let after = running_pods(&pods, 4).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let settled = running_pods(&pods, 4).await;
    assert_eq!(
        before, after,
        "the same pods, with the same UIDs, are running"
    );
    assert_eq!(after, settled, "and no extra pods appear later");
    assert_eq!(
        node_networks(&c).await,
        networks_before,
        "each node keeps its pod CIDR and address, whatever order the agents register in"
    );
    pods_inside_their_node_cidr(&c).await;
    assert_eq!(
        runtime.containers().len(),
        containers_before,
        "the node agents adopted the containers instead of starting new ones"
    );
    c.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "etcd")]
#[path = "../store/tests/etcd_common/mod.rs"]
mod etcd_common;

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_cluster_on_etcd_adopts_its_running_pods_and_creates_none() {
    use kybernetes::store::EtcdStore;
    let Some(etcd) = etcd_common::etcd_for("a_restarted_cluster_on_etcd") else {
        return;
    };
    let endpoints = etcd.endpoints();
    let runtime = FakeRuntime::default();
    let before = {
        let store = EtcdStore::connect(&endpoints).await.expect("etcd");
        let c = Cluster::builder()
            .store(store)
            .nodes(2)
            .runtime(runtime.clone())
            .start()
            .await
            .expect("start");
        let deploys: Api<Deployment> = Api::default_namespaced(c.client());
        let d = common::deployment("web", 4, "nginx");
        deploys
            .create(&PostParams::default(), &d)
            .await
            .expect("create");
        let pods: Api<Pod> = Api::default_namespaced(c.client());
        let before = running_pods(&pods, 4).await;
        let networks = node_networks(&c).await;
        c.shutdown().await.expect("shutdown");
        (before, networks)
    };
    let (before, networks_before) = before;
    let containers_before = runtime.containers().len();
    let store = EtcdStore::connect(&endpoints).await.expect("etcd again");
    let c = Cluster::builder()
        .store(store)
        .nodes(2)
        .runtime(runtime.clone())
        .start()
        .await
        .expect("restart");
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let after = running_pods(&pods, 4).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        before, after,
        "the same pods, with the same UIDs, are running"
    );
    assert_eq!(
        after,
        running_pods(&pods, 4).await,
        "and no extra pods appear later"
    );
    assert_eq!(
        runtime.containers().len(),
        containers_before,
        "containers were adopted, not recreated"
    );
    assert_eq!(
        node_networks(&c).await,
        networks_before,
        "nodes keep their pod CIDRs"
    );
    pods_inside_their_node_cidr(&c).await;
    c.shutdown().await.expect("shutdown");
}
