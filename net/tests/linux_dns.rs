//! Cluster DNS inside `LinuxNetwork`'s node namespaces: a pod on either node asks the cluster
//! DNS address (`10.96.0.10`, port 53) over UDP and TCP and gets a Service's ClusterIP, a
//! change of the catalog shows in the next answer, a `hostNetwork` process in the node
//! namespace is answered too, the `kube-dns` Service on that address (with no endpoints)
//! leaves the queries to the node's server, and removing a node stops its server with the namespace.
//! Needs root; without it this test fails, not skips.
#![cfg(target_os = "linux")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Instant;

use hickory_server::proto::op::{Message, ResponseCode};
use hickory_server::proto::rr::RecordType;
use kybernetes_net::{Network, ServiceEntry, ServicePort};

mod support;
use support::dns::{self, a_records};
use support::{in_netns_async, netns_of, pod, shut_down, start_network};

/// Asks `server` for `name` over UDP from inside `netns`.
fn ask_udp(netns: &Path, server: SocketAddr, name: &str) -> Message {
    let name = name.to_string();
    in_netns_async(netns, move || async move {
        dns::ask_udp(server, &name, RecordType::A).await
    })
}

/// Asks `server` for `name` over TCP from inside `netns`.
fn ask_tcp(netns: &Path, server: SocketAddr, name: &str) -> Message {
    let name = name.to_string();
    in_netns_async(netns, move || async move {
        dns::ask_tcp(server, 7, &name, RecordType::A).await
    })
}

fn web(cluster_ip: &str) -> ServiceEntry {
    ServiceEntry::new("default", "web", Some(cluster_ip.parse().expect("ip")))
        .with_ports(vec![ServicePort::tcp("http", 80, 8080)])
}

/// `kube-system/kube-dns` as the cluster creates it: no selector, so no endpoints.
fn kube_dns(ip: Ipv4Addr) -> ServiceEntry {
    let udp = ServicePort {
        protocol: "UDP".into(),
        ..ServicePort::tcp("dns", 53, 53)
    };
    ServiceEntry::new("kube-system", "kube-dns", Some(IpAddr::V4(ip)))
        .with_ports(vec![udp, ServicePort::tcp("dns-tcp", 53, 53)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_every_node_resolve_services_at_the_cluster_dns_address() {
    let prefix = format!("kyd{}", std::process::id());
    let net = start_network(&prefix).await;
    let dns_ip = net.cluster_dns_ip().expect("a cluster DNS address");
    assert_eq!(dns_ip, Ipv4Addr::new(10, 96, 0, 10));
    let server = SocketAddr::from((dns_ip, 53));
    net.add_node("node-1").await.expect("node-1");
    net.add_node("node-2").await.expect("node-2");
    net.sync_service(web("10.96.0.20")).await.expect("service");
    // The cluster's kube-dns Service holds the DNS address, with no endpoints: its rules
    // must not reject the queries the node serves itself.
    net.sync_service(kube_dns(dns_ip)).await.expect("kube-dns");
    let fqdn = "web.default.svc.cluster.local.";
    let want: Vec<IpAddr> = vec!["10.96.0.20".parse().expect("ip")];

    let mut pod_netns = Vec::new();
    for (node, uid) in [("node-1", "a1"), ("node-2", "b1")] {
        let p = net.setup_pod(node, &pod(uid)).await.expect("pod network");
        pod_netns.push(netns_of(&p));
    }
    let started = Instant::now();
    for netns in &pod_netns {
        let udp = ask_udp(netns, server, fqdn);
        assert_eq!(udp.metadata.response_code, ResponseCode::NoError);
        assert_eq!(a_records(&udp), want, "UDP answer from {}", netns.display());
        let tcp = ask_tcp(netns, server, fqdn);
        assert_eq!(a_records(&tcp), want, "TCP answer from {}", netns.display());
    }
    eprintln!("4 queries from pods on 2 nodes: {:?}", started.elapsed());
    assert_eq!(
        a_records(&ask_udp(
            &pod_netns[1],
            server,
            "kube-dns.kube-system.svc.cluster.local."
        )),
        vec![IpAddr::V4(dns_ip)]
    );

    // The next answer follows the catalog: no zone to reload.
    net.sync_service(web("10.96.0.21"))
        .await
        .expect("service moved");
    let moved = ask_udp(&pod_netns[1], server, fqdn);
    assert_eq!(
        a_records(&moved),
        vec!["10.96.0.21".parse::<IpAddr>().expect("ip")]
    );
    let missing = ask_udp(&pod_netns[0], server, "nope.default.svc.cluster.local.");
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);

    // A hostNetwork process, in the node namespace itself, is answered locally.
    let node_ns = net.node_netns("node-1").expect("node-1 netns");
    assert_eq!(
        a_records(&ask_tcp(&node_ns, server, fqdn)),
        vec!["10.96.0.21".parse::<IpAddr>().expect("ip")]
    );

    net.remove_node("node-2").await.expect("remove node-2");
    assert!(net.node_netns("node-2").is_none());
    shut_down(net, &prefix).await;
}
