//! `kybernetes serve`: a cluster served over HTTPS, with its certificates and a kubeconfig.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use kybernetes::apiserver::serving::{ServingConfig, TokenFile};

use crate::cluster_args::ClusterArgs;

/// The flags of `kybernetes serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to serve HTTPS on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:6443", value_name = "ADDR")]
    listen: SocketAddr,
    /// Where the cluster keeps its state (`kybernetes.db`), certificates (`pki/`) and, by
    /// default, its kubeconfig. Without it, everything lives in memory.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Where to write the admin kubeconfig (default: `<data-dir>/kubeconfig`, or a file in
    /// the temp directory that is removed at exit).
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// A CSV file of bearer tokens, `token,user,uid,"group1,group2"` per line, as upstream's
    /// `--token-auth-file`.
    #[arg(long, value_name = "FILE")]
    token_auth_file: Option<PathBuf>,
    /// Let requests without credentials in as `system:anonymous` (otherwise they get 401).
    #[arg(long)]
    anonymous_auth: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Serves until SIGINT or SIGTERM.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut serving = ServingConfig::new(args.listen);
    serving.pki_dir = args.data_dir.as_ref().map(|d| d.join("pki"));
    serving.anonymous = args.anonymous_auth;
    if let Some(path) = &args.token_auth_file {
        serving.token_file = Some(TokenFile::load(path)?);
    }
    let cluster = args
        .cluster
        .builder(args.data_dir.as_deref())
        .await?
        .serving(serving)
        .start()
        .await?;
    let (path, temporary) = match (&args.kubeconfig, &args.data_dir) {
        (Some(p), _) => (p.clone(), false),
        (None, Some(dir)) => (dir.join("kubeconfig"), false),
        (None, None) => (
            std::env::temp_dir().join(format!("kybernetes-{}.kubeconfig", std::process::id())),
            true,
        ),
    };
    let kubeconfig = cluster.kubeconfig().context("the cluster is not serving")?;
    kubeconfig
        .write(&path)
        .with_context(|| format!("writing the kubeconfig to {}", path.display()))?;
    println!(
        "Serving {}; use it with: export KUBECONFIG={}",
        kubeconfig.server(),
        path.display()
    );
    let waited = crate::terminated().await;
    cluster.shutdown().await?;
    if temporary && let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!(path = %path.display(), error = %e, "removing the kubeconfig");
    }
    waited
}
