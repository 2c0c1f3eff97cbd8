//! `kybernetes image import`: loads an image archive into a runtime's image store, so that
//! pods on that runtime find the image without a registry.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::cluster_args::{Runtime, parse_runtime};

/// The flags of `kybernetes image`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Import the images of an OCI image-layout archive (what `docker save` of Docker 25 and
    /// later, `skopeo copy … oci-archive:FILE` or `buildah push … oci-archive:FILE` write);
    /// prints the name of each image imported.
    Import(ImportArgs),
}

/// The flags of `kybernetes image import`.
#[derive(Debug, Args)]
struct ImportArgs {
    /// The archive (a tar file).
    #[arg(value_name = "ARCHIVE")]
    archive: PathBuf,
    /// The runtime to import into: `containerd:SOCKET` (into its `kybernetes` namespace,
    /// where `kybernetes serve --runtime containerd:SOCKET` finds it).
    #[arg(long, value_parser = parse_runtime, value_name = "RUNTIME")]
    runtime: Runtime,
    /// The containerd snapshotter to unpack the layers into.
    #[arg(long, default_value = "overlayfs", value_name = "NAME")]
    containerd_snapshotter: String,
}

/// Runs `kybernetes image …`.
pub async fn image(args: ImageArgs) -> anyhow::Result<()> {
    match args.command {
        ImageCommand::Import(args) => import(args).await,
    }
}

#[cfg(feature = "containerd")]
async fn import(args: ImportArgs) -> anyhow::Result<()> {
    use kybernetes::runtime::Runtime as _;
    let Runtime::Containerd(socket) = &args.runtime else {
        anyhow::bail!(
            "images import into containerd only (--runtime containerd:SOCKET): the fake and process runtimes run any image name"
        );
    };
    let tarball = std::fs::read(&args.archive)
        .with_context(|| format!("reading {}", args.archive.display()))?;
    let runtime =
        crate::cluster_args::containerd(socket, &args.containerd_snapshotter, None, false).await?;
    let images = runtime
        .import_image(tarball.into())
        .await
        .with_context(|| format!("importing {}", args.archive.display()))?;
    for image in &images {
        println!("{}", image.repo_tags.join(" "));
    }
    Ok(())
}

#[cfg(not(feature = "containerd"))]
async fn import(args: ImportArgs) -> anyhow::Result<()> {
    // parse_runtime refuses containerd:SOCKET in this build, so only fake or process get here.
    anyhow::bail!(
        "{:?} has no image store to import into: images import into containerd (a build with the containerd feature)",
        args.runtime
    )
}
