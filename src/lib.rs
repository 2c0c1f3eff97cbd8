//! kybernetes: Kubernetes as a Rust library. Add one dependency and get a running cluster
//! inside your process: an API server with Kubernetes semantics over a pluggable store,
//! reached through an ordinary `kube::Client`.
//!
//! ```no_run
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::api::{Api, PostParams};
//! use kybernetes::Cluster;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = Cluster::builder().start().await?;
//! let cms: Api<ConfigMap> = Api::default_namespaced(cluster.client());
//! let mut cm = ConfigMap::default();
//! cm.metadata.name = Some("settings".into());
//! cms.create(&PostParams::default(), &cm).await?;
//! cluster.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! The crates behind the facade are re-exported: [`core`], [`store`], [`apiserver`], [`sched`],
//! [`controllers`], [`runtime`], [`net`], [`ingress`] and [`node`].

// The facade's `Error` wraps the API server's `Status`; see kybernetes-apiserver for why it is not boxed.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

pub use kybernetes_apiserver as apiserver;
pub use kybernetes_controllers as controllers;
pub use kybernetes_core as core;
pub use kybernetes_ingress as ingress;
pub use kybernetes_net as net;
pub use kybernetes_node as node;
pub use kybernetes_runtime as runtime;
pub use kybernetes_sched as sched;
pub use kybernetes_store as store;

mod apply;
mod cluster;
pub mod control_plane;
pub mod kubelet_connection;
mod kubelet_streams;
pub mod leader;

pub use apply::{APPLY_FIELD_MANAGER, ApplyOutcome, split_yaml_documents};
pub use cluster::{Cluster, ClusterBuilder};
pub use control_plane::ControlPlaneConfig;
pub use leader::{LeaderElectionConfig, LeaderElector};

/// Errors of the facade.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused a request.
    #[error("api server: {0}")]
    Api(#[from] kybernetes_core::ApiError),
    /// A client call failed.
    #[error("client: {0}")]
    Kube(#[from] kube::Error),
    /// The network could not be set up.
    #[error("network: {0}")]
    Network(#[from] kybernetes_net::Error),
    /// A store backend failed.
    #[error("store: {0}")]
    Store(#[from] kybernetes_store::Error),
    /// The HTTPS server could not start (certificates, TLS, the listen address).
    #[error("serving: {0}")]
    Serving(#[from] kybernetes_apiserver::serving::ServingError),
    /// Certificates or a kubeconfig could not be written.
    #[error("certificates: {0}")]
    Pki(#[from] kybernetes_apiserver::serving::PkiError),
    /// The cluster DNS server could not bind its address.
    #[error("cluster DNS on {addr}: {source}")]
    Dns {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The Ingress controller could not start.
    #[error("ingress controller: {0}")]
    Ingress(#[from] kybernetes_ingress::Error),
    /// A manifest could not be parsed.
    #[error("manifest document {index}: {message}")]
    Manifest {
        /// Zero-based document index in the YAML stream.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// The local-path provisioner's directory could not be created.
    #[error("volume directory: {0}")]
    VolumeDirectory(#[source] std::io::Error),
    /// The scheduler configuration is invalid, or conflicts with a custom scheduler.
    #[error("scheduler configuration: {0}")]
    SchedulerConfig(#[from] kybernetes_sched::ConfigError),
    /// A wait ran out of time.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
}

/// `Result` with the facade's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A store handle as the builder takes it.
pub type DynStore = Arc<dyn kybernetes_store::Store>;
