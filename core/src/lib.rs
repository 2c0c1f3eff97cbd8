//! kybernetes-core: the resource registry (GVK ↔ plural, scope, subresources), label and field
//! selectors, name and label validation, Kubernetes `Status` errors, the cluster clock and shared
//! cluster configuration.
//!
//! Nothing here does I/O; every other crate builds on these types.

pub mod clock;
pub mod config;
pub mod cron;
pub mod event_correlator;
pub mod event_writer;
pub mod fields;
pub mod hop_by_hop;
pub mod ipam;
pub mod persistent_volume;
pub mod pod_tls;
pub mod quantity;
pub mod registry;
pub mod selector;
pub mod status;
pub mod validation;

pub use clock::Clock;
pub use config::ClusterConfig;
pub use registry::{Registry, ResourceInfo};
pub use status::ApiError;
