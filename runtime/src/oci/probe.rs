//! Probes of containers in a pod network namespace (containerd's, and `ProcessRuntime`'s
//! isolated mode). `exec` probes run in the container as everywhere; `tcpSocket` and
//! `httpGet` probes connect from inside the pod's network namespace, since the host may have
//! no route to the pod: a namespace the runtime made has loopback only (so a probe aimed at
//! the pod IP goes to loopback), and one the `Network` prepared may be reachable only inside
//! the network's own namespaces (`LinuxNetwork` configures nothing in the host's), where the
//! pod's own address is always reachable.

use std::fs::File;
use std::path::PathBuf;

use nix::sched::CloneFlags;

use crate::Runtime;
use crate::probe::{self, HttpScheme, ProbeAction, ProbeRequest, ProbeResult};

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

/// Runs a network probe on a thread of its own that enters the namespace at `netns` (a
/// namespace belongs to a thread, and a socket to the namespace it was opened in).
async fn in_netns(netns: PathBuf, request: ProbeRequest) -> ProbeResult {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("kyb-probe".into())
        .spawn(move || {
            // The receiver is gone only if the prober was cancelled; nothing to report then.
            let _ = tx.send(probe_here(&netns, &request));
        });
    if let Err(e) = spawned {
        return ProbeResult::Failure(format!("spawning a probe thread: {e}"));
    }
    rx.await
        .unwrap_or_else(|_| ProbeResult::Failure("the probe thread died".into()))
}

fn probe_here(netns: &std::path::Path, request: &ProbeRequest) -> ProbeResult {
    let entered = File::open(netns)
        .map_err(|e| e.to_string())
        .and_then(|f| nix::sched::setns(f, CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string()));
    if let Err(e) = entered {
        return ProbeResult::Failure(format!(
            "entering the pod's network namespace {}: {e}",
            netns.display()
        ));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(r) => r,
        Err(e) => return ProbeResult::Failure(format!("building a probe runtime: {e}")),
    };
    runtime.block_on(async {
        match &request.action {
            ProbeAction::TcpSocket { host, port } => probe::tcp(host, *port, request.timeout).await,
            ProbeAction::HttpGet {
                scheme: HttpScheme::Http,
                host,
                port,
                path,
                headers,
            } => probe::http_get(host, *port, path, headers, request.timeout).await,
            ProbeAction::HttpGet {
                scheme: HttpScheme::Https,
                ..
            } => ProbeResult::Failure("https probes are not supported by this runtime".into()),
            ProbeAction::Grpc { .. } => {
                ProbeResult::Failure("grpc probes are not supported by this runtime".into())
            }
            ProbeAction::Exec { .. } => {
                ProbeResult::Failure("exec probes run in the container, not here".into())
            }
        }
    })
}
