//! Quickstart: start an in-process cluster, create a namespace, a ConfigMap and a Deployment
//! through the ordinary kube-rs `Api`, and print them back.
//!
//! Run with `cargo run --example quickstart`.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, PostParams};
use kybernetes::Cluster;

const MANIFEST: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels: {app: web}
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let cluster = Cluster::builder().start().await?;
    println!("cluster started in {:?}", started.elapsed());

    let namespaces: Api<Namespace> = Api::all(cluster.client());
    let mut ns = Namespace::default();
    ns.metadata.name = Some("demo".into());
    namespaces.create(&PostParams::default(), &ns).await?;

    let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client(), "demo");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("settings".into());
    cm.data = Some([("greeting".to_string(), "hello".to_string())].into());
    configmaps.create(&PostParams::default(), &cm).await?;

    // Manifests as YAML work too, as with `kubectl apply -f`.
    cluster.apply_yaml(MANIFEST).await?;

    println!("\nNAMESPACES");
    for ns in namespaces.list(&ListParams::default()).await? {
        let phase = ns.status.and_then(|s| s.phase).unwrap_or_default();
        println!("  {:<20} {phase}", ns.metadata.name.unwrap_or_default());
    }
    println!("\nCONFIGMAPS (demo)");
    for cm in configmaps.list(&ListParams::default()).await? {
        println!("  {:<20} data={:?}", cm.metadata.name.unwrap_or_default(), cm.data.unwrap_or_default());
    }
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), "demo");
    println!("\nDEPLOYMENTS (demo)");
    for d in deployments.list(&ListParams::default()).await? {
        let spec = d.spec.unwrap_or_default();
        let image = spec.template.spec.and_then(|s| s.containers.first().and_then(|c| c.image.clone())).unwrap_or_default();
        println!(
            "  {:<20} replicas={} image={image} generation={} resourceVersion={}",
            d.metadata.name.unwrap_or_default(),
            spec.replicas.unwrap_or(1),
            d.metadata.generation.unwrap_or(0),
            d.metadata.resource_version.unwrap_or_default(),
        );
    }
    cluster.shutdown().await?;
    Ok(())
}
