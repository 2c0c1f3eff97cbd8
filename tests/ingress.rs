//! The built-in Ingress controller end to end: a cluster with `.ingress(..)`, Ingresses and
//! Services created through the API, and requests sent to the controller's listeners.
//!
//! The "pods" are plain in-process HTTP servers on their own loopback addresses (127.0.0.2,
//! 127.0.0.3, …), and each Service is a Service without a selector whose Endpoints the test
//! writes by hand, pointing at those servers, which upstream allows. The controller dials
//! them with its default connector, directly: nothing is mapped or faked between the proxy
//! and the backends. Pod IPs of a LocalNetwork are not routable from the host, and what is
//! proven here (routing, TLS, status, events) does not depend on who runs the backend.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::served::{kubectl, served_from, text};
use common::until;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Endpoints, Event, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kybernetes::Cluster;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(30);

/// A cluster with the Ingress controller on loopback.
async fn cluster() -> Cluster {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    Cluster::builder()
        .ingress(any, any)
        .start()
        .await
        .expect("cluster starts")
}

/// A "pod": an HTTP server on `ip` answering `<name> <path> host=<host>` to every request.
async fn backend(ip: &str, name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).await.expect("bind backend");
    let addr = listener.local_addr().expect("backend address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<_>| async move {
                    let host = req
                        .headers()
                        .get("host")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let proto = req
                        .headers()
                        .get("x-forwarded-proto")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let body = format!("{name} {} host={host} proto={proto}", req.uri().path());
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(Bytes::from(body)),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Service `name` (port 80, named `http`, no selector) with Endpoints at `backends`.
async fn service(cluster: &Cluster, name: &str, backends: &[SocketAddr]) {
    let services: Api<Service> = Api::default_namespaced(cluster.client());
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }))
    .expect("service");
    services
        .create(&PostParams::default(), &svc)
        .await
        .expect("create service");
    let subsets: Vec<Value> = backends
        .iter()
        .map(|b| {
            json!({
                "addresses": [{"ip": b.ip().to_string()}],
                "ports": [{"name": "http", "port": b.port(), "protocol": "TCP"}],
            })
        })
        .collect();
    let endpoints: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": name},
        "subsets": subsets,
    }))
    .expect("endpoints");
    Api::<Endpoints>::default_namespaced(cluster.client())
        .create(&PostParams::default(), &endpoints)
        .await
        .expect("create endpoints");
}

pub(crate) async fn create_ingress(cluster: &Cluster, ingress: Value) -> Ingress {
    let ingress: Ingress = serde_json::from_value(ingress).expect("ingress");
    Api::<Ingress>::default_namespaced(cluster.client())
        .create(&PostParams::default(), &ingress)
        .await
        .expect("create ingress")
}

/// A rule for `host` sending `path` (of `path_type`) to port `http` of `service`.
pub(crate) fn rule(host: &str, path: &str, path_type: &str, service: &str) -> Value {
    json!({
        "host": host,
        "http": {"paths": [{
            "path": path,
            "pathType": path_type,
            "backend": {"service": {"name": service, "port": {"name": "http"}}},
        }]},
    })
}

/// GET `path` from `addr` with `Host: host`: the status and the body.
pub(crate) async fn get(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.expect("connect to ingress");
    request(stream, host, path).await
}

pub(crate) async fn request<S>(stream: S, host: &str, path: &str) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Polls until `GET path` with `host` answers `status` with a body starting with `body`.
async fn until_served(addr: SocketAddr, host: &str, path: &str, status: u16, body: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (s, b) = get(addr, host, path).await;
        if s == status && b.starts_with(body) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {host}{path} to answer {status} {body}; last answer {s} {b}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn http_addr(cluster: &Cluster) -> SocketAddr {
    cluster.ingress_http_addr().expect("ingress was asked for")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_host_reaches_its_own_service() {
    let cluster = cluster().await;
    let v1 = backend("127.0.0.2", "v1").await;
    let v2 = backend("127.0.0.3", "v2").await;
    service(&cluster, "helloworld-v1", &[v1]).await;
    service(&cluster, "helloworld-v2", &[v2]).await;
    // The notes' example: two hosts, two Services, the default IngressClass by omission.
    create_ingress(
        &cluster,
        json!({
            "metadata": {"name": "helloworld"},
            "spec": {"rules": [
                rule("helloworld-v1.example.com", "/", "Prefix", "helloworld-v1"),
                rule("helloworld-v2.example.com", "/", "Prefix", "helloworld-v2"),
            ]},
        }),
    )
    .await;
    let addr = http_addr(&cluster);
    until_served(addr, "helloworld-v1.example.com", "/", 200, "v1 /").await;
    let (status, body) = get(addr, "helloworld-v1.example.com:80", "/hello").await;
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            "v1 /hello host=helloworld-v1.example.com:80 proto=http"
        )
    );
    let (status, body) = get(addr, "HelloWorld-V2.example.com", "/hello").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "v2 /hello host=HelloWorld-V2.example.com proto=http")
    );
    // No rule for this host and no default backend.
    let (status, _) = get(addr, "other.example.com", "/").await;
    assert_eq!(status, 404);

    // The controller's address in the status.
    let ingresses: Api<Ingress> = Api::default_namespaced(cluster.client());
    until("status.loadBalancer.ingress", WAIT, || {
        let ingresses = ingresses.clone();
        async move {
            let ing = ingresses.get("helloworld").await.expect("get ingress");
            let lb = ing
                .status
                .and_then(|s| s.load_balancer)
                .and_then(|l| l.ingress);
            lb.is_some_and(|lb| lb.len() == 1 && lb[0].ip.as_deref() == Some("127.0.0.1"))
        }
    })
    .await;
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_take_turns() {
    let cluster = cluster().await;
    let a = backend("127.0.0.4", "a").await;
    let b = backend("127.0.0.5", "b").await;
    service(&cluster, "web", &[a, b]).await;
    create_ingress(
        &cluster,
        json!({"metadata": {"name": "web"}, "spec": {"rules": [rule("web.example.com", "/", "Prefix", "web")]}}),
    )
    .await;
    let addr = http_addr(&cluster);
    until_served(addr, "web.example.com", "/", 200, "").await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let (status, body) = get(addr, "web.example.com", "/").await;
        assert_eq!(status, 200);
        seen.insert(body.split(' ').next().unwrap_or("").to_string());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["a", "b"]);
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_match_by_prefix_elements_or_exactly() {
    let cluster = cluster().await;
    let api = backend("127.0.0.6", "api").await;
    let exact = backend("127.0.0.7", "exact").await;
    let root = backend("127.0.0.8", "root").await;
    service(&cluster, "api", &[api]).await;
    service(&cluster, "exact", &[exact]).await;
    service(&cluster, "root", &[root]).await;
    let path = |path: &str, path_type: &str, service: &str| {
        json!({"path": path, "pathType": path_type,
            "backend": {"service": {"name": service, "port": {"number": 80}}}})
    };
    create_ingress(
        &cluster,
        json!({"metadata": {"name": "paths"}, "spec": {"rules": [{
            "host": "paths.example.com",
            "http": {"paths": [
                path("/", "Prefix", "root"),
                path("/api", "Prefix", "api"),
                path("/api/login", "Exact", "exact"),
                path("/static/", "ImplementationSpecific", "api"),
            ]},
        }]}}),
    )
    .await;
    let addr = http_addr(&cluster);
    until_served(addr, "paths.example.com", "/api", 200, "api").await;
    for (request, want) in [
        ("/api", "api"),
        ("/api/", "api"),
        ("/api/users", "api"),
        ("/apiary", "root"),
        ("/api/login", "exact"),
        ("/api/login/", "api"),
        ("/static", "api"),
        ("/static/app.js", "api"),
        ("/", "root"),
        ("/elsewhere", "root"),
    ] {
        let (status, body) = get(addr, "paths.example.com", request).await;
        assert_eq!(status, 200, "{request}");
        assert!(
            body.starts_with(&format!("{want} {request} ")),
            "{request} went to {body}"
        );
    }
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_backend_takes_what_no_rule_matches() {
    let cluster = cluster().await;
    let fallback = backend("127.0.0.9", "fallback").await;
    let shop = backend("127.0.0.10", "shop").await;
    service(&cluster, "fallback", &[fallback]).await;
    service(&cluster, "shop", &[shop]).await;
    create_ingress(
        &cluster,
        json!({"metadata": {"name": "shop"}, "spec": {
            "defaultBackend": {"service": {"name": "fallback", "port": {"number": 80}}},
            "rules": [rule("shop.example.com", "/cart", "Exact", "shop")],
        }}),
    )
    .await;
    let addr = http_addr(&cluster);
    until_served(addr, "shop.example.com", "/cart", 200, "shop /cart").await;
    for (host, path) in [("shop.example.com", "/"), ("unknown.example.com", "/cart")] {
        let (status, body) = get(addr, host, path).await;
        assert_eq!(status, 200);
        assert!(
            body.starts_with(&format!("fallback {path} ")),
            "{host}{path}: {body}"
        );
    }
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_service_gives_503_and_a_warning_while_other_routes_work() {
    let cluster = cluster().await;
    let good = backend("127.0.0.11", "good").await;
    service(&cluster, "good", &[good]).await;
    // A Service whose Endpoints list no ready address.
    service(&cluster, "idle", &[]).await;
    create_ingress(
        &cluster,
        json!({"metadata": {"name": "mixed"}, "spec": {"rules": [
            rule("good.example.com", "/", "Prefix", "good"),
            rule("gone.example.com", "/", "Prefix", "gone"),
            rule("idle.example.com", "/", "Prefix", "idle"),
        ]}}),
    )
    .await;
    let addr = http_addr(&cluster);
    until_served(addr, "good.example.com", "/", 200, "good /").await;
    let (status, body) = get(addr, "gone.example.com", "/").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("service default/gone not found"), "{body}");
    let (status, body) = get(addr, "idle.example.com", "/").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no ready endpoint"), "{body}");

    let events: Api<Event> = Api::default_namespaced(cluster.client());
    until("a ServiceNotFound warning on the ingress", WAIT, || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.expect("events");
            list.items.iter().any(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some("ServiceNotFound")
                    && e.involved_object.kind.as_deref() == Some("Ingress")
                    && e.involved_object.name.as_deref() == Some("mixed")
                    && e.message.as_deref() == Some("service \"default/gone\" not found")
            })
        }
    })
    .await;

    // Once the Service and its Endpoints exist, the route serves.
    let back = backend("127.0.0.12", "back").await;
    service(&cluster, "gone", &[back]).await;
    until_served(addr, "gone.example.com", "/", 200, "back /").await;
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_ingresses_of_its_classes_are_served() {
    let cluster = cluster().await;
    let web = backend("127.0.0.13", "web").await;
    service(&cluster, "web", &[web]).await;
    let classes: Api<IngressClass> = Api::all(cluster.client());
    let other: IngressClass = serde_json::from_value(json!({
        "metadata": {"name": "other"}, "spec": {"controller": "example.com/other"},
    }))
    .expect("class");
    classes
        .create(&PostParams::default(), &other)
        .await
        .expect("create class");
    let ingress = |name: &str, class: Option<&str>, host: &str| {
        let mut spec = json!({"rules": [rule(host, "/", "Prefix", "web")]});
        if let Some(class) = class {
            spec["ingressClassName"] = json!(class);
        }
        json!({"metadata": {"name": name}, "spec": spec})
    };
    create_ingress(
        &cluster,
        ingress("theirs", Some("other"), "theirs.example.com"),
    )
    .await;
    create_ingress(
        &cluster,
        ingress("named", Some("kybernetes"), "named.example.com"),
    )
    .await;
    let addr = http_addr(&cluster);
    until_served(addr, "named.example.com", "/", 200, "web /").await;
    let (status, _) = get(addr, "theirs.example.com", "/").await;
    assert_eq!(status, 404);

    // Without a default class, an Ingress naming none is no one's.
    classes
        .patch(
            "kybernetes",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "ingressclass.kubernetes.io/is-default-class": "false"}}})),
        )
        .await
        .expect("patch class");
    create_ingress(
        &cluster,
        ingress("classless", None, "classless.example.com"),
    )
    .await;
    // One watch delivers Ingresses in order: once a later one serves, the classless one has
    // been seen. The class change comes on another watch, which may still be in flight then
    // (the controller, like upstream's, is eventually consistent across resources), so the
    // classless Ingress is passed over once that change arrives.
    create_ingress(
        &cluster,
        ingress("marker", Some("kybernetes"), "marker.example.com"),
    )
    .await;
    until_served(addr, "marker.example.com", "/", 200, "web /").await;
    until_served(addr, "classless.example.com", "/", 404, "").await;
    let ingresses: Api<Ingress> = Api::default_namespaced(cluster.client());
    classes
        .patch(
            "kybernetes",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "ingressclass.kubernetes.io/is-default-class": "true"}}})),
        )
        .await
        .expect("patch class");
    until_served(addr, "classless.example.com", "/", 200, "web /").await;
    let theirs = ingresses.get("theirs").await.expect("get");
    assert!(
        theirs
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .is_none(),
        "another controller's Ingress gets no status from this one"
    );
    cluster.shutdown().await.expect("shutdown");
}

/// A self-signed certificate for `hosts` as a `kubernetes.io/tls` Secret's data, and its PEM.
pub(crate) fn self_signed(hosts: &[&str]) -> (Value, String) {
    let names = hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>();
    let c = rcgen::generate_simple_self_signed(names).expect("self-signed");
    let cert = c.cert.pem();
    let key = c.signing_key.serialize_pem();
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    (json!({"tls.crt": b64(&cert), "tls.key": b64(&key)}), cert)
}

pub(crate) async fn put_tls_secret(cluster: &Cluster, name: &str, data: Value) {
    let secrets: Api<Secret> = Api::default_namespaced(cluster.client());
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name}, "type": "kubernetes.io/tls", "data": data,
    }))
    .expect("secret");
    match secrets.get_opt(name).await.expect("get secret") {
        None => {
            secrets
                .create(&PostParams::default(), &secret)
                .await
                .expect("create secret");
        }
        Some(_) => {
            secrets
                .patch(name, &PatchParams::default(), &Patch::Merge(&secret))
                .await
                .expect("update secret");
        }
    }
}

/// GET over TLS with SNI `host`, trusting only `root_pem`: the status and body, or the TLS
/// error.
pub(crate) async fn get_tls(
    addr: SocketAddr,
    host: &str,
    root_pem: &str,
    path: &str,
) -> Result<(u16, String), String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let cert = rustls_pki_types::CertificateDer::from_pem_slice(root_pem.as_bytes()).expect("pem");
    roots.add(cert).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls_pki_types::ServerName::try_from(host.to_string()).expect("server name");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    Ok(request(tls, host, path).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_terminates_with_the_certificate_sni_names_and_follows_secret_updates() {
    let cluster = cluster().await;
    let a = backend("127.0.0.14", "a").await;
    let b = backend("127.0.0.15", "b").await;
    service(&cluster, "a", &[a]).await;
    service(&cluster, "b", &[b]).await;
    let (a_data, a_cert) = self_signed(&["a.example.com"]);
    let (b_data, b_cert) = self_signed(&["b.example.com"]);
    put_tls_secret(&cluster, "a-tls", a_data).await;
    put_tls_secret(&cluster, "b-tls", b_data).await;
    create_ingress(
        &cluster,
        json!({"metadata": {"name": "secure"}, "spec": {
            "tls": [
                {"hosts": ["a.example.com"], "secretName": "a-tls"},
                {"hosts": ["b.example.com"], "secretName": "b-tls"},
            ],
            "rules": [
                rule("a.example.com", "/", "Prefix", "a"),
                rule("b.example.com", "/", "Prefix", "b"),
            ],
        }}),
    )
    .await;
    let https = cluster.ingress_https_addr().expect("https");
    until("a.example.com over TLS", WAIT, || {
        let a_cert = a_cert.clone();
        async move {
            get_tls(https, "a.example.com", &a_cert, "/x").await
                == Ok((200, "a /x host=a.example.com proto=https".into()))
        }
    })
    .await;
    let b = get_tls(https, "b.example.com", &b_cert, "/y").await;
    assert_eq!(b, Ok((200, "b /y host=b.example.com proto=https".into())));
    // The certificate follows the SNI name: a's certificate is not offered for b.
    let wrong = get_tls(https, "b.example.com", &a_cert, "/").await;
    assert!(
        wrong.is_err(),
        "b's handshake verified against a's certificate: {wrong:?}"
    );
    // A host no entry names gets no certificate.
    let none = get_tls(https, "c.example.com", &a_cert, "/").await;
    assert!(none.is_err(), "{none:?}");

    // A renewed certificate is served from the next connection on.
    let (renewed, renewed_cert) = self_signed(&["a.example.com"]);
    put_tls_secret(&cluster, "a-tls", renewed).await;
    until("the renewed certificate", WAIT, || {
        let renewed_cert = renewed_cert.clone();
        async move {
            get_tls(https, "a.example.com", &renewed_cert, "/")
                .await
                .is_ok()
        }
    })
    .await;
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_ingress_shows_the_address() {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let served = served_from(Cluster::builder().ingress(any, any)).await;
    let (cluster, kubeconfig) = (&served.cluster, served.kubeconfig.clone());
    create_ingress(
        cluster,
        json!({"metadata": {"name": "hello"}, "spec": {
            "ingressClassName": "kybernetes",
            "tls": [{"hosts": ["hello.example.com"], "secretName": "hello-tls"}],
            "rules": [rule("hello.example.com", "/", "Prefix", "hello")]}}),
    )
    .await;
    let ingresses: Api<Ingress> = Api::default_namespaced(cluster.client());
    until("the status address", WAIT, || {
        let ingresses = ingresses.clone();
        async move {
            let ing = ingresses.get("hello").await.expect("get");
            ing.status
                .and_then(|s| s.load_balancer)
                .and_then(|l| l.ingress)
                .is_some()
        }
    })
    .await;
    let out = kubectl(&kubeconfig, &["get", "ingress", "hello"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"],
        "{stdout}"
    );
    assert_eq!(
        lines[1][..5],
        [
            "hello",
            "kybernetes",
            "hello.example.com",
            "127.0.0.1",
            "80,"
        ],
        "{stdout}"
    );
    let out = kubectl(&kubeconfig, &["get", "ingressclass"]).await;
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("kybernetes") && stdout.contains("kybernetes.io/ingress"),
        "{stdout}{}",
        text(&out.stderr)
    );
    served.cluster.shutdown().await.expect("shutdown");
}
