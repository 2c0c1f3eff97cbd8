//! Probes of containers in a pod network namespace (containerd's, and `ProcessRuntime`'s
//! isolated mode). `exec` probes run in the container as everywhere; `tcpSocket` and
//! `httpGet` probes connect from inside the pod's network namespace, since the host may have
//! no route to the pod: a namespace the runtime made has loopback only (so a probe aimed at
//! the pod IP goes to loopback), and one the `Network` prepared may be reachable only inside
//! the network's own namespaces (`LinuxNetwork` configures nothing in the host's), where the
//! pod's own address is always reachable.

use std::path::PathBuf;

use crate::Runtime;
use crate::probe::{self, ProbeAction, ProbeRequest, ProbeResult};

/// Runs `request` against container `container_id` of `runtime`, whose pod's network
/// namespace is `netns` (made by the runtime if `owns_netns`) and whose address is `pod_ip`.
pub(crate) async fn run(
    runtime: &dyn Runtime,
    container_id: &str,
    request: &ProbeRequest,
    netns: PathBuf,
    owns_netns: bool,
    pod_ip: Option<String>,
) -> ProbeResult {
    let mut request = request.clone();
    match &mut request.action {
        ProbeAction::Exec { .. } => {
            return probe::run_default(runtime, container_id, &request).await;
        }
        ProbeAction::TcpSocket { host, .. }
        | ProbeAction::HttpGet { host, .. }
        | ProbeAction::Grpc { host, .. } => {
            let pod_address = host.is_empty() || Some(&*host) == pod_ip.as_ref();
            if pod_address && (owns_netns || pod_ip.is_none()) {
                *host = "127.0.0.1".into();
            } else if host.is_empty()
                && let Some(ip) = pod_ip
            {
                *host = ip;
            }
        }
    }
    in_netns(netns, request).await
}

/// Runs a network probe from inside the namespace at `path`.
async fn in_netns(path: PathBuf, request: ProbeRequest) -> ProbeResult {
    super::netns::run_in(path, move || probe_here(&request))
        .await
        .unwrap_or_else(|e| ProbeResult::Failure(e.to_string()))
}

/// Runs a network probe from this thread's network namespace.
fn probe_here(request: &ProbeRequest) -> ProbeResult {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(r) => r,
        Err(e) => return ProbeResult::Failure(format!("building a probe runtime: {e}")),
    };
    runtime.block_on(probe::network(request))
}
