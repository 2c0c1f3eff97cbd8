//! Exec, attach and port-forward for the API server (upstream's kubelet `GetExec`,
//! `GetAttach` and `GetPortForward`): the running container or ready sandbox of a pod on
//! this node, and the runtime call that opens the streams.
//!
//! Containers and sandboxes are found by the pod UID the node agent labels them with, so a
//! newer pod of the same name never answers, and agents sharing one runtime never reach each
//! other's pods.

use kybernetes_runtime::{
    AttachRequest, ContainerFilter, ContainerStateKind, ExecRequest, ExecSession, PodSandboxFilter,
    PodSandboxState, PortForwardStream, Runtime, labels,
};

use crate::{Error, Result};

/// Which container of which pod a stream is for (the container name already defaulted by
/// the API server).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerStreamTarget {
    /// The pod's namespace (for messages).
    pub namespace: String,
    /// The pod's name (for messages).
    pub pod: String,
    /// The pod's UID.
    pub pod_uid: String,
    /// The container's name in the pod spec.
    pub container: String,
}

/// Runs `request.cmd` in the target's running container.
pub async fn exec_in_container(
    runtime: &dyn Runtime,
    target: &ContainerStreamTarget,
    request: ExecRequest,
) -> Result<ExecSession> {
    let id = running_container(runtime, target).await?;
    runtime
        .exec(&id, request)
        .await
        .map_err(|source| Error::Runtime {
            context: format!(
                "exec in container {:?} of pod {}/{}",
                target.container, target.namespace, target.pod
            ),
            source,
        })
}

/// Attaches to the main process of the target's running container.
pub async fn attach_to_container(
    runtime: &dyn Runtime,
    target: &ContainerStreamTarget,
    request: AttachRequest,
) -> Result<ExecSession> {
    let id = running_container(runtime, target).await?;
    runtime
        .attach(&id, request)
        .await
        .map_err(|source| Error::Runtime {
            context: format!(
                "attach to container {:?} of pod {}/{}",
                target.container, target.namespace, target.pod
            ),
            source,
        })
}

/// Opens a connection to `port` in the network namespace of pod `namespace/pod` (UID
/// `pod_uid`).
pub async fn port_forward_to_pod(
    runtime: &dyn Runtime,
    namespace: &str,
    pod: &str,
    pod_uid: &str,
    port: u16,
) -> Result<Box<dyn PortForwardStream>> {
    let filter = PodSandboxFilter {
        state: Some(PodSandboxState::Ready),
        ..Default::default()
    }
    .label(labels::POD_UID, pod_uid);
    let sandboxes = runtime
        .list_pod_sandboxes(&filter)
        .await
        .map_err(|source| Error::Runtime {
            context: format!("list the sandboxes of pod {namespace}/{pod}"),
            source,
        })?;
    let Some(sandbox) = sandboxes.into_iter().max_by_key(|s| s.metadata.attempt) else {
        return Err(Error::ContainerNotFound {
            message: format!("pod not found ({:?})", format!("{pod}_{namespace}")),
        });
    };
    runtime
        .port_forward(&sandbox.id, port)
        .await
        .map_err(|source| Error::Runtime {
            context: format!("error forwarding port {port} to pod {pod}, uid {pod_uid}"),
            source,
        })
}

/// The runtime id of the target's running container: the newest running attempt.
async fn running_container(
    runtime: &dyn Runtime,
    target: &ContainerStreamTarget,
) -> Result<String> {
    let filter = ContainerFilter {
        state: Some(ContainerStateKind::Running),
        ..Default::default()
    }
    .label(labels::POD_UID, &target.pod_uid)
    .label(labels::CONTAINER_NAME, &target.container);
    let found = runtime
        .list_containers(&filter)
        .await
        .map_err(|source| Error::Runtime {
            context: format!(
                "list the instances of container {:?} in pod {}/{}",
                target.container, target.namespace, target.pod
            ),
            source,
        })?;
    found
        .into_iter()
        .max_by_key(|c| (c.metadata.attempt, c.created_at))
        .map(|c| c.id)
        .ok_or_else(|| Error::ContainerNotFound {
            message: format!("container not found ({:?})", target.container),
        })
}
