//! Several API servers and control-plane processes on one etcd: writes through one API server
//! reach watches on another; control-plane processes elect one leader through a Lease; when
//! the leader process is killed the other takes over, and a Deployment created afterwards runs
//! with no pod created twice.

#![cfg(feature = "etcd")]

#[path = "../../store/tests/etcd_common/mod.rs"]
mod etcd_common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kybernetes::Cluster;
use kybernetes::store::EtcdStore;
use serde_json::json;

const LEASE_SECONDS: u64 = 3;

/// A control-plane child process, killed when dropped.
struct ControlPlane {
    identity: String,
    child: Child,
}

impl ControlPlane {
    fn start(identity: &str, endpoints: &str) -> ControlPlane {
        let child = Command::new(env!("CARGO_BIN_EXE_kybernetes"))
            .args([
                "run",
                "--store",
                &format!("etcd:{endpoints}"),
                "--nodes",
                "0",
                "--leader-elect",
            ])
            .args([
                "--identity",
                identity,
                "--lease-duration",
                &LEASE_SECONDS.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the control-plane process");
        ControlPlane {
            identity: identity.to_string(),
            child,
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("kybernetes-control-plane")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

async fn wait_holder(
    leases: &Api<Lease>,
    accept: impl Fn(&str) -> bool,
    within: Duration,
) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(h) = holder(leases).await
            && accept(&h)
        {
            return h;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no acceptable lease holder within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_planes_on_one_etcd_share_state_fail_over_and_never_duplicate_pods() {
    let Some(etcd) = etcd_common::etcd_for("control_planes_on_one_etcd") else {
        return;
    };
    let endpoints = etcd.endpoints();
    let joined = endpoints.join(",");

    // Two API servers in this process, one etcd.
    let a = Cluster::builder()
        .store(EtcdStore::connect(&endpoints).await.expect("etcd a"))
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("api server a");
    let b = Cluster::builder()
        .store(EtcdStore::connect(&endpoints).await.expect("etcd b"))
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("api server b");
    let on_b: Api<ConfigMap> = Api::default_namespaced(b.client());
    let rv = on_b
        .list(&ListParams::default())
        .await
        .expect("list on b")
        .metadata
        .resource_version
        .expect("rv");
    let watch = on_b
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("watch on b");
    let on_a: Api<ConfigMap> = Api::default_namespaced(a.client());
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "shared"}, "data": {"k": "v"}}))
            .expect("cm");
    on_a.create(&PostParams::default(), &cm)
        .await
        .expect("write through a");
    let mut watch = std::pin::pin!(watch);
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(ev)) = watch.next().await {
            if let WatchEvent::Added(cm) = ev
                && cm.metadata.name.as_deref() == Some("shared")
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        seen,
        Ok(true),
        "a write through one API server is seen by a watch on the other"
    );

    // Two control-plane processes elect one leader.
    let mut planes = vec![
        ControlPlane::start("plane-x", &joined),
        ControlPlane::start("plane-y", &joined),
    ];
    let leases: Api<Lease> = Api::namespaced(a.client(), "kube-system");
    let first = wait_holder(
        &leases,
        |h| h.starts_with("plane-"),
        Duration::from_secs(60),
    )
    .await;
    let killed = tokio::time::Instant::now();
    if let Some(p) = planes.iter_mut().find(|p| p.identity == first) {
        p.kill();
    }
    let second = wait_holder(
        &leases,
        |h| h.starts_with("plane-") && h != first,
        Duration::from_secs(30),
    )
    .await;
    let took = killed.elapsed();
    assert_ne!(first, second);
    assert!(
        took <= Duration::from_secs(LEASE_SECONDS * 3 + 2),
        "the other process took over within the lease duration ({took:?})"
    );

    // Worker nodes in this process; the surviving control plane schedules and reconciles.
    a.add_node("worker-1").expect("node");
    a.add_node("worker-2").expect("node");
    let pods: Api<Pod> = Api::default_namespaced(a.client());
    let rv = pods
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    let pod_watch = pods
        .watch(&WatchParams::default().labels("app=after-failover"), &rv)
        .await
        .expect("watch pods");
    let names = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let recorded = names.clone();
    let created = tokio::spawn(async move {
        let mut w = std::pin::pin!(pod_watch);
        while let Some(Ok(ev)) = w.next().await {
            if let WatchEvent::Added(p) = ev
                && let Ok(mut n) = recorded.lock()
            {
                n.insert(p.metadata.name.unwrap_or_default());
            }
        }
    });
    let deploys: Api<Deployment> = Api::default_namespaced(a.client());
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "after-failover"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "after-failover"}},
                 "template": {"metadata": {"labels": {"app": "after-failover"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    }))
    .expect("deployment");
    deploys
        .create(&PostParams::default(), &d)
        .await
        .expect("create");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let available = deploys
            .get("after-failover")
            .await
            .ok()
            .and_then(|d| d.status)
            .and_then(|s| s.available_replicas);
        if available == Some(3) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Deployment reaches full availability after the failover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    created.abort();
    let names = names.lock().map(|n| n.clone()).unwrap_or_default();
    let now = pods
        .list(&ListParams::default().labels("app=after-failover"))
        .await
        .expect("list")
        .items;
    assert_eq!(now.len(), 3, "exactly 3 pods");
    assert_eq!(names.len(), 3, "no pod was created twice: {names:?}");
    drop(planes);
    a.shutdown().await.expect("shutdown a");
    b.shutdown().await.expect("shutdown b");
}
