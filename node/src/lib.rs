//! kybernetes-node: the node agent (upstream's kubelet).
//!
//! A [`NodeAgent`] registers its Node, heartbeats a Lease in `kube-node-lease`, watches the
//! pods bound to it (`spec.nodeName=<node>`) and runs each one through the
//! [`Runtime`](kybernetes_runtime::Runtime) and [`Network`](kybernetes_net::Network) traits:
//!
//! - `syncPod` per pod: sandbox and network (pod IP), init containers in order, then the app
//!   containers; restarts follow `restartPolicy` with exponential back-off
//!   ([`BackoffConfig`]); the status (phase, container states, conditions) is written through
//!   the `status` subresource only when it changed;
//! - liveness, readiness and startup probes with the upstream timing fields;
//! - environment from values with `$(VAR)` expansion, ConfigMap and Secret keys, pod fields,
//!   resource fields and `envFrom`;
//! - volumes under `<root>/pods/<uid>/volumes` (`emptyDir`, `configMap`, `secret`,
//!   `downwardAPI`, `projected`, `hostPath`, `persistentVolumeClaim` of `hostPath` or `local`
//!   volumes), API-data files refreshed in place on each resync, as bind mounts for the runtime;
//! - graceful deletion: `preStop` hook, SIGTERM, SIGKILL after the grace period, network
//!   teardown, sandbox removal, then the final delete;
//! - events (`Pulling`, `Pulled`, `Created`, `Started`, `Killing`, `Unhealthy`, `BackOff`,
//!   `Failed`);
//! - resource metrics ([`ResourceAnalyzer`]): the CPU and memory of each running container,
//!   which the API server serves as `metrics.k8s.io`.
//!
//! The agent reacts to watch events and to the runtime's container events; nothing polls.
//! Wall time comes from the configured [`Clock`](kybernetes_core::Clock) and durations from
//! `tokio::time`, so tests may run it under a paused tokio clock.

mod agent;
mod atomic_writer;
mod backoff;
mod config;
mod container_logs;
mod container_start;
mod container_streams;
mod context;
mod convert;
mod env;
mod events;
mod expansion;
mod lease;
mod node_status;
mod pod_dns;
mod pod_status;
mod pod_worker;
mod pod_workers;
mod probes;
mod pull_secrets;
mod resource_metrics;
mod security_context;
mod server;
mod service_env;
mod service_lister;
mod sync_pod;
mod termination;
mod volume_ownership;
mod volume_payload;
mod volumes;

pub use agent::NodeAgent;
pub use config::{BackoffConfig, NodeAgentConfig, NodeCapacity};
pub use container_logs::{ContainerLogRequest, container_logs};
pub use container_streams::{
    ContainerStreamTarget, attach_to_container, exec_in_container, port_forward_to_pod,
};
pub use lease::NODE_LEASE_NAMESPACE;
pub use node_status::KUBELET_VERSION;
pub use resource_metrics::{ContainerUsage, ResourceAnalyzer, ResourceSample};
pub use server::KubeletServer;
pub use service_lister::ServiceLister;

/// Errors of the node agent. Most are logged and retried; these are the ones registration
/// reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("kubernetes api: {context}")]
    Api {
        /// What the agent was doing.
        context: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The container runtime failed.
    #[error("container runtime: {context}")]
    Runtime {
        /// What the agent was doing.
        context: String,
        /// The cause.
        #[source]
        source: kybernetes_runtime::Error,
    },
    /// The network failed.
    #[error("network: {context}")]
    Network {
        /// What the agent was doing.
        context: String,
        /// The cause.
        #[source]
        source: kybernetes_net::Error,
    },
    /// The container asked for does not exist on this node (or no longer does).
    #[error("{message}")]
    ContainerNotFound {
        /// Which container, in upstream's words.
        message: String,
    },
}

impl Error {
    /// A closure turning a `kube::Error` into [`Error::Api`] with `context`.
    pub(crate) fn api(context: &'static str) -> impl FnOnce(kube::Error) -> Error {
        move |source| Error::Api {
            context: context.into(),
            source,
        }
    }
}

/// `Result` with the node agent's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
