//! containerd: a cluster whose node runs its pods on a real containerd daemon. The example
//! imports an image archive into containerd (no registry needed), runs a pod of it that
//! prints a line and exits, and prints the pod's log read back through the API.
//!
//! Needs root, a containerd 1.6+ daemon (`apt-get install containerd runc`) and an OCI
//! image-layout archive of an image with `/bin/sh`, e.g. made with
//! `skopeo copy docker://busybox:1.36 oci-archive:busybox.tar:busybox:1.36`. Run with
//!
//! ```text
//! cargo run --example containerd --features containerd -- /run/containerd/containerd.sock busybox.tar
//! ```
//!
//! (or set `KYB_CONTAINERD_SOCKET` and `KYB_IMAGE_ARCHIVE`). `KYB_CONTAINERD_SNAPSHOTTER`
//! picks the snapshotter (default `overlayfs`; `native` where overlayfs does not mount).

use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams, PostParams};
use kube::runtime::wait::await_condition;
use kybernetes::Cluster;
use kybernetes::runtime::Runtime;
use kybernetes::runtime::containerd::ContainerdRuntime;
use serde_json::json;

/// The first command-line argument left, else the environment variable `var`.
fn setting(
    args: &mut impl Iterator<Item = String>,
    var: &str,
    what: &str,
) -> anyhow::Result<String> {
    match args.next().or_else(|| std::env::var(var).ok()) {
        Some(v) => Ok(v),
        None => bail!("give the {what} as an argument or in ${var}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let socket = setting(&mut args, "KYB_CONTAINERD_SOCKET", "containerd socket")?;
    let archive = setting(&mut args, "KYB_IMAGE_ARCHIVE", "image archive")?;
    let snapshotter =
        std::env::var("KYB_CONTAINERD_SNAPSHOTTER").unwrap_or_else(|_| "overlayfs".into());

    let runtime = ContainerdRuntime::builder()
        .snapshotter(snapshotter)
        .connect(&socket)
        .await
        .with_context(|| format!("connecting to containerd at {socket}"))?;
    let tarball = std::fs::read(&archive).with_context(|| format!("reading {archive}"))?;
    let images = runtime.import_image(tarball.into()).await?;
    let image = images
        .first()
        .and_then(|i| i.repo_tags.first())
        .cloned()
        .context("the archive named no image")?;
    println!("imported {image} into containerd (namespace kybernetes)");

    let cluster = Cluster::builder().runtime(runtime).start().await?;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "hello" },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "hello",
                "image": image,
                "command": ["/bin/sh", "-c", "echo hello from a containerd task"]
            }]
        }
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    let done = await_condition(pods.clone(), "hello", |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref()?.phase.as_deref())
            .is_some_and(|phase| phase == "Succeeded" || phase == "Failed")
    });
    let pod = tokio::time::timeout(Duration::from_secs(120), done)
        .await
        .context("the pod did not finish within 120 s")??
        .context("the pod is gone")?;
    let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
    let log = pods.logs("hello", &LogParams::default()).await?;
    println!("pod hello {phase}; its log:\n{}", log.trim_end());
    cluster.shutdown().await?;
    if phase != "Succeeded" {
        bail!("the pod ended {phase}");
    }
    Ok(())
}
