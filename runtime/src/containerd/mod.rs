//! [`ContainerdRuntime`]: a [`Runtime`](crate::Runtime) backed by a containerd daemon (1.6 or
//! later), through containerd's own gRPC services (not CRI).
//!
//! It connects to a socket and keeps everything in its own containerd namespace (default
//! `kybernetes`), so it never sees or touches what other clients of the same daemon run.
//!
//! What works so far:
//! - **images**: [`import_image`](crate::Runtime::import_image) loads an OCI image-layout
//!   tarball (what `ctr images import` does: content, then an image record, then the layers
//!   unpacked into the snapshotter, overlayfs by default); `image_status`, `list_images` and
//!   `remove_image` read and change containerd's image store. `pull_image` finds an image
//!   already present; reaching a registry is not implemented yet, so an absent image fails
//!   with [`Error::ImagePull`](crate::Error::ImagePull), which the node agent reports as
//!   `ErrImagePull`.
//! - **sandboxes and containers** are not implemented yet and answer
//!   [`Error::Unsupported`](crate::Error::Unsupported).

mod images;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use containerd_client::services::v1::version_client::VersionClient;
use containerd_client::tonic::metadata::MetadataValue;
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{self, Code, Request, Status};
use tokio::sync::broadcast;

use crate::container::{ContainerConfig, ContainerEvent, ContainerFilter, ContainerStatus};
use crate::image::Image;
use crate::runtime::{Runtime, RuntimeVersion};
use crate::sandbox::{PodSandboxConfig, PodSandboxFilter, PodSandboxStatus};
use crate::stream::{ContainerStats, ExecRequest, ExecResult, ExecSession, LogOptions, LogStream};
use crate::{Error, Result};

/// The containerd namespace a runtime works in unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "kybernetes";

/// The snapshotter images are unpacked into unless told otherwise.
pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";

/// Builds a [`ContainerdRuntime`].
#[derive(Debug)]
#[must_use]
pub struct ContainerdRuntimeBuilder {
    namespace: String,
    snapshotter: String,
}

impl Default for ContainerdRuntimeBuilder {
    fn default() -> Self {
        ContainerdRuntimeBuilder {
            namespace: DEFAULT_NAMESPACE.into(),
            snapshotter: DEFAULT_SNAPSHOTTER.into(),
        }
    }
}

impl ContainerdRuntimeBuilder {
    /// The containerd namespace to work in (default [`DEFAULT_NAMESPACE`]).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The snapshotter to unpack images into (default [`DEFAULT_SNAPSHOTTER`]); `native`
    /// works where overlayfs cannot be mounted.
    pub fn snapshotter(mut self, snapshotter: impl Into<String>) -> Self {
        self.snapshotter = snapshotter.into();
        self
    }

    /// Connects to the containerd socket at `socket` and checks that the daemon answers.
    pub async fn connect(self, socket: impl AsRef<std::path::Path>) -> Result<ContainerdRuntime> {
        let socket = socket.as_ref();
        let namespace = MetadataValue::try_from(self.namespace.as_str()).map_err(|e| {
            backend(
                format!(
                    "containerd namespace {:?} is not a valid header value",
                    self.namespace
                ),
                e,
            )
        })?;
        let channel = containerd_client::connect(socket)
            .await
            .map_err(|e| backend(format!("connect to containerd at {}", socket.display()), e))?;
        let runtime = ContainerdRuntime {
            channel,
            namespace,
            snapshotter: self.snapshotter,
            events: broadcast::channel(1024).0,
        };
        runtime.version().await?;
        Ok(runtime)
    }
}

/// A [`Runtime`] whose containers run on a containerd daemon; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct ContainerdRuntime {
    channel: Channel,
    namespace: MetadataValue<tonic::metadata::Ascii>,
    snapshotter: String,
    events: broadcast::Sender<ContainerEvent>,
}

impl ContainerdRuntime {
    /// A builder, to choose the namespace or the snapshotter.
    pub fn builder() -> ContainerdRuntimeBuilder {
        ContainerdRuntimeBuilder::default()
    }

    /// Connects to the containerd socket at `socket` with the default namespace and
    /// snapshotter.
    pub async fn connect(socket: impl AsRef<std::path::Path>) -> Result<ContainerdRuntime> {
        ContainerdRuntime::builder().connect(socket).await
    }

    /// A request in this runtime's namespace, and in `lease` if given (content written under
    /// a lease is not garbage-collected until the lease goes).
    fn request<T>(&self, message: T, lease: Option<&str>) -> Result<Request<T>> {
        let mut request = Request::new(message);
        let md = request.metadata_mut();
        md.insert("containerd-namespace", self.namespace.clone());
        if let Some(lease) = lease {
            let value = MetadataValue::try_from(lease)
                .map_err(|e| backend(format!("lease id {lease:?}"), e))?;
            md.insert("containerd-lease", value);
        }
        Ok(request)
    }
}

/// An [`Error::Backend`] for a failed call.
fn backend(
    context: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::Backend {
        context: context.into(),
        source: Some(Box::new(source)),
    }
}

/// An [`Error::Backend`] for a failed gRPC call to containerd.
fn grpc(context: impl Into<String>, status: Status) -> Error {
    backend(context, status)
}

/// Whether a gRPC status says the thing asked for does not exist.
fn is_not_found(status: &Status) -> bool {
    status.code() == Code::NotFound
}

fn not_yet(what: &str) -> Error {
    Error::Unsupported(format!("{what} on containerd (not implemented yet)"))
}

#[async_trait]
impl Runtime for ContainerdRuntime {
    async fn version(&self) -> Result<RuntimeVersion> {
        let response = VersionClient::new(self.channel.clone())
            .version(self.request((), None)?)
            .await
            .map_err(|s| grpc("containerd version", s))?
            .into_inner();
        Ok(RuntimeVersion {
            runtime_name: "containerd".into(),
            runtime_version: response.version,
            runtime_api_version: "v1".into(),
        })
    }

    async fn run_pod_sandbox(&self, _config: &PodSandboxConfig) -> Result<String> {
        Err(not_yet("pod sandboxes"))
    }
    async fn stop_pod_sandbox(&self, _sandbox_id: &str) -> Result<()> {
        Err(not_yet("pod sandboxes"))
    }
    async fn remove_pod_sandbox(&self, _sandbox_id: &str) -> Result<()> {
        Err(not_yet("pod sandboxes"))
    }
    async fn pod_sandbox_status(&self, _sandbox_id: &str) -> Result<PodSandboxStatus> {
        Err(not_yet("pod sandboxes"))
    }
    async fn list_pod_sandboxes(
        &self,
        _filter: &PodSandboxFilter,
    ) -> Result<Vec<PodSandboxStatus>> {
        Err(not_yet("pod sandboxes"))
    }

    async fn create_container(
        &self,
        _sandbox_id: &str,
        _config: &ContainerConfig,
        _sandbox_config: &PodSandboxConfig,
    ) -> Result<String> {
        Err(not_yet("containers"))
    }
    async fn start_container(&self, _container_id: &str) -> Result<()> {
        Err(not_yet("containers"))
    }
    async fn stop_container(&self, _container_id: &str, _grace: Duration) -> Result<()> {
        Err(not_yet("containers"))
    }
    async fn remove_container(&self, _container_id: &str) -> Result<()> {
        Err(not_yet("containers"))
    }
    async fn container_status(&self, _container_id: &str) -> Result<ContainerStatus> {
        Err(not_yet("containers"))
    }
    async fn list_containers(&self, _filter: &ContainerFilter) -> Result<Vec<ContainerStatus>> {
        Err(not_yet("containers"))
    }
    fn container_events(&self) -> broadcast::Receiver<ContainerEvent> {
        self.events.subscribe()
    }

    async fn exec_sync(
        &self,
        _container_id: &str,
        _cmd: &[String],
        _timeout: Duration,
    ) -> Result<ExecResult> {
        Err(not_yet("exec"))
    }
    async fn exec(&self, _container_id: &str, _request: ExecRequest) -> Result<ExecSession> {
        Err(not_yet("exec"))
    }
    async fn logs(&self, _container_id: &str, _options: &LogOptions) -> Result<LogStream> {
        Err(not_yet("logs"))
    }
    async fn container_stats(&self, _container_id: &str) -> Result<ContainerStats> {
        Err(not_yet("stats"))
    }

    async fn pull_image(&self, image: &str) -> Result<Image> {
        images::pull(self, image).await
    }
    async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        images::status(self, image).await
    }
    async fn list_images(&self) -> Result<Vec<Image>> {
        images::list(self).await
    }
    async fn remove_image(&self, image: &str) -> Result<()> {
        images::remove(self, image).await
    }
    async fn import_image(&self, tarball: Bytes) -> Result<Vec<Image>> {
        images::import(self, tarball).await
    }
}
