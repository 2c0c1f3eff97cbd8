//! `kybernetes`: run a cluster (or one control-plane replica of it) as a process.
//!
//! ```text
//! kybernetes run [--store memory|sqlite:PATH|etcd:URL[,URL...]] [--nodes N]
//!                [--leader-elect --identity ID [--lease-duration SECS]]
//!                [--no-control-plane]
//! ```
//!
//! Several `kybernetes run --store etcd:... --leader-elect` processes share one etcd: each
//! serves the API from its own watch cache, and only the elected one runs the scheduler and
//! the controllers. The process prints `ready` once the cluster is up and runs until it gets
//! SIGINT or SIGTERM.

use std::time::Duration;

use anyhow::{Context, bail};
use kybernetes::{Cluster, ControlPlaneConfig, LeaderElectionConfig};

struct Args {
    store: String,
    nodes: usize,
    leader_elect: bool,
    identity: String,
    lease_duration: u64,
    control_plane: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        store: "memory".into(),
        nodes: 1,
        leader_elect: false,
        identity: format!("kybernetes-{}", std::process::id()),
        lease_duration: 15,
        control_plane: true,
    };
    let mut it = std::env::args().skip(1);
    match it.next().as_deref() {
        Some("run") => {}
        Some("--help" | "-h") | None => {
            println!(
                "usage: kybernetes run [--store memory|sqlite:PATH|etcd:URL,...] [--nodes N] [--leader-elect --identity ID [--lease-duration SECS]] [--no-control-plane]"
            );
            std::process::exit(0);
        }
        Some(other) => bail!("unknown command {other:?}; try `kybernetes run --help`"),
    }
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--store" => args.store = value("--store")?,
            "--nodes" => {
                args.nodes = value("--nodes")?
                    .parse()
                    .context("--nodes takes a number")?
            }
            "--leader-elect" => args.leader_elect = true,
            "--identity" => args.identity = value("--identity")?,
            "--lease-duration" => {
                args.lease_duration = value("--lease-duration")?
                    .parse()
                    .context("--lease-duration takes seconds")?
            }
            "--no-control-plane" => args.control_plane = false,
            other => bail!("unknown flag {other:?}"),
        }
    }
    Ok(args)
}

async fn builder_with_store(store: &str) -> anyhow::Result<kybernetes::ClusterBuilder> {
    let builder = Cluster::builder();
    if store == "memory" {
        return Ok(builder);
    }
    if let Some(path) = store.strip_prefix("sqlite:") {
        let s = kybernetes::store::SqliteStore::open(path)
            .with_context(|| format!("opening {path}"))?;
        return Ok(builder.store(s));
    }
    if let Some(urls) = store.strip_prefix("etcd:") {
        return etcd(builder, urls).await;
    }
    bail!("unknown store {store:?}: use memory, sqlite:PATH or etcd:URL[,URL...]")
}

#[cfg(feature = "etcd")]
async fn etcd(
    builder: kybernetes::ClusterBuilder,
    urls: &str,
) -> anyhow::Result<kybernetes::ClusterBuilder> {
    let endpoints: Vec<&str> = urls.split(',').filter(|s| !s.is_empty()).collect();
    let s = kybernetes::store::EtcdStore::connect(&endpoints)
        .await
        .with_context(|| format!("connecting to etcd at {urls}"))?;
    Ok(builder.store(s))
}

#[cfg(not(feature = "etcd"))]
async fn etcd(
    _: kybernetes::ClusterBuilder,
    urls: &str,
) -> anyhow::Result<kybernetes::ClusterBuilder> {
    bail!("etcd:{urls}: this binary was built without the `etcd` feature")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = parse_args()?;
    let mut builder = builder_with_store(&args.store).await?.nodes(args.nodes);
    if args.control_plane {
        let mut cp = ControlPlaneConfig::default();
        if args.leader_elect {
            let mut election =
                LeaderElectionConfig::new("kybernetes-control-plane", args.identity.clone());
            election.lease_duration = Duration::from_secs(args.lease_duration.max(1));
            election.renew_deadline = Duration::from_secs((args.lease_duration * 2 / 3).max(1));
            election.retry_period =
                Duration::from_millis((args.lease_duration * 1000 / 6).clamp(100, 2000));
            cp.leader_election = Some(election);
        }
        builder = builder.control_plane(cp);
    } else {
        builder = builder.without_control_plane();
    }
    let cluster = builder.start().await?;
    println!("ready");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    cluster.shutdown().await?;
    Ok(())
}
