//! `kybernetes run`: a cluster, or one control-plane replica of it, with no network listener.
//!
//! Several `kybernetes run --store etcd:... --leader-elect` processes share one etcd: each
//! serves the API from its own watch cache, and only the elected one runs the scheduler and
//! the controllers.

use std::time::Duration;

use clap::Args;
use kybernetes::{ControlPlaneConfig, LeaderElectionConfig};

use crate::cluster_args::ClusterArgs;

/// The flags of `kybernetes run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Run the scheduler and controllers only while this process holds the leader Lease.
    #[arg(long)]
    leader_elect: bool,
    /// This process's identity in the leader election (default: kybernetes-<pid>).
    #[arg(long, value_name = "ID")]
    identity: Option<String>,
    /// How long a leader Lease lasts, in seconds.
    #[arg(long, default_value_t = 15, value_name = "SECS")]
    lease_duration: u64,
    /// Run only the API server and the nodes: no scheduler and no controllers.
    #[arg(long)]
    no_control_plane: bool,
}

/// Runs until SIGINT or SIGTERM.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut builder = args.cluster.builder(None).await?;
    if args.no_control_plane {
        builder = builder.without_control_plane();
    } else {
        let mut cp = ControlPlaneConfig::default();
        if args.leader_elect {
            let identity = args
                .identity
                .unwrap_or_else(|| format!("kybernetes-{}", std::process::id()));
            let lease = args.lease_duration.max(1);
            let mut election = LeaderElectionConfig::new("kybernetes-control-plane", identity);
            election.lease_duration = Duration::from_secs(lease);
            election.renew_deadline = Duration::from_secs((lease * 2 / 3).max(1));
            election.retry_period = Duration::from_millis((lease * 1000 / 6).clamp(100, 2000));
            cp.leader_election = Some(election);
        }
        builder = builder.control_plane(cp);
    }
    let cluster = builder.start().await?;
    println!("ready");
    crate::terminated().await?;
    cluster.shutdown().await?;
    Ok(())
}
