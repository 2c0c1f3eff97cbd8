//! The [`Runtime`] trait: CRI's `RuntimeService` and `ImageService` as one async trait.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::broadcast;

use crate::Result;
use crate::container::{ContainerConfig, ContainerEvent, ContainerFilter, ContainerStatus};
use crate::image::Image;
use crate::probe::{self, ProbeRequest, ProbeResult};
use crate::pull_auth::PullAuth;
use crate::sandbox::{PodSandboxConfig, PodSandboxFilter, PodSandboxStatus};
use crate::stream::{
    AttachRequest, ContainerStats, ExecRequest, ExecResult, ExecSession, LogOptions, LogStream,
    PortForwardStream,
};

/// The runtime's name and version (CRI `VersionResponse`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeVersion {
    /// The runtime's name; container ids are reported as `<name>://<id>` (`containerd`,
    /// `fake`).
    pub runtime_name: String,
    /// The runtime's version.
    pub runtime_version: String,
    /// The CRI API version it speaks (`v1`).
    pub runtime_api_version: String,
}

/// A container runtime, shaped like the Kubernetes CRI: pod sandboxes, containers, exec,
/// logs, stats and images.
///
/// The node agent only calls this trait, so the fake, local-process and containerd backends
/// are interchangeable. See the crate docs for how to implement it. Every time it reports
/// (`created_at`, `started_at`, …) comes from the cluster [`Clock`](kybernetes_core::Clock).
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The runtime's name and version.
    async fn version(&self) -> Result<RuntimeVersion>;

    /// Creates and starts a pod sandbox; returns its id. Idempotence is the caller's job: two
    /// calls make two sandboxes.
    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String>;
    /// Stops a sandbox and every container in it (forcibly). Stopping a stopped sandbox is
    /// not an error.
    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<()>;
    /// Removes a sandbox and its containers. Removing an unknown sandbox is not an error.
    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<()>;
    /// One sandbox's status.
    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus>;
    /// The sandboxes that pass `filter`.
    async fn list_pod_sandboxes(&self, filter: &PodSandboxFilter) -> Result<Vec<PodSandboxStatus>>;

    /// Creates a container in a sandbox; returns its id. The image must be present.
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> Result<String>;
    /// Starts a created container.
    async fn start_container(&self, container_id: &str) -> Result<()>;
    /// Stops a container: SIGTERM, then SIGKILL once `grace` has passed. Returns once it has
    /// exited. Stopping an exited container is not an error.
    async fn stop_container(&self, container_id: &str, grace: Duration) -> Result<()>;
    /// Removes a container (killing it first if it still runs). Removing an unknown
    /// container is not an error.
    async fn remove_container(&self, container_id: &str) -> Result<()>;
    /// One container's status.
    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus>;
    /// The containers that pass `filter`.
    async fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<ContainerStatus>>;
    /// Container lifecycle events from now on (CRI `GetContainerEvents`). A receiver that
    /// lags must re-list.
    fn container_events(&self) -> broadcast::Receiver<ContainerEvent>;

    /// Container lifecycle events of the pods on `node` only, from now on. One runtime can
    /// serve every node agent of an in-process cluster (the fake runtime does), and an agent
    /// that heard every node's events would wake once per event per node: cost that grows
    /// with the square of the cluster. A runtime that serves one node gives all its events.
    fn node_container_events(&self, _node: &str) -> broadcast::Receiver<ContainerEvent> {
        self.container_events()
    }

    /// Runs a command in a running container and waits for it, up to `timeout`
    /// ([`Error::Timeout`](crate::Error::Timeout) after).
    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecResult>;
    /// Starts an interactive command in a running container.
    async fn exec(&self, container_id: &str, request: ExecRequest) -> Result<ExecSession>;
    /// Joins the streams of a running container's main process (CRI `Attach`). Its exit
    /// future resolves with the container's exit code once it exits. The default refuses
    /// ([`Error::Unsupported`](crate::Error::Unsupported)).
    async fn attach(&self, _container_id: &str, _request: AttachRequest) -> Result<ExecSession> {
        Err(crate::Error::Unsupported("attach".into()))
    }
    /// Opens one connection to `port` inside a ready sandbox's network namespace (CRI
    /// `PortForward`); fails as a refused connection would if nothing listens there. The
    /// default refuses ([`Error::Unsupported`](crate::Error::Unsupported)).
    async fn port_forward(
        &self,
        _sandbox_id: &str,
        _port: u16,
    ) -> Result<Box<dyn PortForwardStream>> {
        Err(crate::Error::Unsupported("port-forward".into()))
    }
    /// A container's log lines (following new ones with `options.follow`).
    async fn logs(&self, container_id: &str, options: &LogOptions) -> Result<LogStream>;
    /// A container's CPU and memory usage.
    async fn container_stats(&self, container_id: &str) -> Result<ContainerStats>;

    /// Pulls an image (a registry is reached only by backends that have one).
    async fn pull_image(&self, image: &str) -> Result<Image>;
    /// Pulls an image with registry credentials (the kubelet's from the pod's
    /// `imagePullSecrets`). The default ignores them and calls
    /// [`pull_image`](Runtime::pull_image), right for backends that reach no registry.
    async fn pull_image_with(&self, image: &str, _auth: &PullAuth) -> Result<Image> {
        self.pull_image(image).await
    }
    /// The image known by `image`, if present.
    async fn image_status(&self, image: &str) -> Result<Option<Image>>;
    /// Every image present.
    async fn list_images(&self) -> Result<Vec<Image>>;
    /// Removes an image. Removing an absent image is not an error.
    async fn remove_image(&self, image: &str) -> Result<()>;
    /// Imports images from an OCI image-layout tarball; returns what it imported.
    async fn import_image(&self, tarball: Bytes) -> Result<Vec<Image>>;

    /// Releases everything the runtime started: the cluster calls it once on shutdown, after
    /// the node agents stopped. A runtime of local processes kills every process it started;
    /// the default does nothing.
    async fn shutdown(&self) -> Result<()> {
        Ok(())
    }

    /// Lets go of everything the runtime started without stopping it, as a node agent's
    /// process that exits leaves its containers running: the cluster calls it instead of
    /// [`shutdown`](Runtime::shutdown) when it stops keeping its workloads. A runtime that
    /// keeps its state in its backend (containerd) stops watching and forgets its tables, and
    /// a new runtime on the same backend recovers them; the default does nothing (the fake
    /// keeps everything in memory, which the next cluster reuses).
    async fn detach(&self) -> Result<()> {
        Ok(())
    }

    /// Runs a probe (or an `httpGet` lifecycle hook) against a container. The default runs
    /// `exec` probes through [`exec_sync`](Runtime::exec_sync) and connects for real for
    /// `tcpSocket` and `httpGet` (see [`probe`](crate::probe)). Fakes override it to script
    /// outcomes.
    async fn probe(&self, container_id: &str, request: &ProbeRequest) -> ProbeResult {
        probe::run_default(self, container_id, request).await
    }
}
