//! The userspace proxy of `LocalNetwork`: listeners on loopback Service addresses, forwarding
//! to ready endpoints, incremental changes, removal and shutdown. Everything runs on the
//! loopback interface.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use kybernetes_net::{Endpoint, LocalNetwork, Network, ServiceEntry, ServicePort};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(10);

/// A backend that greets every connection with its name, then echoes lines.
async fn backend(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                if write
                    .write_all(format!("{name}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if write
                        .write_all(format!("{name}:{line}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A connection through the proxy: the greeting tells which backend took it.
struct Conn {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    write: tokio::net::tcp::OwnedWriteHalf,
    backend: String,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        let (read, write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let backend = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        Ok(Conn {
            lines,
            write,
            backend,
        })
    }

    async fn echo(&mut self, line: &str) -> Option<String> {
        self.write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .ok()?;
        tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .ok()?
            .ok()?
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A pod endpoint serving `http` on `port` (a named target port, resolved per pod).
fn pod(address: &str, port: u16) -> Endpoint {
    let mut e = Endpoint::new(ip(address));
    e.ports = BTreeMap::from([("http".to_string(), port)]);
    e
}

fn service(cluster_ip: &str, port: u16, endpoints: Vec<Endpoint>) -> ServiceEntry {
    ServiceEntry::new("default", "web", Some(ip(cluster_ip)))
        .with_ports(vec![ServicePort::tcp("http", port, 1)])
        .with_endpoints(endpoints)
}

fn proxied() -> LocalNetwork {
    LocalNetwork::builder()
        .userspace_proxy(true)
        .build()
        .unwrap()
}

fn address(net: &LocalNetwork, port: u16) -> SocketAddr {
    let ip = net.proxy_address("default", "web").expect("served");
    SocketAddr::from((ip, port))
}

#[tokio::test]
async fn forwards_round_robin_to_pod_endpoints_on_loopback_and_dns_names_the_proxy() {
    let (a, b) = (backend("a").await, backend("b").await);
    let net = proxied();
    net.sync_service(service(
        "10.96.7.21",
        19021,
        vec![pod("10.244.0.2", a), pod("10.244.1.2", b)],
    ))
    .await
    .unwrap();
    let served = net.proxy_address("default", "web").unwrap();
    assert!(kybernetes_net::USERSPACE_PROXY_CIDR.contains(served));
    // Free on this machine, so it is the one-to-one image of the ClusterIP.
    assert_eq!(served, Ipv4Addr::new(127, 96, 7, 21));
    assert_eq!(net.resolve("web", "default"), vec![IpAddr::V4(served)]);
    assert_eq!(
        net.resolve("web.default.svc.cluster.local.", "kube-system"),
        vec![IpAddr::V4(served)]
    );
    assert_eq!(net.service_host(ip("10.96.7.21")), IpAddr::V4(served));

    let mut seen = Vec::new();
    for _ in 0..4 {
        let mut conn = Conn::open(address(&net, 19021)).await.unwrap();
        assert_eq!(
            conn.echo("hi").await.as_deref(),
            Some(format!("{}:hi", conn.backend).as_str())
        );
        seen.push(conn.backend);
    }
    assert_eq!(seen, ["a", "b", "a", "b"]);
    net.shutdown().await.unwrap();
}

#[tokio::test]
async fn endpoint_changes_reach_new_connections_and_spare_established_ones() {
    let (a, b) = (backend("a").await, backend("b").await);
    let net = proxied();
    net.sync_service(service("10.96.7.22", 19022, vec![pod("10.244.0.2", a)]))
        .await
        .unwrap();
    let mut old = Conn::open(address(&net, 19022)).await.unwrap();
    assert_eq!(old.backend, "a");

    net.sync_service(service("10.96.7.22", 19022, vec![pod("10.244.0.3", b)]))
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(Conn::open(address(&net, 19022)).await.unwrap().backend, "b");
    }
    assert_eq!(old.echo("still").await.as_deref(), Some("a:still"));

    // No ready endpoint: the connection is accepted and closed at once.
    net.sync_service(service("10.96.7.22", 19022, vec![]))
        .await
        .unwrap();
    let closed = Conn::open(address(&net, 19022)).await;
    assert_eq!(
        closed.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::UnexpectedEof)
    );
    // An endpoint that refuses is skipped for the next one.
    let refusing = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    net.sync_service(service(
        "10.96.7.22",
        19022,
        vec![pod("10.244.0.4", refusing), pod("10.244.0.3", b)],
    ))
    .await
    .unwrap();
    for _ in 0..2 {
        assert_eq!(Conn::open(address(&net, 19022)).await.unwrap().backend, "b");
    }
    net.shutdown().await.unwrap();
}

#[tokio::test]
async fn ports_open_and_close_with_the_service_and_removal_closes_the_listener() {
    let a = backend("a").await;
    let net = proxied();
    let mut two = service("10.96.7.23", 19023, vec![pod("10.244.0.2", a)]);
    two.ports.push(ServicePort::tcp("http", 19123, 1));
    net.sync_service(two).await.unwrap();
    let mut kept = Conn::open(address(&net, 19123)).await.unwrap();
    assert_eq!(kept.backend, "a");

    net.sync_service(service("10.96.7.23", 19023, vec![pod("10.244.0.2", a)]))
        .await
        .unwrap();
    let gone = TcpStream::connect(address(&net, 19123)).await;
    assert_eq!(
        gone.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
    assert_eq!(Conn::open(address(&net, 19023)).await.unwrap().backend, "a");

    let at = address(&net, 19023);
    net.remove_service("default", "web").await.unwrap();
    assert_eq!(net.proxy_address("default", "web"), None);
    assert!(net.resolve("web", "default").is_empty());
    let refused = TcpStream::connect(at).await;
    assert_eq!(
        refused.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
    assert_eq!(kept.echo("on").await.as_deref(), Some("a:on"));
    net.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_every_listener_and_connection() {
    let a = backend("a").await;
    let net = proxied();
    net.sync_service(service("10.96.7.24", 19024, vec![pod("10.244.0.2", a)]))
        .await
        .unwrap();
    let at = address(&net, 19024);
    let mut open = Conn::open(at).await.unwrap();
    net.shutdown().await.unwrap();
    assert_eq!(open.echo("after").await, None, "the connection was closed");
    let refused = TcpStream::connect(at).await;
    assert_eq!(
        refused.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
    // Syncs after shutdown open nothing.
    net.sync_service(service("10.96.7.24", 19024, vec![pod("10.244.0.2", a)]))
        .await
        .unwrap();
    assert_eq!(net.proxy_address("default", "web"), None);
}

#[tokio::test]
async fn a_taken_address_moves_the_service_to_another_loopback_address() {
    let a = backend("a").await;
    // Another cluster on the machine holds this ClusterIP's own address and port.
    let squatter = std::net::TcpListener::bind("127.96.7.25:19025").unwrap();
    let net = proxied();
    net.sync_service(service("10.96.7.25", 19025, vec![pod("10.244.0.2", a)]))
        .await
        .unwrap();
    let served = net.proxy_address("default", "web").unwrap();
    assert_ne!(served, Ipv4Addr::new(127, 96, 7, 25));
    assert!(kybernetes_net::USERSPACE_PROXY_CIDR.contains(served));
    assert_eq!(net.service_host(ip("10.96.7.25")), IpAddr::V4(served));
    assert_eq!(Conn::open(address(&net, 19025)).await.unwrap().backend, "a");
    drop(squatter);
    net.shutdown().await.unwrap();
}

#[tokio::test]
async fn headless_and_external_name_services_get_no_listener() {
    let net = proxied();
    net.sync_service(
        ServiceEntry::new("default", "web", None)
            .with_ports(vec![ServicePort::tcp("http", 19026, 1)])
            .with_endpoints(vec![Endpoint::new(ip("10.244.0.2"))]),
    )
    .await
    .unwrap();
    assert_eq!(net.proxy_address("default", "web"), None);
    // Headless answers stay the pod addresses.
    assert_eq!(net.resolve("web", "default"), vec![ip("10.244.0.2")]);
    net.shutdown().await.unwrap();
}
