//! Quickstart: a 3-node in-process cluster runs a Deployment through the ordinary kube-rs
//! `Api`: scale it, roll out a new image, roll back, and lose a node.
//!
//! Run with `cargo run --example quickstart`.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kybernetes::controllers::NodeLifecycleConfig;
use kybernetes::node::NodeAgentConfig;
use kybernetes::{Cluster, ControlPlaneConfig};
use serde_json::json;

const MANIFEST: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
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
        env:
        - name: GREETING
          valueFrom: {configMapKeyRef: {name: settings, key: greeting}}
"#;

fn show(title: &str, pods: &[Pod], t0: Instant) {
    println!("\n== {title}  (t={:.2}s)", t0.elapsed().as_secs_f64());
    println!(
        "{:<24} {:<6} {:<10} {:<9} {:<13} {:<8} IMAGE",
        "NAME", "READY", "STATUS", "RESTARTS", "IP", "NODE"
    );
    for p in pods {
        let status = p.status.clone().unwrap_or_default();
        let cs = status.container_statuses.clone().unwrap_or_default();
        let ready = cs.iter().filter(|c| c.ready).count();
        let restarts: i32 = cs.iter().map(|c| c.restart_count).sum();
        let phase = if p.metadata.deletion_timestamp.is_some() {
            "Terminating".to_string()
        } else {
            status.phase.clone().unwrap_or_default()
        };
        let spec = p.spec.clone().unwrap_or_default();
        println!(
            "{:<24} {:<6} {:<10} {:<9} {:<13} {:<8} {}",
            p.metadata.name.clone().unwrap_or_default(),
            format!("{ready}/{}", spec.containers.len()),
            phase,
            restarts,
            status.pod_ip.unwrap_or_else(|| "<none>".into()),
            spec.node_name.unwrap_or_else(|| "<none>".into()),
            spec.containers
                .first()
                .and_then(|c| c.image.clone())
                .unwrap_or_default(),
        );
    }
}

/// Waits until `want` pods are Running and Ready with `image`, and none other remain.
async fn settle(pods: &Api<Pod>, want: usize, image: &str) -> anyhow::Result<Vec<Pod>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = pods
            .list(&ListParams::default().labels("app=web"))
            .await?
            .items;
        let good = list.iter().filter(|p| {
            let st = p.status.clone().unwrap_or_default();
            let img = p
                .spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.as_deref())
                == Some(image);
            img && st.phase.as_deref() == Some("Running")
                && st
                    .container_statuses
                    .unwrap_or_default()
                    .iter()
                    .all(|c| c.ready)
                && p.metadata.deletion_timestamp.is_none()
        });
        if good.count() == want && list.len() == want {
            return Ok(list);
        }
        if Instant::now() > deadline {
            anyhow::bail!("pods did not settle at {want} x {image}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let t0 = Instant::now();
    // Short node heartbeats and tolerations so that losing a node plays out in seconds.
    let control_plane = ControlPlaneConfig {
        node_lifecycle: NodeLifecycleConfig {
            node_monitor_period: Duration::from_millis(200),
            node_monitor_grace_period: Duration::from_secs(2),
            default_toleration_seconds: 1,
            ..NodeLifecycleConfig::default()
        },
        ..ControlPlaneConfig::default()
    };
    let mut node = NodeAgentConfig::new("template");
    node.lease_duration = Duration::from_secs(2);
    node.renew_interval = Duration::from_millis(300);
    node.status_update_interval = Duration::from_millis(300);
    let cluster = Cluster::builder()
        .nodes(3)
        .node_template(node)
        .control_plane(control_plane)
        .start()
        .await?;
    println!("cluster with 3 nodes started in {:?}", t0.elapsed());

    let namespaces: Api<Namespace> = Api::all(cluster.client());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "demo"}}))?,
        )
        .await?;
    let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client(), "demo");
    configmaps
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "settings"}, "data": {"greeting": "hello"}}),
            )?,
        )
        .await?;
    cluster.apply_yaml(MANIFEST).await?;

    let pods: Api<Pod> = Api::namespaced(cluster.client(), "demo");
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), "demo");
    show(
        "3 replicas running",
        &settle(&pods, 3, "nginx:1.27").await?,
        t0,
    );

    deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 10}})),
        )
        .await?;
    show("scaled to 10", &settle(&pods, 10, "nginx:1.27").await?, t0);

    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(image))
        .await?;
    show(
        "rolled out nginx:1.28",
        &settle(&pods, 10, "nginx:1.28").await?,
        t0,
    );

    // `kubectl rollout undo`: write revision 1's pod template back into the Deployment.
    let replicasets: Api<ReplicaSet> = Api::namespaced(cluster.client(), "demo");
    let first = replicasets
        .list(&ListParams::default().labels("app=web"))
        .await?
        .items
        .into_iter()
        .find(|rs| {
            rs.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("deployment.kubernetes.io/revision"))
                .map(String::as_str)
                == Some("1")
        })
        .ok_or_else(|| anyhow::anyhow!("revision 1 not found"))?;
    let mut template = serde_json::to_value(first.spec.map(|s| s.template).unwrap_or_default())?;
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(|l| l.as_object_mut())
    {
        labels.remove("pod-template-hash");
    }
    let undo = json!([{"op": "replace", "path": "/spec/template", "value": template}]);
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(undo)?),
        )
        .await?;
    show(
        "rolled back to nginx:1.27",
        &settle(&pods, 10, "nginx:1.27").await?,
        t0,
    );
    let d = deployments.get("web").await?;
    println!(
        "deployment revision is now {}",
        d.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("deployment.kubernetes.io/revision"))
            .cloned()
            .unwrap_or_default()
    );

    cluster.stop_node("node-2").await?;
    println!(
        "\nstopped node-2: its pods are evicted once the node is unreachable, and replaced elsewhere"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let list = loop {
        let list = settle(&pods, 10, "nginx:1.27").await?;
        if list
            .iter()
            .all(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some("node-2"))
        {
            break list;
        }
        if Instant::now() > deadline {
            anyhow::bail!("pods were not moved off node-2");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    show("node-2 lost, pods back on node-1 and node-3", &list, t0);
    cluster.shutdown().await?;
    Ok(())
}
