//! Services in the kernel datapath of `LinuxNetwork`: a client pod reaches a ClusterIP and a
//! NodePort served by busybox httpd in two backend pods on two nodes; both backends answer;
//! a backend that goes unready gets no more traffic; teardown removes the rules. Needs root
//! and the `nft` and `busybox` binaries; without them these tests fail, not skip.
#![cfg(target_os = "linux")]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use kybernetes_core::ClusterConfig;
use kybernetes_net::{LinuxNetwork, Network, PodNetworkRequest, ServiceEntry, ServicePort};

/// Runs `work` on a thread inside the network namespace at `netns`.
fn in_netns<T: Send + 'static>(netns: &Path, work: impl FnOnce() -> T + Send + 'static) -> T {
    let netns = netns.to_owned();
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&netns).expect("open netns");
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns (needs root)");
        work()
    })
    .join()
    .expect("netns thread")
}

fn pod(uid: &str) -> PodNetworkRequest {
    PodNetworkRequest {
        namespace: "default".into(),
        name: format!("pod-{uid}"),
        uid: uid.into(),
        hostname: format!("pod-{uid}"),
        subdomain: None,
    }
}

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
    ServiceEntry {
        namespace: "default".into(),
        name: "web".into(),
        cluster_ip: Some("10.96.0.50".parse().expect("ip")),
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: "TCP".into(),
            port: 80,
            node_port: Some(30080),
            target_port: 8080,
        }],
        endpoints: endpoints.iter().map(|ip| (*ip, None)).collect(),
    }
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
    let net = LinuxNetwork::start(ClusterConfig::default(), &prefix)
        .await
        .expect("start the linux network (needs root)");
    let node1 = net.add_node("node-1").await.expect("node-1");
    let node2 = net.add_node("node-2").await.expect("node-2");
    let client = net.setup_pod("node-1", &pod("c1")).await.expect("client");
    let b1 = net.setup_pod("node-1", &pod("b1")).await.expect("b1");
    let b2 = net.setup_pod("node-2", &pod("b2")).await.expect("b2");
    let client_ns: PathBuf = client.netns.clone().expect("netns");
    let tmp = std::env::temp_dir().join(&prefix);
    let mut servers = vec![
        httpd(b1.netns.as_deref().expect("netns"), &tmp.join("b1"), "b1"),
        httpd(b2.netns.as_deref().expect("netns"), &tmp.join("b2"), "b2"),
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
    // Only the base chains are left once every service is gone.
    assert_eq!(
        table_chains(&node_ns),
        6,
        "base chains only (had {with_all})"
    );

    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    net.shutdown().await.expect("shutdown");
    assert_eq!(LinuxNetwork::namespaces(&prefix), Vec::<PathBuf>::new());
    let _ = std::fs::remove_dir_all(&tmp);
}
