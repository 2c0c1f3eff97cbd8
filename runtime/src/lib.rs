//! kybernetes-runtime: the [`Runtime`] trait, shaped like the Kubernetes Container Runtime
//! Interface (CRI), and [`FakeRuntime`], its in-memory implementation for tests.
//!
//! The node agent drives every container through this trait: it runs a pod sandbox, creates
//! and starts containers in it, watches [`container_events`](Runtime::container_events) to
//! learn about exits without polling, probes containers, and stops them with a grace period.
//! The types here are plain Rust (no `k8s-openapi`): the node agent translates a `Pod` into
//! a [`PodSandboxConfig`] and [`ContainerConfig`]s, as the kubelet translates a pod into CRI
//! requests.
//!
//! # How to implement your own runtime
//!
//! Implement [`Runtime`]; [`FakeRuntime`] (in `src/fake/`) is the worked example. The rules
//! the node agent relies on:
//!
//! 1. **Sandboxes carry the pod.** `run_pod_sandbox` stores the config's labels and metadata
//!    and reports them back in [`PodSandboxStatus`]; a restarted node agent finds its pods
//!    again by listing sandboxes with the [`labels::NODE_NAME`] and [`labels::POD_UID`]
//!    labels. Report the config's `pod_ip` as the sandbox `ip`. The network itself is set up
//!    by the `Network` before the sandbox runs; a backend that runs processes joins
//!    `netns_path` if it is set.
//! 2. **Containers carry their name and attempt.** Keep the [`ContainerConfig`]'s metadata,
//!    labels and annotations and report them in [`ContainerStatus`]: the agent computes
//!    `restartCount` from `metadata.attempt` and detects spec changes from annotations.
//! 3. **States move one way**: [`ContainerState::Created`] → `Running { started_at }` →
//!    `Exited { exit_code, reason, .. }`. Use reason `Completed` for exit code 0 and `Error`
//!    otherwise (`OOMKilled` when the memory limit killed it). Read wall times from the
//!    cluster [`Clock`](kybernetes_core::Clock), never from the system clock, so tests under
//!    a paused tokio clock stay consistent.
//! 4. **Push events.** Send a [`ContainerEvent`] on every create, start, exit and removal,
//!    with the pod UID; the agent reacts to `Stopped` at once. `FakeRuntime` keeps one
//!    `tokio::sync::broadcast::Sender` and hands out `subscribe()`rs.
//! 5. **Stop means TERM, then KILL.** `stop_container(id, grace)` sends SIGTERM, waits up to
//!    `grace`, then sends SIGKILL, and returns once the container has exited. Stopping or
//!    removing something already gone is not an error.
//! 6. **Images.** `create_container` fails with [`Error::ImageNotFound`] if the image is
//!    absent (the agent pulls first, following `imagePullPolicy`); `pull_image` fails with
//!    `ImageNotFound` or [`Error::ImagePull`], which the agent reports as `ErrImagePull`.
//! 7. **Probes.** The default [`Runtime::probe`] is usually right: `exec` probes go through
//!    `exec_sync`, `tcpSocket` and `httpGet` probes connect to the pod IP for real. A runtime
//!    whose containers have no reachable address (like the fake) overrides it.
//! 8. **Streams.** `exec` returns the streams asked for and an exit future; `attach` (joins the
//!    main process) and `port_forward` (one connection to a port in the sandbox's network
//!    namespace) default to [`Error::Unsupported`], so a backend adds them when it can.
//!
//! A skeleton, with the fake's choices in comments:
//!
//! ```ignore
//! #[async_trait::async_trait]
//! impl Runtime for MyRuntime {
//!     async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
//!         // fake: allocate an id, store PodSandboxStatus { state: Ready, ip: config.pod_ip,
//!         // labels: config.labels.clone(), .. } in a map behind a std Mutex.
//!     }
//!     async fn start_container(&self, id: &str) -> Result<()> {
//!         // fake: state = Running { started_at: clock.now() }, send a Started event, and if
//!         // the container's script says "exit after 5 s", spawn a task that sleeps with
//!         // tokio::time and then marks it Exited and sends a Stopped event.
//!     }
//!     async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
//!         // fake: record Signal::Term; exit at once unless scripted to ignore TERM, else
//!         // tokio::time::sleep(grace), record Signal::Kill and exit with 137.
//!     }
//!     // ...
//! }
//! ```
//!
//! # Scripting the fake
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), kybernetes_runtime::Error> {
//! use std::time::Duration;
//! use kybernetes_runtime::*;
//! use kybernetes_runtime::fake::{ContainerScript, ProbeScript};
//!
//! let fake = FakeRuntime::default();
//! fake.script_container("worker", ContainerScript::new().crash_after(Duration::from_secs(5)));
//! fake.script_image("web:1", ContainerScript::new().readiness(ProbeScript::fail()));
//!
//! let sandbox = PodSandboxConfig::default();
//! let sid = fake.run_pod_sandbox(&sandbox).await?;
//! fake.pull_image("busybox").await?;
//! let config = ContainerConfig {
//!     metadata: ContainerMetadata { name: "worker".into(), attempt: 0 },
//!     image: "busybox".into(),
//!     ..Default::default()
//! };
//! let id = fake.create_container(&sid, &config, &sandbox).await?;
//! let mut events = fake.container_events();
//! fake.start_container(&id).await?;
//! tokio::time::sleep(Duration::from_secs(6)).await;
//! assert_eq!(fake.container_status(&id).await?.state.exit_code(), Some(1));
//! # let _ = events.try_recv();
//! # Ok(()) }
//! ```

pub mod container;
#[cfg(feature = "containerd")]
pub mod containerd;
pub mod fake;
pub mod image;
mod index;
pub mod labels;
mod oci;
pub mod probe;
pub mod process;
pub mod pull_auth;
mod runtime;
pub mod sandbox;
pub mod security;
mod session_pipes;
pub mod stream;

use std::time::Duration;

pub use container::{
    ContainerConfig, ContainerEvent, ContainerEventKind, ContainerFilter, ContainerMetadata,
    ContainerResources, ContainerState, ContainerStateKind, ContainerStatus, Mount,
};
#[cfg(feature = "containerd")]
pub use containerd::ContainerdRuntime;
pub use fake::FakeRuntime;
pub use image::Image;
pub use probe::{HttpScheme, ProbeAction, ProbeKind, ProbeRequest, ProbeResult};
pub use process::ProcessRuntime;
pub use pull_auth::{PullAuth, RegistryCredential};
pub use runtime::{Runtime, RuntimeVersion};
pub use sandbox::{
    DnsConfig, PodSandboxConfig, PodSandboxFilter, PodSandboxMetadata, PodSandboxState,
    PodSandboxStatus, PortMapping,
};
pub use security::ContainerSecurity;
pub use stream::{
    AttachRequest, ContainerStats, ExecRequest, ExecResult, ExecSession, LogLine, LogOptions,
    LogStream, LogStreamKind, PortForwardStream, TerminalSize,
};

/// Errors a runtime returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No sandbox, container or image with that id.
    #[error("{kind} {id} not found")]
    NotFound {
        /// `sandbox`, `container` or `image`.
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The image is not present (on create) or the registry does not know it (on pull).
    #[error("image {image} not found")]
    ImageNotFound {
        /// The image reference.
        image: String,
    },
    /// Pulling an image failed.
    #[error("failed to pull image {image}: {message}")]
    ImagePull {
        /// The image reference.
        image: String,
        /// What went wrong.
        message: String,
        /// The cause, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The object is in the wrong state for the call (starting a running container, exec
    /// in an exited one).
    #[error("{id}: {message}")]
    InvalidState {
        /// The sandbox or container.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// The call did not finish in time.
    #[error("{operation} timed out after {timeout:?}")]
    Timeout {
        /// What timed out.
        operation: String,
        /// The limit.
        timeout: Duration,
    },
    /// The backend does not support the call.
    #[error("{0} is not supported by this runtime")]
    Unsupported(String),
    /// The backend failed.
    #[error("runtime backend: {context}")]
    Backend {
        /// What the backend was doing.
        context: String,
        /// The cause.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// `Result` with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
