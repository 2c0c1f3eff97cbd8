//! The service sync loop against the in-process API server: DNS follows Services and the
//! readiness of their Endpoints.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kybernetes_net::{LocalNetwork, Network, spawn_service_sync};
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(10);

async fn client() -> anyhow::Result<kube::Client> {
    let store = Arc::new(kybernetes_store::MemoryStore::default());
    let api = kybernetes_apiserver::ApiServer::new(store, kybernetes_core::Clock::new()).await?;
    Ok(kube::Client::new(api.router(), "default"))
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some("default".into()),
        ..Default::default()
    }
}

fn service(name: &str, cluster_ip: &str) -> Service {
    Service {
        metadata: meta(name),
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.into()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn address(ip: &str, hostname: &str) -> EndpointAddress {
    EndpointAddress {
        ip: ip.into(),
        hostname: Some(hostname.into()),
        ..Default::default()
    }
}

fn endpoints(
    name: &str,
    ready: Vec<EndpointAddress>,
    not_ready: Vec<EndpointAddress>,
) -> Endpoints {
    Endpoints {
        metadata: meta(name),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(ready),
            not_ready_addresses: Some(not_ready),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: 8080,
                ..Default::default()
            }]),
        }]),
    }
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

/// Waits until `name` asked from `default` resolves to `want`.
async fn until_resolves(net: &LocalNetwork, name: &str, want: Vec<IpAddr>) {
    let waited = tokio::time::timeout(TIMEOUT, async {
        loop {
            if net.resolve(name, "default") == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "{name} resolves to {:?}, want {want:?}",
        net.resolve(name, "default")
    );
}

#[tokio::test]
async fn dns_follows_services_and_endpoint_readiness() -> anyhow::Result<()> {
    let client = client().await?;
    let net = Arc::new(LocalNetwork::default());
    let shutdown = CancellationToken::new();
    let task = spawn_service_sync(client.clone(), net.clone(), shutdown.clone());

    let services: Api<Service> = Api::default_namespaced(client.clone());
    let eps: Api<Endpoints> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();

    // A ClusterIP service resolves to its ClusterIP, with or without endpoints.
    services.create(&pp, &service("web", "10.96.0.50")).await?;
    until_resolves(&net, "web", ips(&["10.96.0.50"])).await;
    until_resolves(&net, "web.default.svc.cluster.local", ips(&["10.96.0.50"])).await;

    // A headless service resolves to its ready endpoints only.
    services.create(&pp, &service("db", "None")).await?;
    let ready = vec![address("10.244.0.2", "db-0"), address("10.244.1.2", "db-1")];
    eps.create(
        &pp,
        &endpoints("db", ready, vec![address("10.244.2.2", "db-2")]),
    )
    .await?;
    until_resolves(&net, "db", ips(&["10.244.0.2", "10.244.1.2"])).await;
    until_resolves(&net, "db-1.db", ips(&["10.244.1.2"])).await;
    assert!(
        net.resolve("db-2.db", "default").is_empty(),
        "not-ready addresses are not served"
    );
    let entry = net.service("default", "db").expect("db is synced");
    // The named port's number comes from the Endpoints, per endpoint.
    let served: Vec<u16> = entry
        .endpoints_for(&entry.ports[0])
        .map(|(_, port)| port)
        .collect();
    assert_eq!(served, [8080, 8080]);

    // db-1 fails its readiness probe: it moves to notReadyAddresses and leaves DNS.
    let mut current = eps.get("db").await?;
    current.subsets = endpoints(
        "db",
        vec![address("10.244.0.2", "db-0")],
        vec![address("10.244.1.2", "db-1")],
    )
    .subsets;
    eps.replace("db", &pp, &current).await?;
    until_resolves(&net, "db", ips(&["10.244.0.2"])).await;
    until_resolves(&net, "db-1.db", vec![]).await;

    // Endpoints deleted: the headless service has nothing left to answer.
    eps.delete("db", &DeleteParams::default()).await?;
    until_resolves(&net, "db", vec![]).await;
    assert!(
        net.service("default", "db").is_some(),
        "the service itself is still synced"
    );

    // Service deleted: gone from the catalog.
    services.delete("web", &DeleteParams::default()).await?;
    until_resolves(&net, "web", vec![]).await;
    assert_eq!(net.service("default", "web"), None);

    shutdown.cancel();
    tokio::time::timeout(TIMEOUT, task).await??;
    Ok(())
}

#[tokio::test]
async fn services_created_before_the_sync_starts_are_served() -> anyhow::Result<()> {
    let client = client().await?;
    let services: Api<Service> = Api::default_namespaced(client.clone());
    services
        .create(&PostParams::default(), &service("early", "10.96.0.60"))
        .await?;

    let net = Arc::new(LocalNetwork::default());
    let shutdown = CancellationToken::new();
    let task = spawn_service_sync(client, net.clone(), shutdown.clone());
    until_resolves(&net, "early", ips(&["10.96.0.60"])).await;

    shutdown.cancel();
    tokio::time::timeout(TIMEOUT, task).await??;
    Ok(())
}
