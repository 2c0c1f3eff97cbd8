//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod served;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

/// Polls `check` every 25 ms until it holds, or panics naming `what` after `within`.
pub async fn until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A Deployment of `replicas` pods labelled `app=<name>` running `image`.
pub fn deployment(name: &str, replicas: i32, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "main", "image": image}]}}}
    }))
    .expect("deployment")
}

/// Waits until the Deployment `name` reports `want` available replicas.
pub async fn wait_available(
    deploys: &kube::Api<Deployment>,
    name: &str,
    want: i32,
    within: Duration,
) {
    until(&format!("{name}: {want} available"), within, || {
        let d = deploys.clone();
        async move {
            d.get(name)
                .await
                .ok()
                .and_then(|d| d.status)
                .and_then(|s| s.available_replicas)
                == Some(want)
        }
    })
    .await;
}

/// The pods labelled `app=<app>`, followed through one list and the watch from its revision.
pub struct PodView {
    /// Pods by name, as of the last event applied.
    pub pods: std::collections::BTreeMap<String, k8s_openapi::api::core::v1::Pod>,
    stream: std::pin::Pin<
        Box<
            dyn futures::Stream<
                    Item = kube::Result<kube::api::WatchEvent<k8s_openapi::api::core::v1::Pod>>,
                > + Send,
        >,
    >,
}

impl PodView {
    /// Lists the pods of `app` and starts watching from that list's revision.
    pub async fn start(api: &kube::Api<k8s_openapi::api::core::v1::Pod>, app: &str) -> PodView {
        let selector = format!("app={app}");
        let list = api
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .expect("list pods");
        let rv = list
            .metadata
            .resource_version
            .clone()
            .expect("list revision");
        let stream = api
            .watch(&kube::api::WatchParams::default().labels(&selector), &rv)
            .await
            .expect("watch pods");
        let pods = list
            .items
            .into_iter()
            .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
            .collect();
        PodView {
            pods,
            stream: Box::pin(stream),
        }
    }

    /// Waits (up to 30 s) for the next watch event and applies it.
    pub async fn next(&mut self) {
        use futures::StreamExt;
        let ev = tokio::time::timeout(Duration::from_secs(30), self.stream.next())
            .await
            .expect("a watch event within 30 s")
            .expect("the watch stays open")
            .expect("a valid event");
        match ev {
            kube::api::WatchEvent::Added(p) | kube::api::WatchEvent::Modified(p) => {
                self.pods
                    .insert(p.metadata.name.clone().unwrap_or_default(), p);
            }
            kube::api::WatchEvent::Deleted(p) => {
                self.pods
                    .remove(&p.metadata.name.clone().unwrap_or_default());
            }
            _ => {}
        }
    }
}
