//! Port-forward on containerd (CRI `PortForward`): a TCP connection to a port on loopback
//! inside the pod's network namespace, as containerd's CRI makes it. The socket is opened on
//! a thread that has entered the namespace (so it belongs there for good) and then handed to
//! tokio; the process's own threads never leave the host's namespace.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use super::{ContainerdRuntime, backend, netns};
use crate::sandbox::PodSandboxState;
use crate::stream::PortForwardStream;
use crate::{Error, Result};

/// How long a connect may take; on loopback it is answered at once unless the pod's
/// listener is stuck.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `port` on loopback in ready sandbox `sandbox_id`'s network namespace:
/// 127.0.0.1, else ::1 (as containerd's CRI tries both).
pub(super) async fn connect(
    rt: &ContainerdRuntime,
    sandbox_id: &str,
    port: u16,
) -> Result<Box<dyn PortForwardStream>> {
    let path = {
        let st = rt.inner.lock();
        let sandbox = st
            .sandboxes
            .get(sandbox_id)
            .ok_or_else(|| super::not_found("sandbox", sandbox_id))?;
        if sandbox.status.state != PodSandboxState::Ready {
            return Err(Error::InvalidState {
                id: sandbox_id.into(),
                message: "sandbox is not ready".into(),
            });
        }
        sandbox.netns.clone()
    };
    let shown = path.display().to_string();
    let connected = netns::run_in(path, move || {
        let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT)
            .or_else(|e4| TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|e6| (e4, e6)))
    })
    .await?;
    let stream = connected.map_err(|(e4, e6)| Error::Backend {
        context: format!(
            "failed to connect to localhost:{port} inside namespace {shown:?}, IPv4: {e4} IPv6: {e6}"
        ),
        source: Some(Box::new(e4)),
    })?;
    stream
        .set_nonblocking(true)
        .map_err(|e| backend("making a port-forward socket non-blocking", e))?;
    let stream = tokio::net::TcpStream::from_std(stream)
        .map_err(|e| backend("registering a port-forward socket", e))?;
    Ok(Box::new(stream))
}
