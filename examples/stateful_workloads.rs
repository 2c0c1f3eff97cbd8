//! A StatefulSet and a ReplicationController on an in-process cluster: `web-0` starts before
//! `web-1`, each with its own claim, scale-down goes from the highest ordinal and keeps the
//! claims; the ReplicationController scales through the `scale` subresource.
//!
//! Run with `cargo run --example stateful_workloads`.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ReplicationController};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kybernetes::Cluster;
use serde_json::json;

const MANIFESTS: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  replicas: 2
  serviceName: nginx
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        volumeMounts: [{name: www, mountPath: /usr/share/nginx/html}]
  volumeClaimTemplates:
  - metadata: {name: www}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: ReplicationController
metadata: {name: wordpress-db}
spec:
  replicas: 2
  selector: {app: wordpress-db}
  template:
    metadata: {labels: {app: wordpress-db}}
    spec:
      containers: [{name: mysql, image: mysql:8}]
"#;

async fn names(pods: &Api<Pod>, selector: &str) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = pods
        .list(&ListParams::default().labels(selector))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    Ok(names)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cluster = Cluster::builder().nodes(2).start().await?;
    cluster.apply_yaml(MANIFESTS).await?;
    let sets: Api<StatefulSet> = Api::default_namespaced(cluster.client());
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(cluster.client());
    let ready = |want: i32| {
        let sets = sets.clone();
        async move {
            loop {
                let st = sets.get("web").await?.status.unwrap_or_default();
                if st.replicas == want && st.ready_replicas.unwrap_or(0) == want {
                    return anyhow::Ok(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    ready(2).await?;
    let web0 = pods.get("web-0").await?;
    let web1 = pods.get("web-1").await?;
    println!(
        "web-0 created {:?}, web-1 created {:?}; web-1's hostname {:?}.{:?}",
        web0.metadata.creation_timestamp.map(|t| t.0.to_string()),
        web1.metadata.creation_timestamp.map(|t| t.0.to_string()),
        web1.spec.as_ref().and_then(|s| s.hostname.clone()),
        web1.spec.as_ref().and_then(|s| s.subdomain.clone()),
    );
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await?;
    ready(1).await?;
    let kept: Vec<String> = claims
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    println!(
        "after scaling to 1: pods {:?}, claims {kept:?}",
        names(&pods, "app=nginx").await?
    );

    let rcs: Api<ReplicationController> = Api::default_namespaced(cluster.client());
    rcs.patch_scale(
        "wordpress-db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await?;
    for _ in 0..100 {
        if names(&pods, "app=wordpress-db").await?.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "wordpress-db after `scale rc --replicas=1`: {:?}",
        names(&pods, "app=wordpress-db").await?
    );
    cluster.shutdown().await?;
    Ok(())
}
