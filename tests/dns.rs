//! Cluster DNS through the whole cluster: `ClusterBuilder::dns` serves the Services the
//! service sync puts in the network's catalog, on a loopback port.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_server::proto::op::{Message, ResponseCode};
use hickory_server::proto::rr::RecordType;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, PostParams};
use kybernetes::Cluster;
use serde_json::json;

// The net crate's DNS test client; the cluster tests are another crate, so by path.
#[path = "../net/tests/support/dns.rs"]
mod wire;
use wire::{a_records, ask_udp};

/// Asks `name` until `done` holds for the reply, for at most a minute (the service sync
/// follows Services by watch).
async fn until_answer(server: SocketAddr, name: &str, done: impl Fn(&Message) -> bool) -> Message {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let reply = ask_udp(server, name, RecordType::A).await;
        if done(&reply) {
            return reply;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: no such answer, last {:?} {:?}",
            reply.metadata.response_code,
            a_records(&reply)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_resolve_by_their_cluster_dns_names_and_vanish_when_deleted() {
    let c = Cluster::builder()
        .dns("127.0.0.1:0".parse().expect("address"))
        .start()
        .await
        .expect("start");
    let dns = c.dns_addr().expect("DNS was asked for");
    assert!(dns.ip().is_loopback() && dns.port() != 0, "{dns}");

    let services: Api<Service> = Api::default_namespaced(c.client());
    let kubernetes = services
        .get("kubernetes")
        .await
        .expect("kubernetes service");
    let api_ip: IpAddr = kubernetes
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("cluster IP")
        .parse()
        .expect("an IP");
    until_answer(dns, "kubernetes.default.svc.cluster.local.", |r| {
        a_records(r) == [api_ip]
    })
    .await;

    let web: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    }))
    .expect("service");
    let web = services
        .create(&PostParams::default(), &web)
        .await
        .expect("create web");
    let web_ip: IpAddr = web
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("cluster IP")
        .parse()
        .expect("an IP");
    until_answer(dns, "web.default.svc.cluster.local.", |r| {
        a_records(r) == [web_ip]
    })
    .await;

    services
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete web");
    let gone = until_answer(dns, "web.default.svc.cluster.local.", |r| {
        r.metadata.response_code == ResponseCode::NXDomain
    })
    .await;
    assert!(a_records(&gone).is_empty());
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_dns_service_kube_dns_holds_the_cluster_dns_ip_and_no_other_service_can() {
    let c = Cluster::builder()
        .dns("127.0.0.1:0".parse().expect("address"))
        .start()
        .await
        .expect("start");
    let dns_ip = kybernetes::core::ClusterConfig::default()
        .cluster_dns_ip()
        .expect("a cluster DNS address");
    assert_eq!(dns_ip.to_string(), "10.96.0.10");

    // There as soon as the cluster has started, as on every upstream cluster.
    let system: Api<Service> = Api::namespaced(c.client(), "kube-system");
    let kube_dns = system.get("kube-dns").await.expect("kube-system/kube-dns");
    let spec = kube_dns.spec.expect("spec");
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
    assert_eq!(spec.cluster_ips, Some(vec!["10.96.0.10".to_string()]));
    let ports: Vec<(Option<String>, i32, Option<String>)> = spec
        .ports
        .expect("ports")
        .into_iter()
        .map(|p| (p.name, p.port, p.protocol))
        .collect();
    assert_eq!(
        ports,
        [
            (Some("dns".into()), 53, Some("UDP".into())),
            (Some("dns-tcp".into()), 53, Some("TCP".into())),
        ]
    );
    // Its name resolves to it, like any Service's.
    let dns = c.dns_addr().expect("DNS was asked for");
    until_answer(dns, "kube-dns.kube-system.svc.cluster.local.", |r| {
        a_records(r) == [dns_ip]
    })
    .await;

    // A user's Service asking for the address is refused, in upstream's words.
    let services: Api<Service> = Api::default_namespaced(c.client());
    let thief: Service = serde_json::from_value(json!({
        "metadata": {"name": "thief"},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 53, "protocol": "UDP"}]}
    }))
    .expect("service");
    match services.create(&PostParams::default(), &thief).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert_eq!(status.reason, "Invalid", "{status:?}");
            assert!(
                status.message.contains("provided IP is already allocated"),
                "{}",
                status.message
            );
        }
        other => panic!("a second Service got the cluster DNS address: {other:?}"),
    }
    // And dynamic allocation never hands it out.
    for i in 0..12 {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": format!("s{i}")},
            "spec": {"ports": [{"port": 80}]}
        }))
        .expect("service");
        let created = services
            .create(&PostParams::default(), &svc)
            .await
            .expect("create");
        let ip = created.spec.and_then(|s| s.cluster_ip);
        assert_ne!(ip.as_deref(), Some("10.96.0.10"), "s{i}");
    }
    c.shutdown().await.expect("shutdown");
}
