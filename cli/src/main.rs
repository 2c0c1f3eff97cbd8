//! `kybernetes`: run a cluster as a process, or serve it over HTTPS for kubectl.
//!
//! ```text
//! kybernetes serve [--listen 127.0.0.1:6443] [--data-dir DIR] [--kubeconfig PATH] [--nodes N]
//!                  [--cluster-cidr 10.244.0.0/16] [--node-cidr-mask-size 24]
//!                  [--store memory|sqlite:PATH|etcd:URL,...] [--token-auth-file F] [--anonymous-auth]
//! kybernetes run   [--store ...] [--nodes N] [--cluster-cidr CIDR] [--node-cidr-mask-size BITS]
//!                  [--leader-elect --identity ID [--lease-duration SECS]] [--no-control-plane]
//! kybernetes image import ARCHIVE --runtime containerd:SOCKET [--containerd-snapshotter NAME]
//! ```
//!
//! `serve` and `run` take `--runtime fake|process|process-isolated|containerd:SOCKET` (containerd in a build
//! with the `containerd` feature).
//!
//! Both run until SIGINT or SIGTERM, then shut down gracefully. `kybernetes <command> --help`
//! describes every flag.

use anyhow::Context;
use clap::{Parser, Subcommand};

mod cluster_args;
mod image;
mod run;
mod serve;

/// Kubernetes as a Rust library, run as a process.
#[derive(Debug, Parser)]
#[command(name = "kybernetes", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a cluster over HTTPS, with certificates and a kubeconfig for kubectl.
    Serve(serve::ServeArgs),
    /// Run a cluster (or one control-plane replica of it) with no network listener; prints
    /// `ready` once it is up.
    Run(run::RunArgs),
    /// Manage the images of a container runtime.
    Image(image::ImageArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve::serve(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Image(args) => image::image(args).await,
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn terminated() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
