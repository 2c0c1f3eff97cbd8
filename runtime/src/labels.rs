//! The labels and annotations the node agent puts on sandboxes and containers, so that a
//! restarted agent finds its pods again in [`Runtime::list_pod_sandboxes`](crate::Runtime::list_pod_sandboxes)
//! and [`Runtime::list_containers`](crate::Runtime::list_containers). The `io.kubernetes.*`
//! names are upstream's.

/// Pod name (sandboxes and containers).
pub const POD_NAME: &str = "io.kubernetes.pod.name";
/// Pod namespace (sandboxes and containers).
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Pod UID (sandboxes and containers).
pub const POD_UID: &str = "io.kubernetes.pod.uid";
/// Container name (containers).
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// The node the sandbox was run for; lets several node agents share one runtime (as the
/// in-process cluster does with one `FakeRuntime`) without adopting each other's pods.
pub const NODE_NAME: &str = "kybernetes.io/node-name";

/// Annotation: a hash of the container's spec, to detect spec changes.
pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
/// Annotation: the container's restart count.
pub const CONTAINER_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
/// Annotation: the pod's termination grace period, in seconds.
pub const POD_TERMINATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
/// Annotation: whether the container is an init container (`"true"`).
pub const CONTAINER_INIT: &str = "kybernetes.io/init-container";
