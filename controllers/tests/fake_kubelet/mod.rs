//! Test support for the workload controllers: an in-process cluster with the ReplicaSet and
//! Deployment controllers, and a fake kubelet that stands in for the node agent.
//!
//! The fake kubelet watches the pods of one namespace and:
//! - optionally binds each pod to a node (so deletion becomes graceful, as for a real node);
//! - patches the status of each live pod to phase Running with Ready=True, or Ready=False when
//!   one of its images was marked not ready with [`FakeKubelet::set_not_ready_image`];
//! - finishes the deletion of terminating bound pods with a grace period of 0, after a short
//!   delay, as a node agent does once the containers have stopped.

#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use kybernetes_core::Clock;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// An API server with the ReplicaSet and Deployment controllers and a fake kubelet.
pub struct TestCluster {
    pub client: Client,
    pub clock: Clock,
    pub kubelet: FakeKubelet,
    shutdown: CancellationToken,
    handles: Vec<JoinHandle<()>>,
    _api: kybernetes_apiserver::ApiServer,
}

impl TestCluster {
    /// Starts everything; the fake kubelet handles the `default` namespace and binds pods to
    /// `bind_to` if given.
    pub async fn start(bind_to: Option<&str>) -> anyhow::Result<TestCluster> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let (api, client, clock) = crate::common::api_server().await?;
        let shutdown = CancellationToken::new();
        let informers =
            kybernetes_controllers::InformerFactory::new(client.clone(), shutdown.clone());
        let mut handles = vec![
            kybernetes_controllers::spawn_replicaset(
                client.clone(),
                clock.clone(),
                &informers,
                shutdown.clone(),
            ),
            kybernetes_controllers::spawn_deployment(
                client.clone(),
                clock.clone(),
                &informers,
                shutdown.clone(),
            ),
        ];
        handles.extend(informers.take_tasks());
        let kubelet = FakeKubelet::start(
            client.clone(),
            clock.clone(),
            "default",
            bind_to,
            shutdown.clone(),
        );
        Ok(TestCluster {
            client,
            clock,
            kubelet,
            shutdown,
            handles,
            _api: api,
        })
    }

    /// Stops the controllers and the kubelet, and waits for them.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for h in self.handles {
            let _ = h.await;
        }
        let _ = self.kubelet.handle.await;
    }
}

/// The fake node agent.
pub struct FakeKubelet {
    not_ready_images: Arc<Mutex<HashSet<String>>>,
    handle: JoinHandle<()>,
}

impl FakeKubelet {
    fn start(
        client: Client,
        clock: Clock,
        namespace: &str,
        bind_to: Option<&str>,
        shutdown: CancellationToken,
    ) -> FakeKubelet {
        let not_ready_images = Arc::new(Mutex::new(HashSet::new()));
        let api: Api<Pod> = Api::namespaced(client, namespace);
        let node = bind_to.map(str::to_string);
        let images = not_ready_images.clone();
        let handle = tokio::spawn(async move {
            let mut events = watcher(api.clone(), watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            loop {
                let pod = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    next = events.next() => match next {
                        Some(Ok(pod)) => pod,
                        Some(Err(_)) => continue,
                        None => return,
                    },
                };
                sync_pod(&api, &clock, node.as_deref(), &images, pod).await;
            }
        });
        FakeKubelet {
            not_ready_images,
            handle,
        }
    }

    /// Pods running this image report Ready=False from now on.
    pub fn set_not_ready_image(&self, image: &str) {
        self.not_ready_images
            .lock()
            .unwrap()
            .insert(image.to_string());
    }
}

async fn sync_pod(
    api: &Api<Pod>,
    clock: &Clock,
    node: Option<&str>,
    not_ready: &Mutex<HashSet<String>>,
    pod: Pod,
) {
    let name = pod.name_any();
    let bound = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    if pod.metadata.deletion_timestamp.is_some() {
        if bound {
            // The containers stop, then the pod object goes.
            let api = api.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = api
                    .delete(
                        &name,
                        &DeleteParams {
                            grace_period_seconds: Some(0),
                            ..Default::default()
                        },
                    )
                    .await;
            });
        }
        return;
    }
    if let Some(node) = node
        && !bound
    {
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            target: ObjectReference {
                kind: Some("Node".into()),
                name: Some(node.into()),
                ..Default::default()
            },
        };
        let _ = api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await;
        return;
    }
    let images: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .filter_map(|c| c.image.clone())
        .collect();
    let ready = {
        let not_ready = not_ready.lock().unwrap();
        !images.iter().any(|i| not_ready.contains(i))
    };
    let want = if ready { "True" } else { "False" };
    let status = pod.status.clone().unwrap_or_default();
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return;
    }
    let current = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str());
    if status.phase.as_deref() == Some("Running") && current == Some(want) {
        return;
    }
    let now = clock.now_rfc3339();
    let mut conditions = vec![json!({"type": "Ready", "status": want, "lastTransitionTime": now})];
    if bound {
        conditions
            .push(json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": now}));
    }
    let patch = json!({"status": {"phase": "Running", "conditions": conditions}});
    let _ = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
}
