//! The streaming subresources `pods/exec`, `pods/attach` and `pods/portforward` (upstream's
//! `ExecREST`, `AttachREST` and `PortForwardREST` with the kubelet's stream servers).
//!
//! The API server checks the request against the pod (which container, whether the pod can
//! be reached), finds the node agent of the pod's node in the
//! [`KubeletDirectory`](crate::kubelet::KubeletDirectory), opens the streams there, and only
//! then answers the upgrade, so that a refusal (no such container, not running) is a plain
//! `Status` error. The upgraded connection then carries the streams:
//!
//! - exec and attach: WebSocket, `v5.channel.k8s.io` or `v4.channel.k8s.io`
//!   ([`remotecommand`]), as kubectl 1.30+, kube-rs and the Python client speak;
//! - port-forward: WebSocket `v4.channel.k8s.io` ([`portforward`], kube-rs and Python), and
//!   SPDY/3.1 tunnelled in a WebSocket or over `Upgrade: SPDY/3.1` ([`spdy`], kubectl).
//!
//! It never touches a container runtime: the connection is the only road to the node.

pub mod portforward;
pub mod remotecommand;
pub mod spdy;
pub mod websocket;

use std::sync::Arc;

use http::HeaderMap;
use hyper::upgrade::OnUpgrade;
use kybernetes_core::ApiError;
use serde_json::Value;

use crate::Inner;
use crate::kubelet::{ContainerRef, StreamOptions, StreamSession};
use crate::object::meta_str;
use crate::registry::pod::{ContainerDefault, choose_container, container_spec};
use crate::registry::{RequestScope, Subresource};
use crate::request::query_pairs;
use crate::response::ApiResponse;
use websocket::Handshake;

/// The most ports one port-forward request may ask for (as kube-rs and upstream's clients).
const MAX_PORTS: usize = 128;

/// What a streaming request needs from the HTTP request besides its scope.
pub(crate) struct ConnectRequest<'a> {
    /// The request's query string.
    pub query: Option<&'a str>,
    /// The request's headers (upgrade and WebSocket handshake).
    pub headers: &'a HeaderMap,
    /// The connection's upgrade, if it can be upgraded.
    pub on_upgrade: Option<OnUpgrade>,
}

/// Serves `pods/exec`, `pods/attach` or `pods/portforward`.
pub(crate) async fn serve(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    kind: Subresource,
    request: ConnectRequest<'_>,
) -> Result<ApiResponse, ApiError> {
    let pod = crate::rest::read::get(inner, &scope.resource, scope.ns(), scope.name()).await?;
    let query = query_pairs(request.query);
    let node = assigned_node(&pod, scope.name())?;
    match kind {
        Subresource::Exec | Subresource::Attach => {
            remote_command(inner, scope, kind, &pod, &node, &query, request).await
        }
        Subresource::PortForward => port_forward(inner, &pod, &node, &query, request).await,
        other => Err(ApiError::internal(format!(
            "{other:?} is not a streaming subresource"
        ))),
    }
}

async fn remote_command(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    kind: Subresource,
    pod: &Value,
    node: &str,
    query: &[(String, String)],
    request: ConnectRequest<'_>,
) -> Result<ApiResponse, ApiError> {
    let exec = kind == Subresource::Exec;
    let name = scope.name();
    let mut options = stream_options(query, exec)?;
    let requested = query_value(query, "container").filter(|c| !c.is_empty());
    let container = choose_container(pod, name, requested, ContainerDefault::AnnotationOrOnly)?;
    refuse_completed(pod, if exec { "exec into" } else { "attach" })?;
    if !exec {
        // An attach joins the container's own terminal, if it has one (upstream's kubelet
        // reads `tty` from the container's spec).
        options.tty =
            options.tty && container_spec(pod, &container).is_some_and(|c| flag(c, "tty"));
    }
    require_websocket(request.headers)?;
    let protocol = websocket::negotiate(request.headers, &remotecommand::PROTOCOLS)?;
    let handshake = Handshake::check(request.headers, request.on_upgrade, protocol)?;
    let target = ContainerRef {
        namespace: scope.ns().unwrap_or_default().to_string(),
        pod: name.to_string(),
        pod_uid: meta_str(pod, "uid").unwrap_or_default().to_string(),
        container,
    };
    let kubelet = inner.kubelets.connection(node)?;
    let session = if exec {
        match kubelet.exec(&target, &options).await {
            Ok(session) => session,
            // The container was there to exec into, but the runtime could not start the
            // command (no such executable, say). Upstream's kubelet upgrades first and reports
            // that on the error channel, and kubectl only reads it there: answered before the
            // upgrade, kubectl takes the refusal for a missing WebSocket and retries over SPDY.
            Err(e) if e.code >= 500 => StreamSession::failed(e),
            Err(e) => return Err(e),
        }
    } else {
        kubelet.attach(&target, &options).await?
    };
    let shutdown = inner.shutdown_signal();
    let command = options.command;
    Ok(handshake.accept(move |ws| remotecommand::serve(ws, protocol, session, command, shutdown)))
}

async fn port_forward(
    inner: &Arc<Inner>,
    pod: &Value,
    node: &str,
    query: &[(String, String)],
    request: ConnectRequest<'_>,
) -> Result<ApiResponse, ApiError> {
    let mut target = portforward::PodPorts {
        namespace: meta_str(pod, "namespace").unwrap_or_default().to_string(),
        pod: meta_str(pod, "name").unwrap_or_default().to_string(),
        pod_uid: meta_str(pod, "uid").unwrap_or_default().to_string(),
        ports: Vec::new(),
    };
    let shutdown = inner.shutdown_signal();
    if is_spdy_upgrade(request.headers) {
        // SPDY names its ports per stream, not in the query.
        let on_upgrade = request.on_upgrade.ok_or_else(websocket::not_upgradable)?;
        let kubelet = inner.kubelets.connection(node)?;
        return Ok(spdy_upgrade_response(on_upgrade, move |io| {
            spdy::serve_upgraded(io, kubelet, target, shutdown)
        }));
    }
    require_websocket(request.headers)?;
    let protocols = [spdy::TUNNEL_PROTOCOL, portforward::PROTOCOLS[0]];
    let protocol = websocket::negotiate(request.headers, &protocols)?;
    if protocol != spdy::TUNNEL_PROTOCOL {
        target.ports = parse_ports(query)?;
    }
    let handshake = Handshake::check(request.headers, request.on_upgrade, protocol)?;
    let kubelet = inner.kubelets.connection(node)?;
    Ok(if protocol == spdy::TUNNEL_PROTOCOL {
        handshake.accept(move |ws| spdy::serve_tunnel(ws, kubelet, target, shutdown))
    } else {
        handshake.accept(move |ws| portforward::serve(ws, kubelet, target, shutdown))
    })
}

/// Whether the request asks for a plain SPDY/3.1 upgrade for port-forward.
fn is_spdy_upgrade(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(spdy::UPGRADE));
    upgrade && websocket::connection_upgrade(headers)
}

/// The `101 Switching Protocols` of a SPDY upgrade (with the stream protocol kubectl
/// checks); `serve` runs on the upgraded connection in a task of its own.
fn spdy_upgrade_response<F, Fut>(on_upgrade: OnUpgrade, serve: F) -> ApiResponse
where
    F: FnOnce(hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => serve(hyper_util::rt::TokioIo::new(upgraded)).await,
            Err(e) => tracing::debug!(error = %e, "the SPDY upgrade did not complete"),
        }
    });
    let mut response = ApiResponse::new(axum::body::Body::empty());
    *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static(spdy::UPGRADE),
    );
    h.insert(
        "X-Stream-Protocol-Version",
        http::HeaderValue::from_static(spdy::PORT_FORWARD_PROTOCOL),
    );
    response
}

/// Resolves once the server shuts down (or its shutdown signal is gone).
pub(crate) async fn shutting_down(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; it must not live across an await. An error
    // means the sender is gone, which is a shutdown too.
    let _ = shutdown.wait_for(|s| *s).await;
}

/// 400 unless the request is a WebSocket upgrade.
fn require_websocket(headers: &HeaderMap) -> Result<(), ApiError> {
    if websocket::is_websocket_request(headers) {
        return Ok(());
    }
    let upgrade = headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if upgrade.is_empty() {
        Err(ApiError::bad_request("Upgrade request required"))
    } else {
        Err(ApiError::bad_request(format!(
            "unable to upgrade: {upgrade:?} is not supported here; use a WebSocket \
             (Upgrade: websocket)"
        )))
    }
}

/// The node the pod runs on: 400 if it has none yet, as upstream.
fn assigned_node(pod: &Value, name: &str) -> Result<String, ApiError> {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .ok_or_else(|| ApiError::bad_request(format!("pod {name} does not have a host assigned")))
}

/// 400 for a pod whose containers have all ended for good.
fn refuse_completed(pod: &Value, verb: &str) -> Result<(), ApiError> {
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    if matches!(phase, "Succeeded" | "Failed") {
        return Err(ApiError::bad_request(format!(
            "cannot {verb} a container in a completed pod; current phase is {phase}"
        )));
    }
    Ok(())
}

/// The exec or attach query (upstream's `PodExecOptions` and `PodAttachOptions`).
fn stream_options(query: &[(String, String)], exec: bool) -> Result<StreamOptions, ApiError> {
    let options = StreamOptions {
        command: if exec {
            query
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.clone())
                .collect()
        } else {
            Vec::new()
        },
        stdin: bool_param(query, "stdin")?,
        stdout: bool_param(query, "stdout")?,
        stderr: bool_param(query, "stderr")?,
        tty: bool_param(query, "tty")?,
    };
    if !(options.stdin || options.stdout || options.stderr) {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    if exec && options.command.is_empty() {
        return Err(ApiError::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    Ok(options)
}

fn query_value<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A boolean query parameter as Go's `strconv.ParseBool` reads it; absent is false.
fn bool_param(query: &[(String, String)], key: &str) -> Result<bool, ApiError> {
    match query_value(query, key) {
        None | Some("") => Ok(false),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid value for {key}: {other:?}: must be true or false"
        ))),
    }
}

/// The port-forward `ports` (repeated, or comma-separated as kube-rs sends them).
fn parse_ports(query: &[(String, String)]) -> Result<Vec<u16>, ApiError> {
    let mut ports = Vec::new();
    for (_, value) in query.iter().filter(|(k, _)| k == "ports") {
        for p in value.split(',').map(str::trim) {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => ports.push(n),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "unable to parse {p:?} as a port: must be a number from 1 to 65535"
                    )));
                }
            }
        }
    }
    if ports.is_empty() {
        return Err(ApiError::bad_request(
            "query parameter \"ports\" is required",
        ));
    }
    if ports.len() > MAX_PORTS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_PORTS} ports may be forwarded at once"
        )));
    }
    Ok(ports)
}

fn flag(container: &Value, field: &str) -> bool {
    container
        .get(field)
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn exec_options_need_a_command_and_a_stream() {
        let o = stream_options(
            &q(&[
                ("command", "sh"),
                ("command", "-c"),
                ("command", "exit 3"),
                ("stdout", "true"),
            ]),
            true,
        )
        .expect("valid");
        assert_eq!(o.command, ["sh", "-c", "exit 3"]);
        assert!(o.stdout && !o.stdin);
        let e = stream_options(&q(&[("stdout", "true")]), true).unwrap_err();
        assert_eq!(
            e.message,
            "you must specify at least one command for the container"
        );
        let e = stream_options(&q(&[("command", "ls")]), true).unwrap_err();
        assert_eq!(
            e.message,
            "you must specify at least 1 of stdin, stdout, stderr"
        );
        assert!(stream_options(&q(&[("stdin", "maybe")]), false).is_err());
    }

    #[test]
    fn ports_are_repeated_or_comma_separated() {
        assert_eq!(
            parse_ports(&q(&[("ports", "80,443"), ("ports", "8080")])).expect("ports"),
            [80, 443, 8080]
        );
        assert!(parse_ports(&q(&[])).is_err());
        assert!(parse_ports(&q(&[("ports", "0")])).is_err());
        assert!(parse_ports(&q(&[("ports", "http")])).is_err());
    }
}
