//! The cluster DNS server on a loopback port, queried over UDP and TCP with hand-built
//! hickory-proto messages, answering from a `LocalNetwork`'s catalog.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, RecordType};
use kybernetes_net::{DnsServer, LocalNetwork, Network, ServiceEntry, ServicePort};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const TIMEOUT: Duration = Duration::from_secs(30);

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn query_bytes(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    message.to_vec().expect("encode query")
}

/// One question over UDP; retried, since UDP on a loaded machine may lose a datagram.
async fn ask(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
    socket.connect(server).await.expect("connect");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    for id in 1u16.. {
        socket
            .send(&query_bytes(id, name, qtype))
            .await
            .expect("send");
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf)).await {
            Ok(received) => {
                let n = received.expect("recv");
                let reply = Message::from_vec(&buf[..n]).expect("decode reply");
                if reply.metadata.id == id {
                    return reply;
                }
            }
            Err(_) => assert!(
                tokio::time::Instant::now() < deadline,
                "no DNS reply for {name}"
            ),
        }
    }
    unreachable!("ran out of query ids")
}

fn a_records(reply: &Message) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

fn port() -> Vec<ServicePort> {
    vec![ServicePort {
        name: "http".into(),
        protocol: "TCP".into(),
        port: 80,
        target_port: 8080,
        node_port: None,
    }]
}

async fn cluster() -> (Arc<LocalNetwork>, DnsServer) {
    let network = Arc::new(LocalNetwork::default());
    network
        .sync_service(ServiceEntry {
            namespace: "shop".into(),
            name: "web".into(),
            cluster_ip: Some(ip("10.96.0.20")),
            ports: port(),
            endpoints: vec![(ip("10.244.0.5"), None)],
        })
        .await
        .expect("sync web");
    network
        .sync_service(ServiceEntry {
            namespace: "shop".into(),
            name: "db".into(),
            cluster_ip: None,
            ports: port(),
            endpoints: vec![
                (ip("10.244.1.7"), Some("db-0".into())),
                (ip("10.244.2.8"), Some("db-1".into())),
            ],
        })
        .await
        .expect("sync db");
    let dns = DnsServer::bind(
        network.clone(),
        &network.cluster_domain(),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("start DNS");
    (network, dns)
}

#[tokio::test]
async fn services_headless_services_and_pods_get_a_records() {
    let (_network, dns) = cluster().await;
    let addr = dns.local_addr();
    assert_eq!(addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));

    let reply = ask(addr, "web.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    assert_eq!(a_records(&reply), [ip("10.96.0.20")]);

    let reply = ask(addr, "DB.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(a_records(&reply), [ip("10.244.1.7"), ip("10.244.2.8")]);

    let reply = ask(addr, "db-1.db.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(a_records(&reply), [ip("10.244.2.8")]);

    let reply = ask(addr, "10-244-3-9.shop.pod.cluster.local.", RecordType::A).await;
    assert_eq!(a_records(&reply), [ip("10.244.3.9")]);

    // The name exists but has no AAAA: NODATA, with the SOA for negative caching.
    let reply = ask(addr, "web.shop.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.answers.is_empty());
    assert!(
        matches!(
            reply.authorities.first().map(|r| &r.data),
            Some(RData::SOA(_))
        ),
        "{reply:?}"
    );
    dns.shutdown().await;
}

#[tokio::test]
async fn missing_names_get_nxdomain_with_the_soa_and_foreign_names_are_refused() {
    let (_network, dns) = cluster().await;
    let addr = dns.local_addr();
    for missing in [
        "nope.shop.svc.cluster.local.",
        "db-9.db.shop.svc.cluster.local.",
        "a.b.c.d.e.cluster.local.",
    ] {
        let reply = ask(addr, missing, RecordType::A).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NXDomain,
            "{missing}"
        );
        assert!(reply.answers.is_empty());
        let soa = reply
            .authorities
            .iter()
            .find_map(|r| match &r.data {
                RData::SOA(soa) => Some((r.name.to_ascii(), soa.clone())),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no SOA for {missing}: {reply:?}"));
        assert_eq!(soa.0, "cluster.local.");
        assert_eq!(soa.1.mname.to_ascii(), "ns.dns.cluster.local.");
    }

    let reply = ask(addr, "cluster.local.", RecordType::SOA).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(matches!(
        reply.answers.first().map(|r| &r.data),
        Some(RData::SOA(_))
    ));

    let reply = ask(addr, "example.com.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    dns.shutdown().await;
}

#[tokio::test]
async fn catalog_updates_show_in_the_next_answer() {
    let (network, dns) = cluster().await;
    let addr = dns.local_addr();
    let name = "db.shop.svc.cluster.local.";
    assert_eq!(a_records(&ask(addr, name, RecordType::A).await).len(), 2);

    network
        .sync_service(ServiceEntry {
            namespace: "shop".into(),
            name: "db".into(),
            cluster_ip: None,
            ports: port(),
            endpoints: vec![(ip("10.244.2.8"), Some("db-1".into()))],
        })
        .await
        .expect("resync db");
    assert_eq!(
        a_records(&ask(addr, name, RecordType::A).await),
        [ip("10.244.2.8")]
    );

    network
        .remove_service("shop", "db")
        .await
        .expect("remove db");
    let reply = ask(addr, name, RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    dns.shutdown().await;
}

#[tokio::test]
async fn tcp_queries_are_answered_on_the_same_port() {
    let (_network, dns) = cluster().await;
    let mut stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(dns.local_addr()))
        .await
        .expect("connect in time")
        .expect("connect");
    let query = query_bytes(7, "web.shop.svc.cluster.local.", RecordType::A);
    let len = u16::try_from(query.len()).expect("small query");
    stream.write_all(&len.to_be_bytes()).await.expect("write");
    stream.write_all(&query).await.expect("write");
    let reply = tokio::time::timeout(TIMEOUT, async {
        let len = stream.read_u16().await.expect("read length");
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await.expect("read reply");
        Message::from_vec(&buf).expect("decode reply")
    })
    .await
    .expect("reply in time");
    assert_eq!(reply.metadata.id, 7);
    assert_eq!(a_records(&reply), [ip("10.96.0.20")]);
    dns.shutdown().await;
}
