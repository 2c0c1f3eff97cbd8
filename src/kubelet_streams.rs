//! Exec, attach and port-forward of the in-process node agent: the API server's
//! [`StreamOptions`] become the runtime's requests, the runtime's sessions become
//! [`StreamSession`]s, and the node agent's errors become `Status` errors.

use std::error::Error as _;

use kybernetes_apiserver::kubelet::{
    ContainerRef, DuplexStream, StreamOptions, StreamSession, TerminalSize,
};
use kybernetes_core::ApiError;
use kybernetes_node::ContainerStreamTarget;
use kybernetes_runtime::{AttachRequest, ExecRequest, ExecSession, Runtime};
use tokio::sync::mpsc;

/// Runs a command in a running container.
pub(crate) async fn exec(
    runtime: &dyn Runtime,
    container: &ContainerRef,
    options: &StreamOptions,
) -> Result<StreamSession, ApiError> {
    let request = ExecRequest {
        cmd: options.command.clone(),
        tty: options.tty,
        stdin: options.stdin,
        stdout: options.stdout,
        stderr: options.stderr,
    };
    let session = kybernetes_node::exec_in_container(runtime, &target(container), request)
        .await
        .map_err(node_error)?;
    Ok(stream_session(session))
}

/// Attaches to a running container's main process.
pub(crate) async fn attach(
    runtime: &dyn Runtime,
    container: &ContainerRef,
    options: &StreamOptions,
) -> Result<StreamSession, ApiError> {
    let request = AttachRequest {
        stdin: options.stdin,
        stdout: options.stdout,
        stderr: options.stderr,
        tty: options.tty,
    };
    let session = kybernetes_node::attach_to_container(runtime, &target(container), request)
        .await
        .map_err(node_error)?;
    Ok(stream_session(session))
}

/// Opens a connection to `port` in the pod.
pub(crate) async fn port_forward(
    runtime: &dyn Runtime,
    namespace: &str,
    pod: &str,
    pod_uid: &str,
    port: u16,
) -> Result<Box<dyn DuplexStream>, ApiError> {
    let stream = kybernetes_node::port_forward_to_pod(runtime, namespace, pod, pod_uid, port)
        .await
        .map_err(node_error)?;
    Ok(Box::new(stream))
}

fn target(c: &ContainerRef) -> ContainerStreamTarget {
    ContainerStreamTarget {
        namespace: c.namespace.clone(),
        pod: c.pod.clone(),
        pod_uid: c.pod_uid.clone(),
        container: c.container.clone(),
    }
}

/// The runtime's session as the API server's: the same streams, resize messages carried
/// over to the runtime's terminal, and runtime errors as `Status` errors.
fn stream_session(session: ExecSession) -> StreamSession {
    let resize = session.resize.map(|runtime_resize| {
        let (tx, mut rx) = mpsc::channel::<TerminalSize>(4);
        tokio::spawn(async move {
            while let Some(size) = rx.recv().await {
                let size = kybernetes_runtime::TerminalSize {
                    width: size.width,
                    height: size.height,
                };
                if runtime_resize.send(size).await.is_err() {
                    return;
                }
            }
        });
        tx
    });
    let exit = session.exit;
    StreamSession {
        stdin: session.stdin,
        stdout: session.stdout,
        stderr: session.stderr,
        resize,
        exit: Box::pin(async move {
            exit.await
                .map_err(|e| ApiError::internal(format!("error executing command: {e}")))
        }),
    }
}

/// The node agent's errors as upstream's kubelet reports them: an absent or stopped
/// container is the client's mistake (400), anything else the server's (500).
fn node_error(e: kybernetes_node::Error) -> ApiError {
    match e {
        kybernetes_node::Error::ContainerNotFound { message } => ApiError::bad_request(message),
        other => {
            let mut message = other.to_string();
            if let Some(source) = other.source() {
                message.push_str(&format!(": {source}"));
            }
            ApiError::internal(message)
        }
    }
}
