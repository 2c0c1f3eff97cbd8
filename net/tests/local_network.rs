//! LocalNetwork: node and pod IPAM, and the DNS catalog. No API server involved.

use std::collections::HashSet;
use std::net::IpAddr;

use kybernetes_core::ClusterConfig;
use kybernetes_core::ipam::Cidr;
use kybernetes_net::{Endpoint, Error, LocalNetwork, Network, ServiceEntry, ServicePort};

mod support;
use support::pod;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn http_port() -> Vec<ServicePort> {
    vec![ServicePort {
        name: "http".into(),
        protocol: "TCP".into(),
        port: 80,
        node_port: None,
        target_port: 8080,
    }]
}

fn service(
    ns: &str,
    name: &str,
    cluster_ip: Option<&str>,
    endpoints: &[(&str, Option<&str>)],
) -> ServiceEntry {
    ServiceEntry::new(ns, name, cluster_ip.map(ip))
        .with_ports(http_port())
        .with_endpoints(
            endpoints
                .iter()
                .map(|(a, h)| Endpoint {
                    hostname: h.map(String::from),
                    ..Endpoint::new(ip(a))
                })
                .collect(),
        )
}

#[tokio::test]
async fn nodes_get_distinct_subnets_and_addresses_in_add_order() -> anyhow::Result<()> {
    let net = LocalNetwork::default();
    let a = net.add_node("a").await?;
    let b = net.add_node("b").await?;
    assert_eq!(a.pod_cidr.as_deref(), Some("10.244.0.0/24"));
    assert_eq!(b.pod_cidr.as_deref(), Some("10.244.1.0/24"));
    assert_eq!(a.node_ip, ip("172.18.0.2"));
    assert_eq!(b.node_ip, ip("172.18.0.3"));
    assert_eq!(net.add_node("a").await?, a, "add_node is idempotent");
    assert_eq!(net.node("b"), Some(b));
    Ok(())
}

#[tokio::test]
async fn pod_ips_fall_inside_the_node_cidr() -> anyhow::Result<()> {
    let net = LocalNetwork::default();
    net.add_node("a").await?;
    let b = net.add_node("b").await?;
    let cidr: Cidr = b.pod_cidr.as_deref().unwrap_or_default().parse()?;
    for i in 0..50 {
        let got = net.setup_pod("b", &pod(&format!("uid-{i}"))).await?;
        assert!(cidr.contains(got.ip), "{} outside {cidr}", got.ip);
        assert_ne!(got.ip, ip("10.244.1.1"), "the gateway is never a pod IP");
        assert_eq!(got.netns, None);
    }
    Ok(())
}

#[tokio::test]
async fn pod_ips_are_unique_across_a_thousand_pods() -> anyhow::Result<()> {
    let net = LocalNetwork::default();
    let nodes = ["n0", "n1", "n2", "n3", "n4"];
    for n in nodes {
        net.add_node(n).await?;
    }
    let mut seen = HashSet::new();
    for i in 0..1000 {
        let node = nodes[i % nodes.len()];
        let got = net.setup_pod(node, &pod(&format!("uid-{i}"))).await?;
        assert!(seen.insert(got.ip), "{} handed out twice", got.ip);
    }
    assert_eq!(net.pod_count(), 1000);
    Ok(())
}

#[tokio::test]
async fn released_pod_ip_is_not_reused_immediately() -> anyhow::Result<()> {
    let net = LocalNetwork::default();
    net.add_node("a").await?;
    let first = net.setup_pod("a", &pod("1")).await?.ip;
    net.teardown_pod("a", "1").await?;
    assert_eq!(net.pod_ip("1"), None);
    let next = net.setup_pod("a", &pod("2")).await?.ip;
    assert_ne!(next, first);
    Ok(())
}

#[tokio::test]
async fn released_pod_ip_comes_back_once_the_range_wraps() -> anyhow::Result<()> {
    let net = LocalNetwork::default();
    net.add_node("a").await?;
    let first = net.setup_pod("a", &pod("0")).await?.ip;
    net.teardown_pod("a", "0").await?;
    // 253 usable addresses per /24: the other 252 go first, then the released one.
    for i in 1..253 {
        assert_ne!(net.setup_pod("a", &pod(&i.to_string())).await?.ip, first);
    }
    assert_eq!(net.setup_pod("a", &pod("last")).await?.ip, first);
    assert!(matches!(
        net.setup_pod("a", &pod("one-too-many")).await,
        Err(Error::Exhausted(_))
    ));
    Ok(())
}

#[tokio::test]
async fn setup_pod_is_idempotent_per_uid() -> anyhow::Result<()> {
    let net = LocalNetwork::default();
    net.add_node("a").await?;
    net.add_node("b").await?;
    let first = net.setup_pod("a", &pod("x")).await?;
    assert_eq!(net.setup_pod("a", &pod("x")).await?, first);
    assert_eq!(net.pod_count(), 1);
    assert!(matches!(
        net.setup_pod("b", &pod("x")).await,
        Err(Error::PodOnOtherNode { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn teardown_of_unknown_pod_is_not_an_error() -> anyhow::Result<()> {
    let net = LocalNetwork::default();
    net.teardown_pod("nowhere", "ghost").await?;
    net.remove_node("nowhere").await?;
    Ok(())
}

#[tokio::test]
async fn setup_pod_on_unknown_node_fails() {
    let net = LocalNetwork::default();
    assert!(matches!(
        net.setup_pod("nowhere", &pod("x")).await,
        Err(Error::UnknownNode(_))
    ));
}

#[tokio::test]
async fn removing_a_node_releases_its_pods() -> anyhow::Result<()> {
    let net = LocalNetwork::default();
    net.add_node("a").await?;
    net.setup_pod("a", &pod("x")).await?;
    net.remove_node("a").await?;
    assert_eq!(net.pod_ip("x"), None);
    assert_eq!(net.node("a"), None);
    // Re-added, the node gets a fresh subnet rather than the one just released.
    assert_eq!(
        net.add_node("a").await?.pod_cidr.as_deref(),
        Some("10.244.1.0/24")
    );
    Ok(())
}

#[tokio::test]
async fn a_node_beyond_the_pod_cidr_is_added_without_one_and_gets_one_when_a_subnet_frees()
-> anyhow::Result<()> {
    let config = ClusterConfig {
        pod_cidr: "10.10.0.0/23".into(),
        ..Default::default()
    };
    let net = LocalNetwork::new(config)?;
    assert_eq!(net.node_cidr_capacity(), 2);
    net.add_node("a").await?;
    net.add_node("b").await?;
    let c = net.add_node("c").await?;
    assert_eq!(c.pod_cidr, None);
    assert_eq!(
        c.node_ip,
        ip("172.18.0.4"),
        "the node still gets an address"
    );
    assert!(matches!(
        net.setup_pod("c", &pod("x")).await,
        Err(Error::NoPodCidr(n)) if n == "c"
    ));
    net.remove_node("a").await?;
    assert_eq!(
        net.add_node("c").await?.pod_cidr.as_deref(),
        Some("10.10.0.0/24")
    );
    assert!(net.setup_pod("c", &pod("x")).await.is_ok());
    Ok(())
}

#[tokio::test]
async fn node_cidr_mask_size_sets_the_node_subnets() -> anyhow::Result<()> {
    let config = ClusterConfig {
        pod_cidr: "10.0.0.0/8".into(),
        node_cidr_mask_size: 24,
        ..Default::default()
    };
    assert_eq!(LocalNetwork::new(config)?.node_cidr_capacity(), 65536);
    let config = ClusterConfig {
        node_cidr_mask_size: 26,
        ..Default::default()
    };
    let net = LocalNetwork::new(config)?;
    assert_eq!(net.node_cidr_capacity(), 1024);
    net.add_node("a").await?;
    assert_eq!(
        net.add_node("b").await?.pod_cidr.as_deref(),
        Some("10.244.0.64/26")
    );
    Ok(())
}

#[test]
fn bad_pod_cidr_or_node_mask_size_is_a_config_error() {
    for (cidr, mask) in [
        ("10.244.0.0", 24),
        ("10.244.0.0/25", 24),
        ("10.0.0.0/8", 25),
        ("10.244.0.0/16", 31),
    ] {
        let config = ClusterConfig {
            pod_cidr: cidr.into(),
            node_cidr_mask_size: mask,
            ..Default::default()
        };
        assert!(
            matches!(LocalNetwork::new(config), Err(Error::Config(_))),
            "{cidr} /{mask}"
        );
    }
}

#[tokio::test]
async fn removed_service_no_longer_resolves() -> anyhow::Result<()> {
    let net = LocalNetwork::default();
    net.sync_service(service("shop", "web", Some("10.96.0.20"), &[]))
        .await?;
    net.remove_service("shop", "web").await?;
    assert!(net.resolve("web.shop", "x").is_empty());
    assert_eq!(net.service("shop", "web"), None);
    net.remove_service("shop", "web").await?;
    Ok(())
}

#[tokio::test]
async fn custom_cluster_domain_is_served() -> anyhow::Result<()> {
    let config = ClusterConfig {
        cluster_domain: "corp.internal".into(),
        ..Default::default()
    };
    let net = LocalNetwork::new(config)?;
    net.sync_service(service("shop", "web", Some("10.96.0.20"), &[]))
        .await?;
    assert_eq!(
        net.resolve("web.shop.svc.corp.internal", "x"),
        vec![ip("10.96.0.20")]
    );
    assert_eq!(net.resolve("web", "shop"), vec![ip("10.96.0.20")]);
    assert!(net.resolve("web.shop.svc.cluster.local", "x").is_empty());
    Ok(())
}

#[tokio::test]
async fn pick_endpoint_round_robins_over_ready_endpoints() -> anyhow::Result<()> {
    let net = LocalNetwork::default();
    let endpoints = [
        ("10.244.0.2", None),
        ("10.244.1.2", None),
        ("10.244.2.2", None),
    ];
    net.sync_service(service("shop", "web", Some("10.96.0.20"), &endpoints))
        .await?;
    let picks: Vec<_> = (0..6)
        .filter_map(|_| net.pick_endpoint("shop", "web", 80))
        .collect();
    assert_eq!(picks.len(), 6);
    let first_round: HashSet<_> = picks[..3].iter().map(|(ip, _)| *ip).collect();
    assert_eq!(first_round.len(), 3, "each endpoint once per round");
    assert_eq!(picks[..3], picks[3..]);
    assert!(picks.iter().all(|(_, port)| *port == 8080));
    assert_eq!(
        net.pick_endpoint("shop", "web", 443),
        None,
        "unknown service port"
    );
    assert_eq!(net.pick_endpoint("shop", "nope", 80), None);

    net.sync_service(service("shop", "web", Some("10.96.0.20"), &[]))
        .await?;
    assert_eq!(
        net.pick_endpoint("shop", "web", 80),
        None,
        "no ready endpoints"
    );
    Ok(())
}

/// A restarted cluster's nodes come back in any order and each gets the pod CIDR and address
/// its Node object records; one whose CIDR another node holds gets a fresh one.
#[tokio::test]
async fn rejoining_nodes_get_their_previous_pod_cidr_and_address_back() {
    use kybernetes_net::PreviousNodeNetwork;
    let first = LocalNetwork::default();
    let a = first.add_node("a").await.unwrap();
    let b = first.add_node("b").await.unwrap();
    let previous = |n: &kybernetes_net::NodeNetwork| PreviousNodeNetwork {
        pod_cidr: n.pod_cidr.clone(),
        node_ip: Some(n.node_ip),
    };

    let restarted = LocalNetwork::default();
    let b2 = restarted.rejoin_node("b", &previous(&b)).await.unwrap();
    let a2 = restarted.rejoin_node("a", &previous(&a)).await.unwrap();
    assert_eq!((a2.pod_cidr, a2.node_ip), (a.pod_cidr.clone(), a.node_ip));
    assert_eq!((b2.pod_cidr, b2.node_ip), (b.pod_cidr.clone(), b.node_ip));
    let fresh = restarted.add_node("c").await.unwrap();
    assert_ne!(fresh.pod_cidr, a.pod_cidr);
    assert_ne!(fresh.pod_cidr, b.pod_cidr);
    let pod_ip = restarted.setup_pod("a", &pod("uid-1")).await.unwrap().ip;
    let a_cidr: Cidr = a.pod_cidr.clone().unwrap().parse().unwrap();
    assert!(a_cidr.contains(pod_ip), "{pod_ip} is in {a_cidr}");

    let clash = restarted.rejoin_node("d", &previous(&a)).await.unwrap();
    assert!(clash.pod_cidr.is_some());
    assert_ne!(clash.pod_cidr, a.pod_cidr, "a's CIDR is a's");
    assert_ne!(clash.node_ip, a.node_ip);
}
