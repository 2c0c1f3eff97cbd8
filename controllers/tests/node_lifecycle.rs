//! The node lifecycle controller against the in-process API server, under tokio's paused
//! clock: the upstream defaults (40 s grace period, 300 s default toleration) pass in
//! microseconds. There is no node agent: the tests renew node leases and write node and pod
//! status themselves.

mod common;

use std::future::Future;
use std::time::Duration;

use anyhow::Result;
use common::{Cluster, eventually_every, meta, node, pod};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kybernetes_controllers::node_lifecycle::{
    NOT_READY_TAINT, NodeLifecycleConfig, UNREACHABLE_TAINT, spawn_node_lifecycle_controller,
};
use kybernetes_core::Clock;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// An API server with the node lifecycle controller.
async fn start() -> Result<Cluster> {
    Cluster::start(|client, clock, shutdown| {
        let informers =
            kybernetes_controllers::InformerFactory::new(client.clone(), shutdown.clone());
        let mut tasks = vec![spawn_node_lifecycle_controller(
            client.clone(),
            clock.clone(),
            NodeLifecycleConfig::default(),
            &informers,
            shutdown.clone(),
        )];
        tasks.extend(informers.take_tasks());
        tasks
    })
    .await
}

/// Sets the renew time of the lease of node `name` to now.
async fn renew(leases: &Api<Lease>, clock: &Clock, name: &str) -> kube::Result<Lease> {
    let patch = json!({ "spec": { "renewTime": clock.now_micro() } });
    leases
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

impl Cluster {
    /// Registers a Ready node and its lease, as a node agent does.
    async fn add_node(&self, name: &str) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes.create(&PostParams::default(), &node(name)).await?;
        self.post_ready(name, "True").await?;
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let lease = Lease {
            metadata: meta(name),
            spec: Some(LeaseSpec {
                holder_identity: Some(name.into()),
                lease_duration_seconds: Some(40),
                ..Default::default()
            }),
        };
        leases.create(&PostParams::default(), &lease).await?;
        self.renew_lease(name).await
    }

    async fn renew_lease(&self, name: &str) -> Result<()> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        renew(&leases, &self.clock, name).await?;
        Ok(())
    }

    /// Posts the node's Ready condition, as its agent does.
    async fn post_ready(&self, name: &str, status: &str) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let now = self.clock.now_rfc3339();
        let patch = json!({ "status": { "conditions": [{
            "type": "Ready", "status": status, "reason": "KubeletReady", "message": "kubelet is posting ready status",
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        }]}});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Renews the node's lease every 10 s until the returned token is cancelled.
    fn heartbeat(&self, name: &str) -> CancellationToken {
        let stop = CancellationToken::new();
        let (token, name) = (stop.clone(), name.to_string());
        let (client, clock) = (self.client.clone(), self.clock.clone());
        tokio::spawn(async move {
            let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                    _ = token.cancelled() => return,
                }
                let _ = renew(&leases, &clock, &name).await;
            }
        });
        stop
    }

    /// A running, ready pod bound to `node`.
    async fn add_pod(&self, name: &str, node: &str, tolerations: Vec<Toleration>) -> Result<()> {
        let pods: Api<Pod> = Api::default_namespaced(self.client.clone());
        let mut pod = pod(name);
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = Some(node.into());
            spec.tolerations = Some(tolerations);
        }
        pods.create(&PostParams::default(), &pod).await?;
        let patch = json!({ "status": { "phase": "Running", "podIP": "10.244.0.5",
            "conditions": [{ "type": "Ready", "status": "True" }] } });
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }
}

/// Polls `check` once a (virtual) second, for up to ten virtual minutes.
async fn eventually<F, Fut>(what: &str, check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    eventually_every(
        what,
        Duration::from_secs(600),
        Duration::from_secs(1),
        check,
    )
    .await
}

/// The NoExecute and NoSchedule taints with this key, as [`taint_keys`] lists them.
fn taints(key: &str) -> Vec<(String, String)> {
    vec![
        (key.to_string(), "NoExecute".to_string()),
        (key.to_string(), "NoSchedule".to_string()),
    ]
}

fn ready_status(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

fn taint_keys(node: &Node) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = node
        .spec
        .iter()
        .flat_map(|s| s.taints.iter().flatten())
        .map(|t: &Taint| (t.key.clone(), t.effect.clone()))
        .collect();
    keys.sort();
    keys
}

fn pod_ready(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

fn toleration(seconds: Option<i64>) -> Toleration {
    Toleration {
        key: Some(UNREACHABLE_TAINT.into()),
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        toleration_seconds: seconds,
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_node_whose_lease_stops_goes_unknown_and_its_pods_are_evicted_after_their_tolerations()
-> Result<()> {
    let c = start().await?;
    let nodes: Api<Node> = Api::all(c.client.clone());
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    c.add_node("n1").await?;
    let heartbeat = c.heartbeat("n1");
    c.add_pod("default-toleration", "n1", vec![]).await?;
    c.add_pod("short-toleration", "n1", vec![toleration(Some(30))])
        .await?;
    c.add_pod("tolerates-forever", "n1", vec![toleration(None)])
        .await?;

    // A healthy node stays Ready well past the grace period.
    tokio::time::sleep(Duration::from_secs(120)).await;
    let node = nodes.get("n1").await?;
    assert_eq!(ready_status(&node).as_deref(), Some("True"));
    assert!(taint_keys(&node).is_empty());

    heartbeat.cancel();
    let stopped = c.clock.now();
    eventually("the node is Unknown and tainted unreachable", || async {
        let node = nodes.get("n1").await?;
        Ok(ready_status(&node).as_deref() == Some("Unknown")
            && taint_keys(&node) == taints(UNREACHABLE_TAINT))
    })
    .await?;
    let silent = (c.clock.now() - stopped).num_seconds();
    assert!(
        (30..=60).contains(&silent),
        "marked Unknown {silent}s after the last renewal"
    );
    let node = nodes.get("n1").await?;
    let ready = node
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .find(|c| c.type_ == "Ready")
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    eventually("the pods are marked not ready", || async {
        Ok(pod_ready(&pods.get("default-toleration").await?).as_deref() == Some("False"))
    })
    .await?;

    // The short toleration runs out first; the pod is evicted and, its node being
    // unreachable, force-deleted.
    eventually("the short-toleration pod is gone", || async {
        Ok(pods.get_opt("short-toleration").await?.is_none())
    })
    .await?;
    let tainted_for = (c.clock.now() - stopped).num_seconds();
    assert!(
        tainted_for < 120,
        "evicted {tainted_for}s after the lease stopped"
    );
    assert!(pods.get_opt("default-toleration").await?.is_some());

    eventually("the default-toleration pod is gone", || async {
        Ok(pods.get_opt("default-toleration").await?.is_none())
    })
    .await?;
    let tainted_for = (c.clock.now() - stopped).num_seconds();
    assert!(
        (300..=400).contains(&tainted_for),
        "evicted {tainted_for}s after the lease stopped"
    );
    assert!(
        pods.get_opt("tolerates-forever").await?.is_some(),
        "a toleration without seconds is forever"
    );
    c.stop().await
}

#[tokio::test(start_paused = true)]
async fn a_node_reporting_not_ready_is_tainted_not_ready_until_it_recovers() -> Result<()> {
    let c = start().await?;
    let nodes: Api<Node> = Api::all(c.client.clone());
    c.add_node("n1").await?;
    let _heartbeat = c.heartbeat("n1");
    c.post_ready("n1", "False").await?;
    eventually("the node is tainted not-ready", || async {
        Ok(taint_keys(&nodes.get("n1").await?) == taints(NOT_READY_TAINT))
    })
    .await?;
    c.post_ready("n1", "True").await?;
    eventually("the taints are removed", || async {
        Ok(taint_keys(&nodes.get("n1").await?).is_empty())
    })
    .await?;
    c.stop().await
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_node_that_comes_back_loses_its_taints() -> Result<()> {
    let c = start().await?;
    let nodes: Api<Node> = Api::all(c.client.clone());
    c.add_node("n1").await?;
    eventually("the silent node is Unknown", || async {
        Ok(ready_status(&nodes.get("n1").await?).as_deref() == Some("Unknown"))
    })
    .await?;
    // The agent returns: it renews its lease and posts Ready again.
    c.renew_lease("n1").await?;
    let _heartbeat = c.heartbeat("n1");
    c.post_ready("n1", "True").await?;
    eventually("the taints are removed", || async {
        Ok(taint_keys(&nodes.get("n1").await?).is_empty())
    })
    .await?;
    // And it stays healthy.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(
        ready_status(&nodes.get("n1").await?).as_deref(),
        Some("True")
    );
    c.stop().await
}

#[tokio::test(start_paused = true)]
async fn pods_bound_to_a_missing_node_are_force_deleted() -> Result<()> {
    let c = start().await?;
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    c.add_pod("orphan", "ghost", vec![]).await?;
    eventually("the orphaned pod is deleted", || async {
        Ok(pods.get_opt("orphan").await?.is_none())
    })
    .await?;
    c.stop().await
}
