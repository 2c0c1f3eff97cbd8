//! P9: HTTP through a ClusterIP against the same requests straight to the pods, in one run, on
//! `LinuxNetwork`. Goal: the ClusterIP keeps at least 0.9 of the direct figure (requests/s,
//! and direct p99 / ClusterIP p99).
//!
//! The path is the real one. A two-node cluster runs on `LinuxNetwork` (a network namespace
//! per node and per pod, nftables service rules in each node namespace) with `FakeRuntime`
//! pods: a client pod on node-1 and `KYB_P9_BACKENDS` (default 2) backend pods on node-2,
//! behind a Service with a selector, so the Endpoints controller and the service sync write
//! the rules as in any cluster. The HTTP servers (hyper, in this process) listen on sockets
//! made inside the backend pods' namespaces; the client (hyper, on a thread of its own that
//! entered the client pod's namespace, so its sockets live there) sends from the client pod.
//! A direct request goes client pod → node-1 bridge → node-1 → node-2 → backend pod; a
//! ClusterIP request takes the same wires, and node-1's nftables DNAT picks the backend.
//!
//! Two loads, each measured direct and through the ClusterIP with the same client and
//! concurrency, interleaved in `KYB_P9_ROUNDS` rounds (default 4; the order flips each round
//! so that drift from other work on the machine falls on both alike):
//! - keep-alive: `KYB_P9_CONCURRENCY` (default 16) connections, each sending GETs back to
//!   back for `KYB_P9_SECONDS` (default 8) per mode in all; the DNAT is decided once per
//!   connection, then conntrack rewrites every packet;
//! - connection per request: the same concurrency, each request on a new connection
//!   (`Connection: close`), `KYB_P9_REQUESTS` (default 20000) per mode in all: every request
//!   pays the NAT chains and a new conntrack entry on node-1 (and on node-2, which tracks
//!   direct connections too).
//!
//! Run as root, with `nft` installed:
//! `cargo bench --bench p9_cluster_ip` (`KYB_P9_SECONDS=2 KYB_P9_REQUESTS=4000` for a quick look).

mod common;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::{Api, PostParams};
use kybernetes::Cluster;
use kybernetes::core::ClusterConfig;
use kybernetes::net::LinuxNetwork;
use serde_json::json;

/// The port the backends serve on, and the Service's port.
const TARGET_PORT: u16 = 8080;
const SERVICE_PORT: u16 = 80;
const BODY: &[u8] = b"hello from a pod\n";

/// The figures of one load in one mode.
#[derive(Default)]
struct Figures {
    latencies: Vec<Duration>,
    elapsed: Duration,
    errors: usize,
}

impl Figures {
    fn add(&mut self, other: Figures) {
        self.latencies.extend(other.latencies);
        self.elapsed += other.elapsed;
        self.errors += other.errors;
    }

    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Load {
    KeepAlive,
    ConnectionPerRequest,
}

/// Where a load's requests go: the pods themselves (worker `i` uses pod `i` mod n; one
/// connection per request goes round the pods) or the ClusterIP.
#[derive(Clone)]
enum Target {
    Direct(Vec<SocketAddr>),
    ClusterIp(SocketAddr),
}

impl Target {
    fn pick(&self, n: usize) -> SocketAddr {
        match self {
            Target::Direct(pods) => pods[n % pods.len()],
            Target::ClusterIp(addr) => *addr,
        }
    }
}

/// How long one phase of a load runs.
#[derive(Clone, Copy)]
enum Budget {
    For(Duration),
    Requests(usize),
}

/// A hyper HTTP/1.1 server on `listener`: every request gets [`BODY`], connections are kept
/// alive unless the client says `Connection: close`.
async fn serve(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // Small request/response exchanges: Nagle would only add delay.
        if let Err(e) = stream.set_nodelay(true) {
            eprintln!("nodelay: {e}");
        }
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(BODY))))
            });
            // A client that goes away mid-request is no failure of the server.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Enters the network namespace at `netns` on the calling thread.
fn enter(netns: &Path) -> anyhow::Result<()> {
    let ns = std::fs::File::open(netns).with_context(|| format!("open {}", netns.display()))?;
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("setns {} (needs root)", netns.display()))
}

/// A listener on `0.0.0.0:port`, created on a thread inside `netns` (a socket stays in the
/// namespace it was made in) and registered with the current runtime.
async fn listen_in(netns: &Path, port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    let netns = netns.to_owned();
    let std_listener = std::thread::spawn(move || -> anyhow::Result<std::net::TcpListener> {
        enter(&netns)?;
        let l = std::net::TcpListener::bind(("0.0.0.0", port))?;
        l.set_nonblocking(true)?;
        Ok(l)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("listener thread panicked"))??;
    Ok(tokio::net::TcpListener::from_std(std_listener)?)
}

async fn connect(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpStream> {
    let stream = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow::anyhow!("connect {addr} timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn handshake(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = connect(addr).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // The connection ends when the sender is dropped or the server closes it.
        let _ = conn.await;
    });
    Ok(sender)
}

async fn get(sender: &mut Sender, addr: SocketAddr, close: bool) -> anyhow::Result<()> {
    sender.ready().await?;
    let mut request = hyper::Request::get("/").header(hyper::header::HOST, addr.to_string());
    if close {
        request = request.header(hyper::header::CONNECTION, "close");
    }
    let response = sender.send_request(request.body(Empty::new())?).await?;
    anyhow::ensure!(
        response.status().is_success(),
        "status {}",
        response.status()
    );
    let body = response.into_body().collect().await?.to_bytes();
    anyhow::ensure!(body.as_ref() == BODY, "unexpected body {body:?}");
    Ok(())
}

/// One phase: `concurrency` workers sending `load` to `target` until `budget` is spent.
async fn phase(load: Load, target: &Target, concurrency: usize, budget: Budget) -> Figures {
    let issued = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = match budget {
        Budget::For(d) => Some(started + d),
        Budget::Requests(_) => None,
    };
    let limit = match budget {
        Budget::Requests(n) => n,
        Budget::For(_) => usize::MAX,
    };
    // Claims the next request slot, if the budget has one left.
    let more = {
        let issued = issued.clone();
        move || {
            deadline.is_none_or(|d| Instant::now() < d)
                && issued.fetch_add(1, Ordering::Relaxed) < limit
        }
    };
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let target = target.clone();
        let more = more.clone();
        workers.spawn(async move {
            let mut out = Figures::default();
            match load {
                Load::KeepAlive => {
                    let addr = target.pick(w);
                    let mut sender = match handshake(addr).await {
                        Ok(s) => s,
                        Err(e) => {
                            eprintln!("connect {addr}: {e}");
                            out.errors += 1;
                            return out;
                        }
                    };
                    while more() {
                        let t0 = Instant::now();
                        match get(&mut sender, addr, false).await {
                            Ok(()) => out.latencies.push(t0.elapsed()),
                            Err(_) => {
                                out.errors += 1;
                                match handshake(addr).await {
                                    Ok(s) => sender = s,
                                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                                }
                            }
                        }
                    }
                }
                Load::ConnectionPerRequest => {
                    let mut n = w;
                    while more() {
                        let addr = target.pick(n);
                        n += concurrency;
                        let t0 = Instant::now();
                        let result = async {
                            let mut sender = handshake(addr).await?;
                            get(&mut sender, addr, true).await
                        }
                        .await;
                        match result {
                            Ok(()) => out.latencies.push(t0.elapsed()),
                            Err(_) => out.errors += 1,
                        }
                    }
                }
            }
            out
        });
    }
    let mut figures = Figures::default();
    while let Some(done) = workers.join_next().await {
        match done {
            Ok(f) => figures.add(f),
            Err(e) => {
                eprintln!("worker: {e}");
                figures.errors += 1;
            }
        }
    }
    figures.elapsed = started.elapsed();
    figures
}

/// The knobs of a run.
#[derive(Clone, Copy)]
struct Knobs {
    concurrency: usize,
    rounds: usize,
    seconds: f64,
    requests: usize,
}

/// Every load, direct and through the ClusterIP, interleaved over the rounds: the figures
/// as `[(load, [direct, cluster_ip])]`.
async fn measure(direct: Target, cluster_ip: Target, knobs: Knobs) -> Vec<(Load, [Figures; 2])> {
    let per_round = Duration::from_secs_f64(knobs.seconds / knobs.rounds as f64);
    let requests_per_round = (knobs.requests / knobs.rounds).max(1);
    // Warm-up: connections, conntrack, caches; not counted.
    for target in [&direct, &cluster_ip] {
        phase(
            Load::KeepAlive,
            target,
            knobs.concurrency,
            Budget::For(Duration::from_millis(500)),
        )
        .await;
        phase(
            Load::ConnectionPerRequest,
            target,
            knobs.concurrency,
            Budget::Requests(500),
        )
        .await;
    }
    let mut results = Vec::new();
    for load in [Load::KeepAlive, Load::ConnectionPerRequest] {
        let budget = match load {
            Load::KeepAlive => Budget::For(per_round),
            Load::ConnectionPerRequest => Budget::Requests(requests_per_round),
        };
        let mut figures = [Figures::default(), Figures::default()];
        for round in 0..knobs.rounds {
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let target = if i == 0 { &direct } else { &cluster_ip };
                figures[i].add(phase(load, target, knobs.concurrency, budget).await);
            }
        }
        results.push((load, figures));
    }
    results
}

/// Runs [`measure`] on a thread of its own inside the client pod's namespace, with a
/// current-thread runtime there: every socket the client opens lives in the pod.
async fn measure_from(
    client_netns: PathBuf,
    direct: Target,
    cluster_ip: Target,
    knobs: Knobs,
) -> anyhow::Result<Vec<(Load, [Figures; 2])>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("p9-client".into())
        .spawn(move || {
            let run = || -> anyhow::Result<Vec<(Load, [Figures; 2])>> {
                enter(&client_netns)?;
                // Connection per request opens tens of thousands of connections from one
                // address: the whole port range, and ports in TIME_WAIT reused. These are the
                // client pod's own sysctls, as a pod's securityContext.sysctls would set them.
                std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "1024 65535")?;
                std::fs::write("/proc/sys/net/ipv4/tcp_tw_reuse", "1")?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                Ok(runtime.block_on(measure(direct, cluster_ip, knobs)))
            };
            // The receiver waits for this; it only goes if main already failed.
            let _ = tx.send(run());
        })?;
    rx.await?
}

fn pod_ip(p: &Pod) -> Option<IpAddr> {
    p.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

/// Waits until pod `name` is Running with an IP; returns its IP and UID.
async fn running_pod(pods: &Api<Pod>, name: &str) -> anyhow::Result<(IpAddr, String)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let p = pods.get(name).await?;
        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if let (true, Some(ip), Some(uid)) = (running, pod_ip(&p), p.metadata.uid.clone()) {
            return Ok((ip, uid));
        }
        anyhow::ensure!(Instant::now() < deadline, "pod {name} never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The network namespace `LinuxNetwork` made for the pod with `uid`.
fn pod_netns(prefix: &str, uid: &str) -> anyhow::Result<PathBuf> {
    let suffix = format!("_pod_{uid}");
    LinuxNetwork::namespaces(prefix)
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(&suffix))
        .ok_or_else(|| anyhow::anyhow!("no network namespace for pod {uid}"))
}

fn spec(name: &str, node: &str, labels: serde_json::Value) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0, "containers": [{
            "name": "main", "image": "bench:1",
            "ports": [{"containerPort": TARGET_PORT}],
        }]},
    }))?)
}

/// Waits until the ClusterIP answers from the client pod (the rules reached node-1).
async fn wait_served(client_netns: &Path, cluster_ip: SocketAddr) -> anyhow::Result<()> {
    let netns = client_netns.to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let run = || -> anyhow::Result<()> {
            enter(&netns)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let ok = async {
                        let mut s = handshake(cluster_ip).await?;
                        get(&mut s, cluster_ip, true).await
                    };
                    match ok.await {
                        Ok(()) => return Ok(()),
                        Err(e) if Instant::now() > deadline => {
                            anyhow::bail!("ClusterIP {cluster_ip} never answered: {e}")
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            })
        };
        // See measure_from.
        let _ = tx.send(run());
    });
    rx.await?
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(load: Load, figures: &mut [Figures; 2]) {
    let name = match load {
        Load::KeepAlive => "keep-alive",
        Load::ConnectionPerRequest => "conn/request",
    };
    for f in figures.iter_mut() {
        f.latencies.sort();
    }
    let p = |f: &Figures, q: f64| common::quantile(&f.latencies, q);
    for (mode, f) in ["direct", "ClusterIP"].iter().zip(figures.iter()) {
        println!(
            "P9 {name:<12} {mode:<9}: n={} {:.0} req/s p50={:.3}ms p99={:.3}ms errors={}",
            f.latencies.len(),
            f.rate(),
            ms(p(f, 0.5)),
            ms(p(f, 0.99)),
            f.errors,
        );
    }
    let [direct, cluster] = &*figures;
    let rate_ratio = cluster.rate() / direct.rate().max(1e-9);
    let p99_ratio = ms(p(direct, 0.99)) / ms(p(cluster, 0.99)).max(1e-9);
    println!(
        "P9 {name:<12} ratio ClusterIP/direct: req/s {rate_ratio:.3}, p99 (direct/ClusterIP) {p99_ratio:.3}  (goal: >= 0.9)"
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let knobs = Knobs {
        concurrency: common::env_usize("KYB_P9_CONCURRENCY", 16)?.max(1),
        rounds: common::env_usize("KYB_P9_ROUNDS", 4)?.max(1),
        seconds: common::env_usize("KYB_P9_SECONDS", 8)?.max(1) as f64,
        requests: common::env_usize("KYB_P9_REQUESTS", 20000)?.max(1),
    };
    let backends = common::env_usize("KYB_P9_BACKENDS", 2)?.max(1);
    common::print_conditions_on(
        &format!(
            "P9: HTTP GET through a ClusterIP vs direct to the pods; client pod on node-1, {backends} backend pods on node-2, concurrency {}, {} interleaved rounds; keep-alive {} s and connection per request {} requests per mode",
            knobs.concurrency, knobs.rounds, knobs.seconds, knobs.requests
        ),
        "FakeRuntime pods, hyper servers and client in this process on sockets inside the pods' network namespaces",
        "LinuxNetwork (nftables DNAT in the node namespaces)",
    );

    let prefix = format!("kyb9{}", std::process::id());
    let network = LinuxNetwork::start(ClusterConfig::default(), &prefix)
        .await
        .context("start LinuxNetwork (needs root)")?;
    let cluster = Cluster::builder().nodes(2).network(network).start().await?;
    let result = run(&cluster, &prefix, backends, knobs).await;
    cluster.shutdown().await?;
    let left = LinuxNetwork::namespaces(&prefix);
    anyhow::ensure!(left.is_empty(), "namespaces left behind: {left:?}");
    let mut results = result?;
    for (load, figures) in &mut results {
        report(*load, figures);
    }
    Ok(())
}

async fn run(
    cluster: &Cluster,
    prefix: &str,
    backends: usize,
    knobs: Knobs,
) -> anyhow::Result<Vec<(Load, [Figures; 2])>> {
    common::wait_nodes_ready(cluster, 2).await?;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    let pp = PostParams::default();
    pods.create(
        &pp,
        &spec("p9-client", "node-1", json!({"app": "p9-client"}))?,
    )
    .await?;
    for i in 0..backends {
        pods.create(
            &pp,
            &spec(&format!("p9-backend-{i}"), "node-2", json!({"app": "p9"}))?,
        )
        .await?;
    }
    let (_, client_uid) = running_pod(&pods, "p9-client").await?;
    let client_netns = pod_netns(prefix, &client_uid)?;
    let mut servers = tokio::task::JoinSet::new();
    let mut direct = Vec::new();
    for i in 0..backends {
        let (ip, uid) = running_pod(&pods, &format!("p9-backend-{i}")).await?;
        let listener = listen_in(&pod_netns(prefix, &uid)?, TARGET_PORT).await?;
        servers.spawn(serve(listener));
        direct.push(SocketAddr::new(ip, TARGET_PORT));
    }

    let services: Api<Service> = Api::default_namespaced(cluster.client());
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "p9"},
        "spec": {"selector": {"app": "p9"},
                 "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": TARGET_PORT}]},
    }))?;
    let service = services.create(&pp, &service).await?;
    let cluster_ip: IpAddr = service
        .spec
        .and_then(|s| s.cluster_ip)
        .context("the Service got no ClusterIP")?
        .parse()?;
    let endpoints: Api<Endpoints> = Api::default_namespaced(cluster.client());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = endpoints.get_opt("p9").await?.map_or(0, |e| {
            e.subsets
                .iter()
                .flatten()
                .flat_map(|s| s.addresses.iter().flatten())
                .count()
        });
        if ready == backends {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{ready} of {backends} endpoints ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cluster_ip = SocketAddr::new(cluster_ip, SERVICE_PORT);
    wait_served(&client_netns, cluster_ip).await?;
    println!("# ClusterIP {cluster_ip}, backends {direct:?}");

    let results = measure_from(
        client_netns,
        Target::Direct(direct),
        Target::ClusterIp(cluster_ip),
        knobs,
    )
    .await;
    servers.abort_all();
    while servers.join_next().await.is_some() {}
    results
}
