//! The crate's error type.

/// Errors of the scheduler crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A pod was assumed onto a node the snapshot does not hold.
    #[error("node {node:?} is not in the snapshot")]
    NodeNotFound {
        /// The node's name.
        node: String,
    },
    /// A request to the API server failed.
    #[error("{action} failed")]
    Api {
        /// What the scheduler was doing (`bind pod default/web to node-1`).
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A pod's claims were not bound in time after the scheduler bound or asked to provision
    /// their volumes (upstream's `bindTimeoutSeconds`).
    #[error(
        "binding volumes: timed out waiting for the condition on persistentvolumeclaim {claim}"
    )]
    VolumeBindingTimeout {
        /// `namespace/name` of the claim.
        claim: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
