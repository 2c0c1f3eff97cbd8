//! The API served over HTTPS: certificates, kubeconfig, authentication, HTTP/1.1 and HTTP/2,
//! and real clients (kubectl, kube-rs) against `Cluster::builder().serve(...)`.

#[path = "https/mod.rs"]
mod https;

use std::time::Duration;

use chrono::Utc;
use http::StatusCode;
use https::{HttpsClient, Identity, Protocol};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kybernetes::Cluster;
use kybernetes::apiserver::serving::{ClusterPki, ServingConfig, TokenFile};
use serde_json::Value;

fn loopback() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().expect("loopback address")
}

async fn serving(config: ServingConfig) -> Cluster {
    Cluster::builder()
        .serving(config)
        .start()
        .await
        .expect("cluster starts")
}

fn ca(cluster: &Cluster) -> String {
    cluster.pki().expect("serving").ca_pem().to_string()
}

async fn admin_client(cluster: &Cluster, protocol: Protocol) -> HttpsClient {
    let pki = cluster.pki().expect("serving");
    let admin = pki.admin();
    HttpsClient::connect(
        cluster.serving_address().expect("address"),
        pki.ca_pem(),
        Some(Identity {
            cert_pem: &admin.cert_pem,
            key_pem: &admin.key_pem,
        }),
        protocol,
    )
    .await
    .expect("connect as admin")
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("JSON body")
}

#[tokio::test]
async fn anonymous_request_gets_401_status() {
    let cluster = serving(ServingConfig::new(loopback())).await;
    let addr = cluster.serving_address().expect("address");
    let mut client = HttpsClient::connect(addr, &ca(&cluster), None, Protocol::Http2)
        .await
        .expect("connect");
    let resp = client
        .get("/api/v1/namespaces", None)
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let status = json(resp.body());
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["code"], 401);
    assert_eq!(status["reason"], "Unauthorized");
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn anonymous_access_when_enabled_is_system_anonymous() {
    let mut config = ServingConfig::new(loopback());
    config.anonymous = true;
    let cluster = serving(config).await;
    let addr = cluster.serving_address().expect("address");
    let mut client = HttpsClient::connect(addr, &ca(&cluster), None, Protocol::Http2)
        .await
        .expect("connect");
    // Authenticated as anonymous, then refused by the default authorizer: 403, not 401.
    let resp = client
        .get("/api/v1/namespaces", None)
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let status = json(resp.body());
    assert!(
        status["message"]
            .as_str()
            .unwrap_or_default()
            .contains("system:anonymous"),
        "{status}"
    );
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused() {
    let cluster = serving(ServingConfig::new(loopback())).await;
    let addr = cluster.serving_address().expect("address");
    let stranger = ClusterPki::generate(&[], Utc::now()).expect("another CA");
    let admin = stranger.admin();
    let attempt = async {
        let mut client = HttpsClient::connect(
            addr,
            &ca(&cluster),
            Some(Identity {
                cert_pem: &admin.cert_pem,
                key_pem: &admin.key_pem,
            }),
            Protocol::Http1,
        )
        .await?;
        client.get("/api/v1/namespaces", None).await
    };
    // TLS 1.3 reports a refused client certificate after the client's side of the handshake,
    // so the refusal shows at the handshake or at the first request.
    let result = tokio::time::timeout(Duration::from_secs(30), attempt)
        .await
        .expect("the server answers");
    assert!(
        result.is_err(),
        "a foreign client certificate was accepted: {result:?}"
    );
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn bearer_token_from_the_token_file_authenticates() {
    let mut config = ServingConfig::new(loopback());
    config.token_file =
        Some(TokenFile::parse("s3cret-token,alice,1001,\"dev,ops\"\n").expect("token file"));
    let cluster = serving(config).await;
    let addr = cluster.serving_address().expect("address");
    let mut client = HttpsClient::connect(addr, &ca(&cluster), None, Protocol::Http2)
        .await
        .expect("connect");
    let ok = client
        .get(
            "/api/v1/namespaces/default/configmaps",
            Some("s3cret-token"),
        )
        .await
        .expect("request");
    assert_eq!(ok.status(), StatusCode::OK, "{:?}", ok.body());
    let wrong = client
        .get("/api/v1/namespaces/default/configmaps", Some("wrong"))
        .await
        .expect("request");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn http2_and_http1_are_both_served() {
    let cluster = serving(ServingConfig::new(loopback())).await;
    for protocol in [Protocol::Http2, Protocol::Http1] {
        let mut client = admin_client(&cluster, protocol).await;
        let resp = client
            .get("/api/v1/namespaces/default", None)
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::OK);
        let expected = match protocol {
            Protocol::Http2 => http::Version::HTTP_2,
            Protocol::Http1 => http::Version::HTTP_11,
        };
        assert_eq!(client.version(), expected);
        assert_eq!(resp.version(), expected);
        assert_eq!(json(resp.body())["metadata"]["name"], "default");
    }
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn kube_client_from_the_generated_kubeconfig_lists_nodes() {
    let cluster = Cluster::builder()
        .nodes(2)
        .serve(loopback())
        .start()
        .await
        .expect("cluster starts");
    let kubeconfig = cluster.kubeconfig().expect("kubeconfig");
    let parsed =
        kube::config::Kubeconfig::from_yaml(kubeconfig.to_yaml()).expect("kubeconfig parses");
    assert_eq!(parsed.current_context.as_deref(), Some("kybernetes"));
    let config = kube::Config::from_custom_kubeconfig(parsed, &Default::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let nodes: Api<Node> = Api::all(client);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = nodes
            .list(&ListParams::default())
            .await
            .expect("list nodes over HTTPS");
        if list.items.len() == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nodes never registered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn certificates_are_reused_across_a_restart_with_a_data_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let start = || async {
        Cluster::builder()
            .data_dir(dir.path())
            .expect("data dir")
            .serve(loopback())
            .start()
            .await
            .expect("cluster starts")
    };
    let first = start().await;
    let ca_before = ca(&first);
    let admin_before = first.pki().expect("serving").admin().cert_pem.clone();
    first.shutdown().await.expect("shutdown");
    assert!(dir.path().join("pki/ca.crt").exists());
    let second = start().await;
    assert_eq!(ca(&second), ca_before);
    assert_eq!(
        second.pki().expect("serving").admin().cert_pem,
        admin_before
    );
    let mut client = admin_client(&second, Protocol::Http2).await;
    let resp = client
        .get("/api/v1/namespaces", None)
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    second.shutdown().await.expect("shutdown");
}

/// Runs the real kubectl with the generated kubeconfig; fails if kubectl is missing.
fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl must be installed (it is at /usr/bin/kubectl on the machine image)");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn kubectl_gets_nodes_and_version_over_https() {
    let cluster = Cluster::builder()
        .nodes(2)
        .serve(loopback())
        .start()
        .await
        .expect("cluster starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kubeconfig");
    cluster
        .kubeconfig()
        .expect("kubeconfig")
        .write(&path)
        .expect("write kubeconfig");
    let names = cluster.node_names();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let p = path.clone();
    let output = loop {
        let p = p.clone();
        let out = tokio::task::spawn_blocking(move || kubectl(&p, &["get", "nodes", "-o", "name"]))
            .await
            .expect("kubectl task");
        if names.iter().all(|n| out.contains(&format!("node/{n}"))) {
            break out;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "kubectl never listed the nodes: {out}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(output.lines().count(), 2, "{output}");
    let table = tokio::task::spawn_blocking({
        let p = path.clone();
        move || kubectl(&p, &["get", "nodes"])
    })
    .await
    .expect("kubectl task");
    assert!(table.starts_with("NAME"), "{table}");
    let version = tokio::task::spawn_blocking(move || kubectl(&path, &["version"]))
        .await
        .expect("kubectl task");
    assert!(version.contains("Server Version: v1.33"), "{version}");
    cluster.shutdown().await.expect("shutdown");
}
