//! Cluster DNS through the whole cluster: `ClusterBuilder::dns` serves the Services the
//! service sync puts in the network's catalog, on a loopback port.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_server::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, PostParams};
use kybernetes::Cluster;
use serde_json::json;
use tokio::net::UdpSocket;

/// One A question over UDP, retried: a datagram may be lost on a loaded machine.
async fn ask(server: SocketAddr, name: &str) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
    socket.connect(server).await.expect("connect");
    for id in 1u16..=30 {
        let mut query = Message::new(id, MessageType::Query, OpCode::Query);
        query.add_query(Query::query(
            Name::from_ascii(name).expect("name"),
            RecordType::A,
        ));
        socket
            .send(&query.to_vec().expect("encode"))
            .await
            .expect("send");
        let mut buf = vec![0u8; 4096];
        if let Ok(received) =
            tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf)).await
        {
            let n = received.expect("recv");
            let reply = Message::from_vec(&buf[..n]).expect("decode");
            if reply.metadata.id == id {
                return reply;
            }
        }
    }
    panic!("no DNS reply for {name}");
}

fn a_records(reply: &Message) -> Vec<IpAddr> {
    reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect()
}

/// Asks `name` until `done` holds for the reply, for at most a minute (the service sync
/// follows Services by watch).
async fn until_answer(server: SocketAddr, name: &str, done: impl Fn(&Message) -> bool) -> Message {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let reply = ask(server, name).await;
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
