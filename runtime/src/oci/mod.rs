//! What the runtimes that run containers through runc share: the OCI runtime spec built from
//! a container config, capabilities and the user, pod network namespaces and probes inside
//! them, the container's cgroup (stats and OOM kills), and OCI image layouts read from an
//! archive. `ContainerdRuntime` hands the spec to containerd; `ProcessRuntime`'s isolated
//! mode hands it to runc itself.

pub(crate) mod capabilities;
pub(crate) mod cgroup;
pub(crate) mod layout;
pub(crate) mod netns;
pub(crate) mod probe;
pub(crate) mod spec;
pub(crate) mod user;

use crate::Error;

/// An [`Error::Backend`] for a failed call.
pub(crate) fn backend(
    context: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::Backend {
        context: context.into(),
        source: Some(Box::new(source)),
    }
}
