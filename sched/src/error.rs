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
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
