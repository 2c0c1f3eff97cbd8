//! `LinuxNetwork` on the real kernel: two nodes with two pods each, TCP between every pair
//! of pods with no NAT, and nothing left behind after shutdown or after a crash. Needs root
//! (CI runs as root); without it these tests fail, not skip.
#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kybernetes_net::{LinuxNetwork, Network};

mod support;
use support::{in_netns, in_netns_async, netns_of, pod, shut_down, start_network};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_two_nodes_reach_each_other_with_their_own_addresses_and_teardown_leaves_nothing() {
    let prefix = format!("kybt{}", std::process::id());
    let net = start_network(&prefix).await;
    let node1 = net.add_node("node-1").await.expect("node-1");
    let node2 = net.add_node("node-2").await.expect("node-2");
    assert_ne!(node1.pod_cidr, node2.pod_cidr);
    assert!(node1.netns.as_deref().is_some_and(Path::exists));
    // Idempotent: the same node gets the same network back.
    assert_eq!(net.add_node("node-1").await.expect("node-1 again"), node1);

    let mut pods = Vec::new();
    let mut setup_times = Vec::new();
    for (node, uids) in [("node-1", ["a1", "a2"]), ("node-2", ["b1", "b2"])] {
        for uid in uids {
            let started = Instant::now();
            let p = net.setup_pod(node, &pod(uid)).await.expect("pod network");
            setup_times.push(started.elapsed());
            assert_eq!(net.setup_pod(node, &pod(uid)).await.expect("again"), p);
            pods.push((uid, p));
        }
    }
    eprintln!("pod network set-up times: {setup_times:?}");

    // Every pod serves on its own address; every other pod connects, and the server sees
    // the client's pod address (no NAT on the way, same node or not).
    let mut listeners = Vec::new();
    for (_, p) in &pods {
        let addr = SocketAddr::new(p.ip, 8080);
        let l = in_netns(&netns_of(p), move || {
            TcpListener::bind(addr).expect("bind in pod")
        });
        listeners.push(l);
    }
    for (i, (server_uid, server)) in pods.iter().enumerate() {
        let listener = listeners[i].try_clone().expect("clone listener");
        let expected: Vec<IpAddr> = pods
            .iter()
            .filter(|(u, _)| u != server_uid)
            .map(|(_, p)| p.ip)
            .collect();
        let n = expected.len();
        let accepting = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..n {
                let (mut s, peer) = listener.accept().expect("accept");
                let mut buf = [0u8; 2];
                s.read_exact(&mut buf).expect("read");
                s.write_all(peer.ip().to_string().as_bytes())
                    .expect("reply");
                seen.push(peer.ip());
            }
            seen
        });
        for (client_uid, client) in &pods {
            if client_uid == server_uid {
                continue;
            }
            let target = SocketAddr::new(server.ip, 8080);
            let client_ip = client.ip;
            let reply = in_netns(&netns_of(client), move || {
                let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("{client_ip} -> {target}: {e}"));
                s.write_all(b"hi").expect("send");
                let mut reply = String::new();
                s.read_to_string(&mut reply).expect("reply");
                reply
            });
            assert_eq!(
                reply,
                client_ip.to_string(),
                "server {server_uid} saw a rewritten source"
            );
        }
        let mut seen = accepting.join().expect("server thread");
        seen.sort();
        let mut expected = expected;
        expected.sort();
        assert_eq!(
            seen, expected,
            "server {server_uid} saw every client's own pod IP"
        );
    }
    drop(listeners);

    net.teardown_pod("node-1", "a1").await.expect("teardown");
    assert!(!netns_of(&pods[0].1).exists());
    net.teardown_pod("node-1", "a1")
        .await
        .expect("teardown twice is fine");
    shut_down(net, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_removes_what_a_crashed_run_left_behind() {
    let prefix = format!("kybc{}", std::process::id());
    let crashed = start_network(&prefix).await;
    crashed.add_node("node-1").await.expect("node");
    crashed.setup_pod("node-1", &pod("x1")).await.expect("pod");
    // A crash: nothing runs the network's teardown.
    std::mem::forget(crashed);
    assert_eq!(LinuxNetwork::namespaces(&prefix).len(), 3);

    restart_removes_the_leftovers(&prefix).await;
}

/// Set in the child process of the kill test: the prefix `a_network_held_until_killed` uses.
const HOLDER_PREFIX: &str = "KYB_TEST_HOLDER_PREFIX";
/// The line the child prints once its namespaces exist.
const HOLDING: &str = "holding the network";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the_next_start_removes_what_a_killed_process_left_behind"]
async fn a_network_held_until_killed() {
    let prefix = std::env::var(HOLDER_PREFIX).expect("run by the kill test, which sets the prefix");
    let net = start_network(&prefix).await;
    net.add_node("node-1").await.expect("node");
    net.setup_pod("node-1", &pod("k1")).await.expect("pod");
    println!("{HOLDING}");
    std::io::Write::flush(&mut std::io::stdout()).expect("flush");
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_start_removes_what_a_killed_process_left_behind() {
    use std::io::BufRead;
    let prefix = format!("kybk{}", std::process::id());
    let mut child = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            "a_network_held_until_killed",
            "--ignored",
            "--nocapture",
        ])
        .env(HOLDER_PREFIX, &prefix)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the holder");
    let stdout = child.stdout.take().expect("the holder's stdout");
    let held = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.trim() == HOLDING);
    assert!(held, "the holder never held the network");
    assert_eq!(LinuxNetwork::namespaces(&prefix).len(), 3);
    // kill -9: no destructor, no shutdown.
    child.kill().expect("SIGKILL the holder");
    child.wait().expect("reap the holder");
    assert_eq!(
        LinuxNetwork::namespaces(&prefix).len(),
        3,
        "the namespaces outlive the killed process (they are bind-mounted)"
    );

    restart_removes_the_leftovers(&prefix).await;
}

/// Starts a network with `prefix` over what a dead run left: only the new cluster namespace
/// is left, the same node can be added again, and shutdown removes everything.
async fn restart_removes_the_leftovers(prefix: &str) {
    let restarted = start_network(prefix).await;
    assert_eq!(
        LinuxNetwork::namespaces(prefix),
        vec![PathBuf::from(format!("/run/netns/{prefix}_cluster"))],
        "only the new cluster namespace is left"
    );
    restarted
        .add_node("node-1")
        .await
        .expect("the same node again");
    shut_down(restarted, prefix).await;
}

/// The hardware address of interface `name` in the namespace at `netns`, read over a
/// netlink socket opened there.
fn link_mac(netns: &Path, name: &'static str) -> Vec<u8> {
    use futures::TryStreamExt;
    use rtnetlink::packet_route::link::LinkAttribute;
    in_netns_async(netns, move || async move {
        let (connection, handle, _) = rtnetlink::new_connection().expect("netlink socket");
        tokio::spawn(connection);
        let link = handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await
            .expect("get link")
            .unwrap_or_else(|| panic!("no interface {name}"));
        link.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(mac) => Some(mac.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{name} has no hardware address"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pod_bridge_has_a_fixed_mac_from_its_gateway_whatever_ports_join_or_leave() {
    let prefix = format!("kybm{}", std::process::id());
    let net = start_network(&prefix).await;
    let node = net.add_node("node-1").await.expect("node-1");
    let node_ns = node.netns.clone().expect("a LinuxNetwork node has a netns");
    let cidr: kybernetes_core::ipam::Cidr = node
        .pod_cidr
        .as_deref()
        .expect("a pod CIDR")
        .parse()
        .expect("a CIDR");
    let gateway = cidr.nth(1).expect("a gateway");
    let [a, b, c, d] = gateway.octets();
    let expected = vec![0x0a, 0x58, a, b, c, d];
    assert_eq!(link_mac(&node_ns, "cbr0"), expected, "before any port");

    // The kernel would otherwise move the bridge to the lowest MAC among its ports.
    net.setup_pod("node-1", &pod("m1")).await.expect("pod m1");
    net.setup_pod("node-1", &pod("m2")).await.expect("pod m2");
    assert_eq!(
        link_mac(&node_ns, "cbr0"),
        expected,
        "with two pods attached"
    );
    net.teardown_pod("node-1", "m1").await.expect("teardown m1");
    assert_eq!(link_mac(&node_ns, "cbr0"), expected, "after a pod left");

    shut_down(net, &prefix).await;
}
