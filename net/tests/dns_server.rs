//! The cluster DNS server on a loopback port, queried over UDP and TCP with hand-built
//! hickory-proto messages, answering from a `LocalNetwork`'s catalog.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use hickory_server::proto::op::{Message, ResponseCode};
use hickory_server::proto::rr::{RData, RecordType};
use kybernetes_net::{DnsServer, Endpoint, LocalNetwork, Network, ServiceEntry, ServicePort};

mod support;
use support::dns::{a_records, ask_tcp, ask_udp};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn port() -> Vec<ServicePort> {
    vec![ServicePort::tcp("http", 80, 8080)]
}

async fn cluster() -> (Arc<LocalNetwork>, DnsServer) {
    let network = Arc::new(LocalNetwork::default());
    network
        .sync_service(
            ServiceEntry::new("shop", "web", Some(ip("10.96.0.20")))
                .with_ports(port())
                .with_endpoints(vec![Endpoint::new(ip("10.244.0.5"))]),
        )
        .await
        .expect("sync web");
    network
        .sync_service(
            ServiceEntry::new("shop", "db", None)
                .with_ports(port())
                .with_endpoints(vec![
                    Endpoint::new(ip("10.244.1.7")).with_hostname("db-0"),
                    Endpoint::new(ip("10.244.2.8")).with_hostname("db-1"),
                ]),
        )
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

    let reply = ask_udp(addr, "web.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    assert_eq!(a_records(&reply), [ip("10.96.0.20")]);

    let reply = ask_udp(addr, "DB.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(a_records(&reply), [ip("10.244.1.7"), ip("10.244.2.8")]);

    let reply = ask_udp(addr, "db-1.db.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(a_records(&reply), [ip("10.244.2.8")]);

    let reply = ask_udp(addr, "10-244-3-9.shop.pod.cluster.local.", RecordType::A).await;
    assert_eq!(a_records(&reply), [ip("10.244.3.9")]);

    // The name exists but has no AAAA: NODATA, with the SOA for negative caching.
    let reply = ask_udp(addr, "web.shop.svc.cluster.local.", RecordType::AAAA).await;
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
        let reply = ask_udp(addr, missing, RecordType::A).await;
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

    let reply = ask_udp(addr, "cluster.local.", RecordType::SOA).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(matches!(
        reply.answers.first().map(|r| &r.data),
        Some(RData::SOA(_))
    ));

    let reply = ask_udp(addr, "example.com.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    dns.shutdown().await;
}

fn ptr_records(reply: &Message) -> Vec<String> {
    let mut names: Vec<String> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::PTR(ptr) => Some(ptr.0.to_ascii()),
            _ => None,
        })
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn reverse_lookups_name_services_and_endpoints_and_ipv4_names_have_no_aaaa() {
    let (_network, dns) = cluster().await;
    let addr = dns.local_addr();
    for (reverse, name) in [
        // A ClusterIP names its Service.
        ("20.0.96.10.in-addr.arpa.", "web.shop.svc.cluster.local."),
        // An endpoint with a hostname gets its hostname.subdomain name.
        (
            "7.1.244.10.in-addr.arpa.",
            "db-0.db.shop.svc.cluster.local.",
        ),
        // One without gets its dashed address under the Service.
        (
            "5.0.244.10.in-addr.arpa.",
            "10-244-0-5.web.shop.svc.cluster.local.",
        ),
    ] {
        let reply = ask_udp(addr, reverse, RecordType::PTR).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{reverse}"
        );
        assert!(reply.metadata.authoritative);
        assert_eq!(ptr_records(&reply), [name], "{reverse}");
    }
    let reply = ask_tcp(addr, 7, "20.0.96.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(ptr_records(&reply), ["web.shop.svc.cluster.local."]);

    // The name exists but holds no A: NODATA with the reverse zone's SOA.
    let reply = ask_udp(addr, "20.0.96.10.in-addr.arpa.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.answers.is_empty());
    // An address nothing in the cluster has, and a partial address: NXDOMAIN.
    for missing in ["9.9.244.10.in-addr.arpa.", "244.10.in-addr.arpa."] {
        let reply = ask_udp(addr, missing, RecordType::PTR).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NXDomain,
            "{missing}"
        );
        let soa_zone = reply.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(_) => Some(r.name.to_ascii()),
            _ => None,
        });
        assert_eq!(soa_zone.as_deref(), Some("in-addr.arpa."), "{missing}");
    }

    // AAAA for names with only IPv4 addresses: NOERROR with no records, never NXDOMAIN.
    for name in [
        "web.shop.svc.cluster.local.",
        "db.shop.svc.cluster.local.",
        "db-1.db.shop.svc.cluster.local.",
        "10-244-3-9.shop.pod.cluster.local.",
    ] {
        let reply = ask_udp(addr, name, RecordType::AAAA).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{name}"
        );
        assert!(reply.answers.is_empty(), "{name}: {:?}", reply.answers);
    }
    dns.shutdown().await;
}

#[tokio::test]
async fn catalog_updates_show_in_the_next_answer() {
    let (network, dns) = cluster().await;
    let addr = dns.local_addr();
    let name = "db.shop.svc.cluster.local.";
    assert_eq!(
        a_records(&ask_udp(addr, name, RecordType::A).await).len(),
        2
    );

    network
        .sync_service(
            ServiceEntry::new("shop", "db", None)
                .with_ports(port())
                .with_endpoints(vec![Endpoint::new(ip("10.244.2.8")).with_hostname("db-1")]),
        )
        .await
        .expect("resync db");
    assert_eq!(
        a_records(&ask_udp(addr, name, RecordType::A).await),
        [ip("10.244.2.8")]
    );

    network
        .remove_service("shop", "db")
        .await
        .expect("remove db");
    let reply = ask_udp(addr, name, RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    dns.shutdown().await;
}

#[tokio::test]
async fn tcp_queries_are_answered_on_the_same_port() {
    let (_network, dns) = cluster().await;
    let reply = ask_tcp(
        dns.local_addr(),
        7,
        "web.shop.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(reply.metadata.id, 7);
    assert_eq!(a_records(&reply), [ip("10.96.0.20")]);
    dns.shutdown().await;
}

fn srv_records(reply: &Message) -> Vec<(u16, String)> {
    let mut srvs: Vec<(u16, String)> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some((srv.port, srv.target.to_ascii())),
            _ => None,
        })
        .collect();
    srvs.sort();
    srvs
}

fn additional_a_records(reply: &Message) -> Vec<(String, IpAddr)> {
    let mut glue: Vec<(String, IpAddr)> = reply
        .additionals
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some((r.name.to_ascii(), IpAddr::V4(a.0))),
            _ => None,
        })
        .collect();
    glue.sort();
    glue
}

#[tokio::test]
async fn external_name_services_answer_a_cname_for_every_type() {
    let (network, dns) = cluster().await;
    network
        .sync_service(ServiceEntry::external_name(
            "shop",
            "search",
            "search.example.com",
        ))
        .await
        .expect("sync search");
    let addr = dns.local_addr();
    for qtype in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
        let reply = ask_udp(addr, "search.shop.svc.cluster.local.", qtype).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{qtype}"
        );
        let cnames: Vec<String> = reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::CNAME(c) => Some(c.0.to_ascii()),
                _ => None,
            })
            .collect();
        assert_eq!(cnames, ["search.example.com."], "{qtype}: {reply:?}");
    }
    dns.shutdown().await;
}

#[tokio::test]
async fn named_ports_get_srv_records_with_their_targets_addresses() {
    let (_network, dns) = cluster().await;
    let addr = dns.local_addr();
    // A ClusterIP service: one record, the service name on the service port.
    let reply = ask_udp(
        addr,
        "_http._tcp.web.shop.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        srv_records(&reply),
        [(80, "web.shop.svc.cluster.local.".to_string())]
    );
    assert_eq!(
        additional_a_records(&reply),
        [("web.shop.svc.cluster.local.".to_string(), ip("10.96.0.20"))]
    );
    // A headless service: one per ready endpoint, by hostname, on the endpoint's port.
    let reply = ask_udp(
        addr,
        "_HTTP._tcp.db.shop.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(
        srv_records(&reply),
        [
            (8080, "db-0.db.shop.svc.cluster.local.".to_string()),
            (8080, "db-1.db.shop.svc.cluster.local.".to_string()),
        ]
    );
    assert_eq!(
        additional_a_records(&reply),
        [
            (
                "db-0.db.shop.svc.cluster.local.".to_string(),
                ip("10.244.1.7")
            ),
            (
                "db-1.db.shop.svc.cluster.local.".to_string(),
                ip("10.244.2.8")
            ),
        ]
    );
    // No such port, or the wrong protocol: NXDOMAIN.
    for missing in [
        "_grpc._tcp.web.shop.svc.cluster.local.",
        "_http._udp.web.shop.svc.cluster.local.",
    ] {
        let reply = ask_udp(addr, missing, RecordType::SRV).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NXDomain,
            "{missing}"
        );
    }
    dns.shutdown().await;
}

#[tokio::test]
async fn names_between_the_domain_and_the_records_and_empty_headless_services_are_nodata() {
    let (network, dns) = cluster().await;
    network
        .sync_service(ServiceEntry::new("shop", "empty", None).with_ports(port()))
        .await
        .expect("sync empty");
    let addr = dns.local_addr();
    for (name, qtype) in [
        ("svc.cluster.local.", RecordType::A),
        ("pod.cluster.local.", RecordType::A),
        ("shop.svc.cluster.local.", RecordType::A),
        ("_tcp.web.shop.svc.cluster.local.", RecordType::SRV),
        ("empty.shop.svc.cluster.local.", RecordType::A),
        ("_http._tcp.empty.shop.svc.cluster.local.", RecordType::SRV),
    ] {
        let reply = ask_udp(addr, name, qtype).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{name}"
        );
        assert!(reply.answers.is_empty(), "{name}: {reply:?}");
        assert!(
            matches!(
                reply.authorities.first().map(|r| &r.data),
                Some(RData::SOA(_))
            ),
            "{name}: {reply:?}"
        );
    }
    // A namespace with no services does not exist.
    let reply = ask_udp(addr, "nothing.svc.cluster.local.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    dns.shutdown().await;
}
