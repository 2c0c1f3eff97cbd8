//! More nodes than the cluster CIDR holds pod CIDRs for: as upstream, the extra nodes register
//! without `spec.podCIDR`, with `NetworkUnavailable`, the network-unavailable taint and a
//! `CIDRNotAvailable` event, and the scheduler places nothing on them.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{deployment, until, wait_available};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kybernetes::Cluster;

fn network_unavailable(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "NetworkUnavailable"
                    && c.status == "True"
                    && c.reason.as_deref() == Some("NoRouteCreated")
            })
        })
}

fn tainted(n: &Node) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| {
            ts.iter().any(|t| {
                t.key == "node.kubernetes.io/network-unavailable" && t.effect == "NoSchedule"
            })
        })
}

fn ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until `want` nodes are Ready, and returns the names of those without a pod CIDR,
/// checking that exactly those carry the condition and the taint.
async fn nodes_without_pod_cidr(cluster: &Cluster, want: usize) -> BTreeSet<String> {
    let nodes: Api<Node> = Api::all(cluster.client());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let list = loop {
        let list = nodes
            .list(&ListParams::default())
            .await
            .expect("nodes")
            .items;
        // The IPAM controller settles each node after it registers, so a Ready node may not
        // have its pod CIDR or its NetworkUnavailable condition yet; wait for one or the other.
        let settled = |n: &Node| {
            n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some()
                || (network_unavailable(n) && tainted(n))
        };
        if list.len() == want && list.iter().all(|n| ready(n) && settled(n)) {
            break list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {want} Ready nodes: {} listed",
            list.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut without = BTreeSet::new();
    for n in &list {
        let name = n.metadata.name.clone().expect("name");
        let cidr = n.spec.as_ref().and_then(|s| s.pod_cidr.clone());
        assert_eq!(cidr.is_none(), network_unavailable(n), "{name}: {cidr:?}");
        assert_eq!(cidr.is_none(), tainted(n), "{name}: {cidr:?}");
        if cidr.is_none() {
            without.insert(name);
        }
    }
    without
}

/// Waits until every node in `names` has its `CIDRNotAvailable` Warning event.
async fn wait_cidr_events(cluster: &Cluster, names: &BTreeSet<String>) {
    let events: Api<Event> = Api::all(cluster.client());
    until(
        "a CIDRNotAvailable event for every node without a pod CIDR",
        Duration::from_secs(120),
        || {
            let events = events.clone();
            async move {
                let list = events
                    .list(&ListParams::default().fields("reason=CIDRNotAvailable"))
                    .await
                    .expect("events")
                    .items;
                let got: BTreeSet<String> = list
                    .iter()
                    .filter(|e| {
                        e.type_.as_deref() == Some("Warning")
                            && e.involved_object.kind.as_deref() == Some("Node")
                            && e.message.as_deref()
                                == Some(&format!(
                                    "Node {} status is now: CIDRNotAvailable",
                                    e.involved_object.name.as_deref().unwrap_or_default()
                                ))
                    })
                    .filter_map(|e| e.involved_object.name.clone())
                    .collect();
                &got == names
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_nodes_on_the_default_cidr_leave_44_without_a_pod_cidr() {
    let cluster = Cluster::builder().nodes(300).start().await.expect("start");
    let without = nodes_without_pod_cidr(&cluster, 300).await;
    assert_eq!(without.len(), 44, "{without:?}");
    wait_cidr_events(&cluster, &without).await;

    // The scheduler keeps pods off them (the taint), so every pod gets an address.
    let deploys: Api<Deployment> = Api::default_namespaced(cluster.client());
    deploys
        .create(&PostParams::default(), &deployment("web", 60, "web:1"))
        .await
        .expect("create deployment");
    wait_available(&deploys, "web", 60, Duration::from_secs(300)).await;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    for p in pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("pods")
        .items
    {
        let node = p.spec.and_then(|s| s.node_name).expect("scheduled");
        assert!(!without.contains(&node), "pod placed on {node}");
        assert!(p.status.and_then(|s| s.pod_ip).is_some(), "pod IP");
    }
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn cluster_cidr_and_node_cidr_mask_size_set_the_node_capacity() {
    // 10.10.0.0/22 in /25s: 8 nodes get a pod CIDR, the ninth none.
    let cluster = Cluster::builder()
        .cluster_cidr("10.10.0.0/22")
        .node_cidr_mask_size(25)
        .nodes(9)
        .start()
        .await
        .expect("start");
    let without = nodes_without_pod_cidr(&cluster, 9).await;
    assert_eq!(without.len(), 1, "{without:?}");
    let nodes: Api<Node> = Api::all(cluster.client());
    for name in cluster.node_names() {
        if without.contains(&name) {
            continue;
        }
        let node = nodes.get(&name).await.expect("node");
        let cidr = node.spec.and_then(|s| s.pod_cidr).expect("podCIDR");
        assert!(
            cidr.starts_with("10.10.") && cidr.ends_with("/25"),
            "{cidr}"
        );
    }
    wait_cidr_events(&cluster, &without).await;
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_node_mask_size_that_does_not_fit_the_cluster_cidr_fails_start() {
    let Err(err) = Cluster::builder()
        .cluster_cidr("10.244.0.0/16")
        .node_cidr_mask_size(12)
        .start()
        .await
    else {
        panic!("a /12 per node in a /16 cluster CIDR must fail start");
    };
    assert!(err.to_string().contains("/12"), "{err}");
}
