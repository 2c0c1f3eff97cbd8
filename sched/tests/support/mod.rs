//! The scheduling loop against the in-process API server, for the loop's test files: Node
//! objects are created by the tests (no node agent runs), pods are created through the API,
//! and the scheduler binds them.
#![allow(dead_code)] // each test file uses some of the helpers

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kybernetes_sched::{Profile, Scheduler, SchedulerConfig, SchedulerLoop};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const TIMEOUT: Duration = Duration::from_secs(20);

pub struct TestCluster {
    _api: kybernetes_apiserver::ApiServer,
    pub client: kube::Client,
    shutdown: CancellationToken,
    scheduler: tokio::task::JoinHandle<()>,
}

impl TestCluster {
    pub async fn start(scheduler: impl Scheduler + 'static) -> anyhow::Result<TestCluster> {
        Self::start_with(scheduler, SchedulerConfig::default()).await
    }

    pub async fn start_with(
        scheduler: impl Scheduler + 'static,
        config: SchedulerConfig,
    ) -> anyhow::Result<TestCluster> {
        let profile = Profile::new(config.scheduler_name.clone(), scheduler);
        Self::start_profiles(vec![profile], config).await
    }

    /// Starts the loop serving `profiles`.
    pub async fn start_profiles(
        profiles: Vec<Profile>,
        config: SchedulerConfig,
    ) -> anyhow::Result<TestCluster> {
        let store = Arc::new(kybernetes_store::MemoryStore::default());
        let api =
            kybernetes_apiserver::ApiServer::new(store, kybernetes_core::Clock::new()).await?;
        let client = kube::Client::new(api.router(), "default");
        let shutdown = CancellationToken::new();
        let scheduler =
            SchedulerLoop::spawn_profiles(client.clone(), profiles, config, shutdown.clone());
        Ok(TestCluster {
            _api: api,
            client,
            shutdown,
            scheduler,
        })
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(TIMEOUT, self.scheduler)
            .await
            .context("scheduler did not stop")??;
        Ok(())
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Creates a Ready node with `cpu` and `memory` allocatable, room for 110 pods, the
    /// `kubernetes.io/hostname` label plus `labels`, and `spec`.
    pub async fn add_node(
        &self,
        name: &str,
        cpu: &str,
        labels: Value,
        spec: Value,
    ) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut all_labels = json!({"kubernetes.io/hostname": name});
        if let (Some(all), Some(extra)) = (all_labels.as_object_mut(), labels.as_object()) {
            all.extend(extra.clone());
        }
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": all_labels},
            "spec": spec,
        }))?;
        nodes.create(&PostParams::default(), &node).await?;
        let resources = json!({"cpu": cpu, "memory": "16Gi", "pods": "110"});
        let status = json!({"status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        }});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
        Ok(())
    }

    /// Creates a pod requesting `cpu`, with `spec` merged into its spec.
    pub async fn add_pod(&self, name: &str, cpu: &str, spec: Value) -> anyhow::Result<()> {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]},
        });
        if let (Some(s), Some(extra)) = (pod["spec"].as_object_mut(), spec.as_object()) {
            s.extend(extra.clone());
        }
        self.pods()
            .create(&PostParams::default(), &serde_json::from_value(pod)?)
            .await?;
        Ok(())
    }

    /// Waits until `check` returns `Some`, polling.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, mut check: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<Option<T>>>,
    {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(v) = check().await? {
                return Ok(v);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("timed out waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the pod is bound and returns its node.
    pub async fn node_of(&self, name: &str) -> anyhow::Result<String> {
        let pods = self.pods();
        self.wait_for(&format!("pod {name} to be bound"), || async {
            let pod = pods.get(name).await?;
            Ok(pod.spec.and_then(|s| s.node_name).filter(|n| !n.is_empty()))
        })
        .await
    }

    /// Waits until the pod carries `PodScheduled=False` and returns (reason, message).
    pub async fn unschedulable_condition(&self, name: &str) -> anyhow::Result<(String, String)> {
        let pods = self.pods();
        self.wait_for(
            &format!("pod {name} to be marked unschedulable"),
            || async {
                let pod = pods.get(name).await?;
                let cond = pod
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|c| c.type_ == "PodScheduled" && c.status == "False");
                Ok(cond.map(|c| (c.reason.unwrap_or_default(), c.message.unwrap_or_default())))
            },
        )
        .await
    }

    /// Waits for an event with `reason` about the pod and returns (type, message).
    pub async fn event(&self, pod: &str, reason: &str) -> anyhow::Result<(String, String)> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        self.wait_for(&format!("event {reason} for {pod}"), || async {
            let list = events.list(&ListParams::default()).await?;
            Ok(list
                .items
                .into_iter()
                .find(|e| {
                    e.involved_object.name.as_deref() == Some(pod)
                        && e.reason.as_deref() == Some(reason)
                })
                .map(|e| (e.type_.unwrap_or_default(), e.message.unwrap_or_default())))
        })
        .await
    }

    pub async fn assert_stays_pending(&self, name: &str) -> anyhow::Result<()> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pod = self.pods().get(name).await?;
        assert_eq!(
            pod.spec.and_then(|s| s.node_name),
            None,
            "{name} should not be bound"
        );
        Ok(())
    }
}
