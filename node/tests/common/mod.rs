//! A test harness: the in-process API server, a FakeRuntime (or another runtime), a
//! LocalNetwork and node agents.
#![allow(dead_code)]

pub mod backend;
// The busybox image: on its own, or through the containerd support, which includes it.
#[cfg(not(feature = "containerd"))]
#[path = "../../../runtime/tests/support/busybox.rs"]
pub mod busybox_support;
#[cfg(feature = "containerd")]
pub use containerd_support as busybox_support;
#[cfg(feature = "containerd")]
#[path = "../../../runtime/tests/support/containerd.rs"]
pub mod containerd_support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::runtime::wait::{Condition, await_condition};
use kybernetes_core::Clock;
use kybernetes_net::LocalNetwork;
use kybernetes_node::{BackoffConfig, NodeAgent, NodeAgentConfig, ServiceLister};
use kybernetes_runtime::{FakeRuntime, Runtime};
use kybernetes_store::MemoryStore;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct Harness {
    pub api: kybernetes_apiserver::ApiServer,
    pub client: kube::Client,
    pub clock: Clock,
    pub fake: FakeRuntime,
    /// What the agents drive: `fake` unless the harness was made with another runtime.
    pub runtime: Arc<dyn Runtime>,
    pub network: Arc<LocalNetwork>,
    pub agents: Vec<(CancellationToken, JoinHandle<()>)>,
    /// What the runtime needs kept alive as long as the harness (a containerd daemon).
    pub keep: Vec<Box<dyn std::any::Any + Send>>,
}

pub async fn harness() -> Harness {
    harness_with(|_, fake| Arc::new(fake.clone())).await
}

/// A harness whose agents drive the runtime `make` builds from the cluster clock and the
/// harness's FakeRuntime (return a clone of that to drive the fake).
pub async fn harness_with(make: impl FnOnce(Clock, &FakeRuntime) -> Arc<dyn Runtime>) -> Harness {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let clock = Clock::new();
    let store = Arc::new(MemoryStore::default());
    let api = kybernetes_apiserver::ApiServer::new(store, clock.clone())
        .await
        .expect("api server");
    let client = kube::Client::new(api.router(), "default");
    let fake = FakeRuntime::new(clock.clone());
    let runtime = make(clock.clone(), &fake);
    let network = Arc::new(LocalNetwork::default());
    Harness {
        api,
        client,
        clock,
        fake,
        runtime,
        network,
        agents: Vec::new(),
        keep: Vec::new(),
    }
}

impl Harness {
    pub fn config(&self, name: &str) -> NodeAgentConfig {
        NodeAgentConfig::new(name)
            .clock(self.clock.clone())
            .backoff(BackoffConfig::default())
    }

    /// Starts a node agent; returns its index in `agents`.
    pub fn start_agent(&mut self, config: NodeAgentConfig) -> usize {
        let agent = self.agent(config);
        self.spawn_agent(agent)
    }

    /// Starts a node agent reading Services from `services`; returns its index in `agents`.
    pub fn start_agent_sharing(
        &mut self,
        config: NodeAgentConfig,
        services: &ServiceLister,
    ) -> usize {
        let agent = self.agent(config).service_lister(services.clone());
        self.spawn_agent(agent)
    }

    fn agent(&self, config: NodeAgentConfig) -> NodeAgent {
        NodeAgent::new(
            config,
            self.client.clone(),
            self.runtime.clone(),
            self.network.clone(),
        )
    }

    fn spawn_agent(&mut self, agent: NodeAgent) -> usize {
        let token = CancellationToken::new();
        let handle = agent.spawn(token.clone());
        self.agents.push((token, handle));
        self.agents.len() - 1
    }

    /// Stops agent `i` and waits for it.
    pub async fn stop_agent(&mut self, i: usize) {
        let (token, handle) = &mut self.agents[i];
        token.cancel();
        tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("agent stops promptly")
            .expect("agent task");
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    pub async fn create_pod(&self, pod: Value) -> Pod {
        let pod: Pod = serde_json::from_value(pod).expect("pod json");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("create pod")
    }

    /// Waits (up to `secs` of tokio time) until `cond` holds for pod `name`.
    pub async fn wait_pod(&self, name: &str, secs: u64, cond: impl Condition<Pod>) -> Pod {
        let fut = await_condition(self.pods(), name, cond);
        match tokio::time::timeout(Duration::from_secs(secs), fut).await {
            Ok(Ok(Some(p))) => p,
            Ok(Ok(None)) => panic!("pod {name} is gone"),
            Ok(Err(e)) => panic!("waiting for pod {name}: {e}"),
            Err(_) => {
                let now = self.pods().get_opt(name).await.ok().flatten();
                panic!(
                    "timed out waiting for pod {name}; last status: {:#?}",
                    now.and_then(|p| p.status)
                )
            }
        }
    }

    /// Waits until pod `name` is gone from the API.
    pub async fn wait_pod_gone(&self, name: &str, secs: u64) {
        let gone = async {
            loop {
                if self.pods().get_opt(name).await.expect("get").is_none() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            _ = gone => {}
            _ = tokio::time::sleep(Duration::from_secs(secs)) => panic!("pod {name} was not deleted"),
        }
    }

    pub async fn events_for(&self, pod: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let list = events
            .list(&ListParams::default())
            .await
            .expect("list events");
        list.items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(pod))
            .collect()
    }

    /// Waits until an event with `reason` exists for `pod`.
    pub async fn wait_event(&self, pod: &str, reason: &str, secs: u64) -> Event {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(e) = self
                .events_for(pod)
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(reason))
            {
                return e;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {reason} event for {pod}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Creates ConfigMap `name` in `default` with `data`.
pub async fn config_map(h: &Harness, name: &str, data: &[(&str, &str)]) {
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(h.client.clone(), "default")
        .create(&PostParams::default(), &cm)
        .await
        .expect("create configmap");
}

/// Creates Secret `name` in `default` with `data`.
pub async fn secret(h: &Harness, name: &str, data: &[(&str, &str)]) {
    let s = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(h.client.clone(), "default")
        .create(&PostParams::default(), &s)
        .await
        .expect("create secret");
}

/// A pod bound to `node` with one container per `(name, image)`.
pub fn pod(name: &str, node: &str, containers: &[(&str, &str)]) -> Value {
    let containers: Vec<Value> = containers
        .iter()
        .map(|(n, i)| json!({ "name": n, "image": i }))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": "default", "labels": { "app": name } },
        "spec": { "nodeName": node, "containers": containers }
    })
}

pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn condition(p: &Pod, type_: &str) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

pub fn container_status<'a>(
    p: &'a Pod,
    name: &str,
) -> Option<&'a k8s_openapi::api::core::v1::ContainerStatus> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
}

pub fn waiting_reason(p: &Pod, name: &str) -> Option<String> {
    container_status(p, name)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

pub fn restart_count(p: &Pod, name: &str) -> i32 {
    container_status(p, name)
        .map(|c| c.restart_count)
        .unwrap_or(-1)
}

pub fn is_phase(want: &'static str) -> impl Condition<Pod> {
    move |p: Option<&Pod>| p.is_some_and(|p| phase(p) == want)
}

pub fn is_ready(want: &'static str) -> impl Condition<Pod> {
    move |p: Option<&Pod>| p.is_some_and(|p| condition(p, "Ready").as_deref() == Some(want))
}
