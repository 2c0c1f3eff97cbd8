//! How long 100 node agents on fake runtimes take to run 1,000 pods that are already bound
//! (the node-agent share of benchmark P2). Prints the figure and its conditions.
//!
//! `cargo bench -p kybernetes-node --bench pods_to_running`

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use kybernetes_core::Clock;
use kybernetes_net::LocalNetwork;
use kybernetes_node::{NodeAgent, NodeAgentConfig, ServiceLister};
use kybernetes_runtime::FakeRuntime;
use kybernetes_store::MemoryStore;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const NODES: usize = 100;
const PODS: usize = 1000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let clock = Clock::new();
    let api = kybernetes_apiserver::ApiServer::new(Arc::new(MemoryStore::default()), clock.clone())
        .await?;
    let client = kube::Client::new(api.router(), "default");
    let fake = FakeRuntime::new(clock.clone());
    fake.preload_image("nginx:1.27");
    let network = Arc::new(LocalNetwork::default());
    let shutdown = CancellationToken::new();
    // One Service watch for every agent, as a `Cluster` shares it.
    let services = ServiceLister::new(client.clone());
    let t_nodes = Instant::now();
    let mut handles = Vec::new();
    for i in 0..NODES {
        let config = NodeAgentConfig::new(format!("node-{i}")).clock(clock.clone());
        handles.push(
            NodeAgent::new(
                config,
                client.clone(),
                Arc::new(fake.clone()),
                network.clone(),
            )
            .service_lister(services.clone())
            .spawn(shutdown.clone()),
        );
    }
    let nodes: Api<Node> = Api::all(client.clone());
    while nodes.list(&Default::default()).await?.items.len() < NODES {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let nodes_took = t_nodes.elapsed();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut running = 0usize;
    let mut stream = watcher(pods.clone(), watcher::Config::default()).boxed();
    let t0 = Instant::now();
    let creator = {
        let pods = pods.clone();
        tokio::spawn(async move {
            for i in 0..PODS {
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": { "name": format!("web-{i}") },
                    "spec": { "nodeName": format!("node-{}", i % NODES), "containers": [{ "name": "web", "image": "nginx:1.27" }] }
                }))
                .expect("pod");
                pods.create(&PostParams::default(), &pod)
                    .await
                    .expect("create");
            }
            t0.elapsed()
        })
    };
    let mut seen = std::collections::HashSet::new();
    let mut updates = 0usize;
    while running < PODS {
        match stream.next().await {
            Some(Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) => {
                updates += 1;
                if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    && seen.insert(p.metadata.name.clone())
                {
                    running += 1;
                }
            }
            Some(_) => {}
            None => break,
        }
    }
    let took = t0.elapsed();
    let created_in = creator.await?;
    println!(
        "P2 (node share): {PODS} bound pods on {NODES} fake nodes reached Running in {took:?} \
         (creating them took {created_in:?}; {updates} pod watch events; nodes registered in {nodes_took:?}); \
         target <= 1 s for the whole P2 path"
    );
    shutdown.cancel();
    for h in handles {
        let _ = h.await;
    }
    services.stop().await;
    Ok(())
}
