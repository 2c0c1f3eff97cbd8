//! Services get ClusterIPs from 10.96.0.0/12 and NodePorts from 30000-32767 at create time,
//! as upstream's service registry allocates them.

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kybernetes::Cluster;
use serde_json::json;

fn service(name: &str, extra: serde_json::Value) -> Service {
    let mut v = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}});
    if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
        for (k, val) in extra {
            spec.insert(k.clone(), val.clone());
        }
    }
    serde_json::from_value(v).expect("service")
}

#[tokio::test]
async fn services_get_cluster_ips_and_node_ports() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let svcs: Api<Service> = Api::default_namespaced(c.client());
    let k8s = svcs
        .get("kubernetes")
        .await
        .expect("the kubernetes service exists");
    assert_eq!(
        k8s.spec.and_then(|s| s.cluster_ip).as_deref(),
        Some("10.96.0.1")
    );

    let a = svcs
        .create(&PostParams::default(), &service("a", json!({})))
        .await
        .expect("a");
    let a_ip = a
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.clone())
        .expect("cluster ip");
    assert!(a_ip.starts_with("10.") && a_ip != "10.96.0.1", "{a_ip}");
    let b = svcs
        .create(&PostParams::default(), &service("b", json!({})))
        .await
        .expect("b");
    assert_ne!(
        b.spec.and_then(|s| s.cluster_ip),
        Some(a_ip.clone()),
        "addresses are unique"
    );

    let headless = svcs
        .create(
            &PostParams::default(),
            &service("h", json!({"clusterIP": "None"})),
        )
        .await
        .expect("h");
    assert_eq!(
        headless.spec.and_then(|s| s.cluster_ip).as_deref(),
        Some("None")
    );

    let np = svcs
        .create(
            &PostParams::default(),
            &service("np", json!({"type": "NodePort"})),
        )
        .await
        .expect("np");
    let port = np
        .spec
        .and_then(|s| s.ports)
        .and_then(|p| p[0].node_port)
        .expect("node port");
    assert!((30000..=32767).contains(&port), "{port}");

    let taken = svcs
        .create(
            &PostParams::default(),
            &service("dup", json!({"clusterIP": a_ip})),
        )
        .await;
    assert!(
        matches!(taken, Err(kube::Error::Api(s)) if s.code == 422),
        "an allocated IP cannot be requested"
    );

    let change = svcs
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"clusterIP": "10.96.0.200"}})),
        )
        .await;
    assert!(
        matches!(change, Err(kube::Error::Api(s)) if s.code == 422),
        "clusterIP is immutable"
    );
    let relabel = svcs
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .expect("other changes are fine");
    assert_eq!(relabel.spec.and_then(|s| s.cluster_ip), Some(a_ip.clone()));

    svcs.delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    svcs.create(
        &PostParams::default(),
        &service("again", json!({"clusterIP": a_ip})),
    )
    .await
    .expect("released IP can be requested");
    c.shutdown().await.expect("shutdown");
}
