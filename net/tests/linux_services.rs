//! Services in the kernel datapath of `LinuxNetwork`: a client pod reaches a ClusterIP and a
//! NodePort served by busybox httpd in two backend pods on two nodes; both backends answer;
//! a backend that goes unready gets no more traffic; teardown removes the rules. Then the
//! rest of kube-proxy's behaviour, with small in-process servers that tell who they are and
//! whom they saw: a service with no endpoint refuses connections, `sessionAffinity:
//! ClientIP` pins a client, `Local` traffic policies keep traffic on the node, and a node
//! added while services change gets every one. Needs root and the `nft` and `busybox`
//! binaries; without them these tests fail, not skip.
#![cfg(target_os = "linux")]

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use kybernetes_net::{Endpoint, LinuxNetwork, Network, ServiceEntry, ServicePort};

mod support;
use support::{in_netns, netns_of, pod, shut_down, start_network};

/// busybox httpd on :8080 in `netns`, answering `name`.
fn httpd(netns: &Path, dir: &Path, name: &str) -> Child {
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(dir.join("index.html"), name).expect("index");
    let dir = dir.to_owned();
    in_netns(netns, move || {
        Command::new("busybox")
            .args(["httpd", "-f", "-p", "8080", "-h"])
            .arg(&dir)
            .spawn()
            .expect("busybox httpd (Debian busybox-static)")
    })
}

/// One GET to `target` from inside `netns`: the body, or the error.
fn get(netns: &Path, target: SocketAddr) -> Result<String, String> {
    in_netns(netns, move || {
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut reply = String::new();
        s.read_to_string(&mut reply).map_err(|e| e.to_string())?;
        Ok(reply
            .rsplit("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_string())
    })
}

/// Backends that answered `target` in up to `tries` requests, stopping once `want` answered.
fn hits(netns: &Path, target: SocketAddr, tries: usize, want: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..tries {
        let body = get(netns, target).unwrap_or_else(|e| panic!("GET {target}: {e}"));
        seen.insert(body);
        if seen.len() >= want {
            break;
        }
    }
    seen
}

fn web(endpoints: &[IpAddr]) -> ServiceEntry {
    ServiceEntry::new("default", "web", Some("10.96.0.50".parse().expect("ip")))
        .with_ports(vec![ServicePort {
            node_port: Some(30080),
            ..ServicePort::tcp("http", 80, 8080)
        }])
        .with_endpoints(endpoints.iter().map(|ip| Endpoint::new(*ip)).collect())
}

fn table_chains(netns: &Path) -> usize {
    let out = in_netns(netns, || {
        Command::new("nft")
            .args(["list", "table", "ip", "kybernetes"])
            .output()
            .expect("nft (Debian nftables)")
    });
    assert!(out.status.success(), "nft list: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with("chain "))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_ip_spreads_over_ready_endpoints_and_follows_readiness() {
    let prefix = format!("kybs{}", std::process::id());
    let net = start_network(&prefix).await;
    let node1 = net.add_node("node-1").await.expect("node-1");
    let node2 = net.add_node("node-2").await.expect("node-2");
    let client = net.setup_pod("node-1", &pod("c1")).await.expect("client");
    let b1 = net.setup_pod("node-1", &pod("b1")).await.expect("b1");
    let b2 = net.setup_pod("node-2", &pod("b2")).await.expect("b2");
    let client_ns = netns_of(&client);
    let tmp = std::env::temp_dir().join(&prefix);
    let mut servers = vec![
        httpd(&netns_of(&b1), &tmp.join("b1"), "b1"),
        httpd(&netns_of(&b2), &tmp.join("b2"), "b2"),
    ];
    // Wait for both servers directly, pod to pod.
    for ip in [b1.ip, b2.ip] {
        let target = SocketAddr::new(ip, 8080);
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(&client_ns, target).is_err() {
            assert!(
                Instant::now() < deadline,
                "httpd on {target} never answered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let started = Instant::now();
    net.sync_service(web(&[b1.ip, b2.ip])).await.expect("sync");
    eprintln!("first service rules on 2 nodes: {:?}", started.elapsed());
    let cluster_ip = SocketAddr::new("10.96.0.50".parse().expect("ip"), 80);
    let both: BTreeSet<String> = ["b1".to_string(), "b2".to_string()].into();
    assert_eq!(
        hits(&client_ns, cluster_ip, 200, 2),
        both,
        "ClusterIP reaches both"
    );
    // NodePort on the other node's address, from the client pod on node-1.
    let node_port = SocketAddr::new(node2.node_ip, 30080);
    assert_eq!(
        hits(&client_ns, node_port, 200, 2),
        both,
        "NodePort reaches both"
    );
    let _ = node1;

    // b1 goes unready: the endpoints lose it, and no request reaches it any more.
    net.sync_service(web(&[b2.ip])).await.expect("sync");
    for _ in 0..30 {
        assert_eq!(get(&client_ns, cluster_ip).expect("GET"), "b2");
    }

    // Update latency for N services (figures, not asserted).
    let n: u16 = std::env::var("KYB_NFT_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let started = Instant::now();
    for i in 0..n {
        let mut s = web(&[b1.ip, b2.ip]);
        s.name = format!("s{i}");
        s.cluster_ip = Some(IpAddr::from([10, 96, 1, (i % 250) as u8 + 1]));
        s.ports[0].node_port = None;
        net.sync_service(s).await.expect("sync");
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{n} services synced to 2 nodes in {elapsed:?} ({:?} per service update)",
        elapsed / u32::from(n.max(1))
    );
    let node_ns = net.node_netns("node-1").expect("node netns");
    let with_all = table_chains(&node_ns);
    for i in 0..n {
        net.remove_service("default", &format!("s{i}"))
            .await
            .expect("remove");
    }
    net.remove_service("default", "web").await.expect("remove");
    // Only the base chains are left once every service is gone (with the two raw chains
    // that leave the node's own cluster DNS traffic untracked).
    assert_eq!(
        table_chains(&node_ns),
        12,
        "base chains only (had {with_all})"
    );

    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    shut_down(net, &prefix).await;
    let _ = std::fs::remove_dir_all(&tmp);
}

/// A TCP server on :8080 in `netns` (a thread, so it needs no binary): each connection gets
/// `<name> <client address>` and is closed. It runs until the test process ends.
fn whoami(netns: &Path, name: &str) {
    let name = name.to_string();
    let listener = in_netns(netns, || {
        TcpListener::bind("0.0.0.0:8080").expect("bind :8080")
    });
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let peer = conn
                .peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default();
            let _ = conn.write_all(format!("{name} {peer}").as_bytes());
        }
    });
}

/// One connection to `target` from inside `netns`: `(server name, the client address it
/// saw)`, or the error kind.
fn ask(netns: &Path, target: SocketAddr) -> Result<(String, String), ErrorKind> {
    in_netns(netns, move || {
        let mut s =
            TcpStream::connect_timeout(&target, Duration::from_secs(10)).map_err(|e| e.kind())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.kind())?;
        let mut reply = String::new();
        s.read_to_string(&mut reply).map_err(|e| e.kind())?;
        let (name, peer) = reply.split_once(' ').ok_or(ErrorKind::InvalidData)?;
        Ok((name.to_string(), peer.to_string()))
    })
}

/// The servers that answered `n` connections to `target` from `netns`.
fn answered(netns: &Path, target: SocketAddr, n: usize) -> BTreeSet<String> {
    (0..n)
        .map(|_| {
            ask(netns, target)
                .unwrap_or_else(|e| panic!("{target}: {e}"))
                .0
        })
        .collect()
}

/// A network with one prefix per test (tests of one binary share the process id).
async fn network(test: &str) -> (LinuxNetwork, String) {
    let prefix = format!("kys{}{test}", std::process::id());
    (start_network(&prefix).await, prefix)
}

/// Waits until the server at `target` answers `netns` directly (pod to pod).
async fn until_serving(netns: &Path, target: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while ask(netns, target).is_err() {
        assert!(Instant::now() < deadline, "{target} never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn service(name: &str, cluster_ip: &str, node_port: u16, endpoints: Vec<Endpoint>) -> ServiceEntry {
    ServiceEntry::new("default", name, Some(cluster_ip.parse().expect("ip")))
        .with_ports(vec![ServicePort {
            node_port: Some(node_port),
            ..ServicePort::tcp("http", 80, 8080)
        }])
        .with_endpoints(endpoints)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_ready_endpoints_refuses_connections() {
    let (net, prefix) = network("r").await;
    let node = net.add_node("node-1").await.expect("node-1");
    let client = netns_of(&net.setup_pod("node-1", &pod("c1")).await.expect("client"));
    let backend = net.setup_pod("node-1", &pod("b1")).await.expect("backend");
    whoami(&netns_of(&backend), "b1");
    until_serving(&client, SocketAddr::new(backend.ip, 8080)).await;

    let cluster_ip: SocketAddr = "10.96.0.60:80".parse().expect("addr");
    let node_port = SocketAddr::new(node.node_ip, 30060);
    net.sync_service(service("empty", "10.96.0.60", 30060, vec![]))
        .await
        .expect("sync");
    // Rejected as kube-proxy rejects it: the client hears at once, it does not time out.
    assert_eq!(ask(&client, cluster_ip), Err(ErrorKind::ConnectionRefused));
    assert_eq!(ask(&client, node_port), Err(ErrorKind::ConnectionRefused));

    // An endpoint becomes ready: served; gone again: refused again.
    let ready = vec![Endpoint::new(backend.ip).on_node("node-1")];
    net.sync_service(service("empty", "10.96.0.60", 30060, ready))
        .await
        .expect("sync");
    assert_eq!(ask(&client, cluster_ip).map(|r| r.0), Ok("b1".to_string()));
    assert_eq!(ask(&client, node_port).map(|r| r.0), Ok("b1".to_string()));
    net.sync_service(service("empty", "10.96.0.60", 30060, vec![]))
        .await
        .expect("sync");
    assert_eq!(ask(&client, cluster_ip), Err(ErrorKind::ConnectionRefused));
    shut_down(net, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_session_affinity_pins_a_client_to_one_endpoint() {
    let (net, prefix) = network("a").await;
    net.add_node("node-1").await.expect("node-1");
    let client = netns_of(&net.setup_pod("node-1", &pod("c1")).await.expect("client"));
    let b1 = net.setup_pod("node-1", &pod("b1")).await.expect("b1");
    let b2 = net.setup_pod("node-1", &pod("b2")).await.expect("b2");
    whoami(&netns_of(&b1), "b1");
    whoami(&netns_of(&b2), "b2");
    for b in [&b1, &b2] {
        until_serving(&client, SocketAddr::new(b.ip, 8080)).await;
    }
    let both = vec![Endpoint::new(b1.ip), Endpoint::new(b2.ip)];
    let mut sticky = service("sticky", "10.96.0.61", 30061, both);
    sticky.session_affinity = Some(Duration::from_secs(600));
    net.sync_service(sticky.clone()).await.expect("sync");

    let target: SocketAddr = "10.96.0.61:80".parse().expect("addr");
    // 30 connections to one of two endpoints at random would all agree once in 2^29.
    let seen = answered(&client, target, 30);
    assert_eq!(seen.len(), 1, "one endpoint for one client: {seen:?}");
    let pinned = seen.into_iter().next().expect("one");

    // The pinned endpoint goes away: the client moves to the other and stays there.
    let (gone, other) = if pinned == "b1" {
        (b1.ip, "b2")
    } else {
        (b2.ip, "b1")
    };
    sticky.endpoints.retain(|e| e.ip != gone);
    net.sync_service(sticky).await.expect("sync");
    assert_eq!(
        answered(&client, target, 10),
        BTreeSet::from([other.to_string()])
    );
    shut_down(net, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_traffic_policies_keep_traffic_on_the_node() {
    let (net, prefix) = network("l").await;
    let node1 = net.add_node("node-1").await.expect("node-1");
    let node2 = net.add_node("node-2").await.expect("node-2");
    let c1 = netns_of(&net.setup_pod("node-1", &pod("c1")).await.expect("c1"));
    let c2 = netns_of(&net.setup_pod("node-2", &pod("c2")).await.expect("c2"));
    let b1 = net.setup_pod("node-1", &pod("b1")).await.expect("b1");
    let b2 = net.setup_pod("node-2", &pod("b2")).await.expect("b2");
    whoami(&netns_of(&b1), "b1");
    whoami(&netns_of(&b2), "b2");
    for b in [&b1, &b2] {
        until_serving(&c1, SocketAddr::new(b.ip, 8080)).await;
    }
    let endpoints = vec![
        Endpoint::new(b1.ip).on_node("node-1"),
        Endpoint::new(b2.ip).on_node("node-2"),
    ];

    // internalTrafficPolicy: Local: a pod's ClusterIP traffic stays on its node.
    let mut internal = service("internal", "10.96.0.62", 30062, endpoints.clone());
    internal.internal_traffic_local = true;
    net.sync_service(internal).await.expect("sync");
    let target: SocketAddr = "10.96.0.62:80".parse().expect("addr");
    assert_eq!(
        answered(&c1, target, 20),
        BTreeSet::from(["b1".to_string()])
    );
    assert_eq!(
        answered(&c2, target, 20),
        BTreeSet::from(["b2".to_string()])
    );

    // externalTrafficPolicy: Local: NodePort traffic from outside the pod network (here
    // the other node's own address) goes to the receiving node's endpoints only, and the
    // endpoint sees the real client address.
    let mut external = service("external", "10.96.0.63", 30063, endpoints);
    external.external_traffic_local = true;
    net.sync_service(external).await.expect("sync");
    let host1 = net.node_netns("node-1").expect("node-1 netns");
    let host2 = net.node_netns("node-2").expect("node-2 netns");
    for (from, from_ip, to_ip, want) in [
        (&host1, node1.node_ip, node2.node_ip, "b2"),
        (&host2, node2.node_ip, node1.node_ip, "b1"),
    ] {
        for _ in 0..20 {
            let (server, peer) = ask(from, SocketAddr::new(to_ip, 30063))
                .unwrap_or_else(|e| panic!("NodePort on {to_ip}: {e}"));
            assert_eq!(server, want, "NodePort on {to_ip}");
            assert_eq!(peer, from_ip.to_string(), "client address kept");
        }
    }
    // A pod reaching the NodePort is cluster traffic: every endpoint, as kube-proxy does.
    let both = BTreeSet::from(["b1".to_string(), "b2".to_string()]);
    let mut seen = BTreeSet::new();
    for _ in 0..200 {
        seen.insert(
            ask(&c1, SocketAddr::new(node2.node_ip, 30063))
                .expect("NodePort")
                .0,
        );
        if seen == both {
            break;
        }
    }
    assert_eq!(seen, both);
    shut_down(net, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_while_services_change_gets_every_service() {
    let (net, prefix) = network("n").await;
    net.add_node("node-1").await.expect("node-1");
    let client = netns_of(&net.setup_pod("node-1", &pod("c1")).await.expect("client"));
    let backend = net.setup_pod("node-1", &pod("b1")).await.expect("backend");
    whoami(&netns_of(&backend), "b1");
    until_serving(&client, SocketAddr::new(backend.ip, 8080)).await;
    let endpoint = vec![Endpoint::new(backend.ip).on_node("node-1")];
    net.sync_service(service("web", "10.96.0.64", 30064, endpoint.clone()))
        .await
        .expect("sync");

    // Nodes join while services are synced; every node must end up with every service.
    let n = 20u8;
    let services = async {
        for i in 0..n {
            let name = format!("s{i}");
            let ip = format!("10.96.2.{}", i + 1);
            net.sync_service(service(&name, &ip, 30100 + u16::from(i), endpoint.clone()))
                .await
                .expect("sync");
        }
    };
    let nodes = async {
        let mut added = Vec::new();
        for i in 2..=4 {
            added.push(net.add_node(&format!("node-{i}")).await.expect("node"));
        }
        added
    };
    let ((), added) = tokio::join!(services, nodes);
    for node in &added {
        let ns = node.netns.clone().expect("netns");
        let map = in_netns(&ns, || {
            Command::new("nft")
                .args(["list", "map", "ip", "kybernetes", "service-ips"])
                .output()
                .expect("nft (Debian nftables)")
        });
        let map = String::from_utf8_lossy(&map.stdout).to_string();
        for i in 0..n {
            let ip = format!("10.96.2.{} ", i + 1);
            assert!(map.contains(&ip), "{} lacks {ip}: {map}", ns.display());
        }
        // The NodePort of a service older than the node works on the node.
        let reply = ask(&client, SocketAddr::new(node.node_ip, 30064));
        assert_eq!(
            reply.map(|r| r.0),
            Ok("b1".to_string()),
            "NodePort on {}",
            node.node_ip
        );
    }
    shut_down(net, &prefix).await;
}
