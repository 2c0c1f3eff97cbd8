//! The Ingress controller in front of real pods: a two-node cluster on `LinuxNetwork` running
//! busybox httpd on containerd, with the seed's two-host example (`helloworld-v1.example.com`
//! and `helloworld-v2.example.com` to two Services whose pods sit on different nodes), over
//! plain HTTP and over TLS with a certificate the test makes.
//!
//! The controller's listeners are on loopback of the machine's own namespace, where the test
//! connects; the pod addresses exist only inside the node namespaces, so the proxy reaches
//! them through the network (`NetworkConnector`: sockets made inside a node namespace).
//!
//! Needs root, containerd, runc, nft and busybox-static; without them it fails, not skips.

use std::net::SocketAddr;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use kybernetes::Cluster;
use kybernetes::core::ClusterConfig;
use kybernetes::net::LinuxNetwork;
use serde_json::{Value, json};

use crate::common::until;
use crate::containerd::{BUSYBOX, CtrdCluster, WITHIN, is_ready, pod, wait_pod};
use crate::ingress::{create_ingress, get, get_tls, put_tls_secret, rule, self_signed};

/// busybox httpd on :8080 whose `/` answers `<version>`; stops on TERM.
fn hello_container(version: &str) -> Value {
    let script = format!(
        "mkdir -p /www; echo {version} > /www/index.html; httpd -f -p 0.0.0.0:8080 -h /www & pid=$!; trap 'kill $pid; exit 0' TERM; wait"
    );
    json!({
        "name": "hello", "image": BUSYBOX, "command": ["sh", "-c", script],
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
    })
}

fn hello_service(name: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"selector": {"app": name},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }))
    .expect("service")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_two_host_example_routes_to_real_pods_by_host_over_http_and_tls() {
    let prefix = format!("kyc{}ing", std::process::id());
    let network = LinuxNetwork::start(ClusterConfig::default(), &prefix)
        .await
        .expect("start the linux network (needs root)");
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let c = CtrdCluster::start_with(
        Cluster::builder()
            .nodes(2)
            .network(network)
            .ingress(loopback, loopback),
    )
    .await;
    let pods = c.pods();
    let services: Api<Service> = Api::default_namespaced(c.cluster.client());
    for (i, version) in ["v1", "v2"].iter().enumerate() {
        let name = format!("helloworld-{version}");
        services
            .create(&PostParams::default(), &hello_service(&name))
            .await
            .expect("create service");
        let spec = json!({"nodeName": format!("node-{}", i + 1),
                          "containers": [hello_container(version)]});
        pods.create(
            &PostParams::default(),
            &pod(&name, json!({"app": name}), spec),
        )
        .await
        .expect("create pod");
    }
    for version in ["v1", "v2"] {
        wait_pod(&pods, &format!("helloworld-{version}"), "Ready", is_ready).await;
    }
    let (tls, cert) = self_signed(&["helloworld-v1.example.com", "helloworld-v2.example.com"]);
    put_tls_secret(&c.cluster, "helloworld-tls", tls).await;
    create_ingress(
        &c.cluster,
        json!({"metadata": {"name": "helloworld"}, "spec": {
            "tls": [{"hosts": ["helloworld-v1.example.com", "helloworld-v2.example.com"],
                     "secretName": "helloworld-tls"}],
            "rules": [
                rule("helloworld-v1.example.com", "/", "Prefix", "helloworld-v1"),
                rule("helloworld-v2.example.com", "/", "Prefix", "helloworld-v2"),
            ],
        }}),
    )
    .await;

    let http = c.cluster.ingress_http_addr().expect("http");
    let https = c.cluster.ingress_https_addr().expect("https");
    for version in ["v1", "v2"] {
        let host = format!("helloworld-{version}.example.com");
        until(&format!("{host} over HTTP"), WITHIN, || {
            let host = host.clone();
            async move { get(http, &host, "/").await == (200, format!("{version}\n")) }
        })
        .await;
        let answer = get_tls(https, &host, &cert, "/").await;
        assert_eq!(answer, Ok((200, format!("{version}\n"))), "{host} over TLS");
    }
    // A host no rule names is not sent to either pod.
    let (status, _) = get(http, "helloworld-v3.example.com", "/").await;
    assert_eq!(status, 404);

    c.shutdown().await;
    assert_eq!(
        LinuxNetwork::namespaces(&prefix),
        Vec::<PathBuf>::new(),
        "the cluster left network namespaces behind"
    );
}
