//! Probes: the checks behind liveness, readiness and startup probes and `httpGet` hooks.
//!
//! [`Runtime::probe`] has a default implementation built from the
//! functions here: an `exec` probe runs [`Runtime::exec_sync`]
//! and succeeds on exit code 0, a `tcpSocket` probe opens a TCP connection, an `httpGet`
//! probe sends a `GET` (over TLS for `scheme: HTTPS`, certificates not verified) and
//! succeeds on a status in 200–399, and a `grpc` probe asks the gRPC health service and
//! succeeds on `SERVING`, as upstream's prober does.

mod grpc;
mod tls;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub use grpc::check as grpc;

use crate::Runtime;

/// Which probe is asking (runtimes with scripted outcomes, like the fake, answer per kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    /// `livenessProbe`: failure restarts the container.
    Liveness,
    /// `readinessProbe`: failure takes the pod out of service.
    Readiness,
    /// `startupProbe`: holds the other probes until it succeeds.
    Startup,
    /// A lifecycle hook run as a probe (`preStop`/`postStart` `httpGet`).
    Hook,
}

impl ProbeKind {
    /// `Liveness`, `Readiness`, `Startup` or `Hook`, as event messages write it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
            ProbeKind::Hook => "Hook",
        }
    }
}

/// URL scheme of an `httpGet` probe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HttpScheme {
    /// Plain HTTP.
    #[default]
    Http,
    /// HTTPS (certificates are not verified, as upstream).
    Https,
}

/// What a probe does, with host and port already resolved (named ports looked up, an empty
/// host replaced by the pod IP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeAction {
    /// Run a command in the container; exit code 0 is success.
    Exec {
        /// The command and its arguments.
        command: Vec<String>,
    },
    /// Open a TCP connection.
    TcpSocket {
        /// Host (the pod IP unless set).
        host: String,
        /// Port.
        port: u16,
    },
    /// Send an HTTP `GET`; a status in 200–399 is success.
    HttpGet {
        /// `Http` or `Https`.
        scheme: HttpScheme,
        /// Host (the pod IP unless set).
        host: String,
        /// Port.
        port: u16,
        /// Path, e.g. `/healthz`.
        path: String,
        /// Extra request headers.
        headers: Vec<(String, String)>,
    },
    /// A gRPC health check.
    Grpc {
        /// Host (the pod IP).
        host: String,
        /// Port.
        port: u16,
        /// The service name sent in the health check request.
        service: Option<String>,
    },
}

/// One probe to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeRequest {
    /// Which probe.
    pub kind: ProbeKind,
    /// What it does.
    pub action: ProbeAction,
    /// How long it may take (`timeoutSeconds`).
    pub timeout: Duration,
}

/// The outcome of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// The probe passed.
    Success,
    /// The probe failed; the text goes into the `Unhealthy` event.
    Failure(String),
}

impl ProbeResult {
    /// Whether the probe passed.
    pub fn is_success(&self) -> bool {
        matches!(self, ProbeResult::Success)
    }
}

/// Runs `request` against container `container_id` the default way (see the module docs).
pub async fn run_default<R: Runtime + ?Sized>(
    runtime: &R,
    container_id: &str,
    request: &ProbeRequest,
) -> ProbeResult {
    match &request.action {
        ProbeAction::Exec { command } => {
            exec(runtime, container_id, command, request.timeout).await
        }
        _ => network(request).await,
    }
}

/// Runs a network probe (`tcpSocket`, `httpGet`, `grpc`) from this thread's network
/// namespace; an `exec` probe fails, since it runs in the container.
pub(crate) async fn network(request: &ProbeRequest) -> ProbeResult {
    match &request.action {
        ProbeAction::TcpSocket { host, port } => tcp(host, *port, request.timeout).await,
        ProbeAction::HttpGet {
            scheme,
            host,
            port,
            path,
            headers,
        } => http_get(*scheme, host, *port, path, headers, request.timeout).await,
        ProbeAction::Grpc {
            host,
            port,
            service,
        } => grpc(host, *port, service.as_deref(), request.timeout).await,
        ProbeAction::Exec { .. } => {
            ProbeResult::Failure("exec probes run in the container, not here".into())
        }
    }
}

/// `host:port`, with an IPv6 host in brackets.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// An `exec` probe: runs `command` with [`Runtime::exec_sync`].
pub async fn exec<R: Runtime + ?Sized>(
    runtime: &R,
    container_id: &str,
    command: &[String],
    timeout: Duration,
) -> ProbeResult {
    match runtime.exec_sync(container_id, command, timeout).await {
        Ok(r) if r.exit_code == 0 => ProbeResult::Success,
        Ok(r) => {
            let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
            out.push_str(&String::from_utf8_lossy(&r.stderr));
            if out.trim().is_empty() {
                ProbeResult::Failure(format!("command {command:?} exited with {}", r.exit_code))
            } else {
                ProbeResult::Failure(out.trim_end().to_string())
            }
        }
        Err(crate::Error::Timeout { .. }) => ProbeResult::Failure(format!(
            "command timed out: {command:?} timed out after {timeout:?}"
        )),
        Err(e) => ProbeResult::Failure(e.to_string()),
    }
}

/// A `tcpSocket` probe: success if a connection opens within `timeout`.
pub async fn tcp(host: &str, port: u16, timeout: Duration) -> ProbeResult {
    match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => ProbeResult::Success,
        Ok(Err(e)) => ProbeResult::Failure(format!("dial tcp {host}:{port}: {e}")),
        Err(_) => ProbeResult::Failure(format!("dial tcp {host}:{port}: i/o timeout")),
    }
}

/// An `httpGet` probe over HTTP/1.1 (over TLS for `Https`, accepting any certificate):
/// success on a status in 200–399 within `timeout`.
pub async fn http_get(
    scheme: HttpScheme,
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> ProbeResult {
    let prefix = match scheme {
        HttpScheme::Http => "http",
        HttpScheme::Https => "https",
    };
    let url = format!("{prefix}://{}{path}", authority(host, port));
    let status = async {
        let stream = TcpStream::connect((host, port)).await?;
        match scheme {
            HttpScheme::Http => http_status(stream, host, port, path, headers).await,
            HttpScheme::Https => {
                let stream = tls::connect(host, stream).await?;
                http_status(stream, host, port, path, headers).await
            }
        }
    };
    match tokio::time::timeout(timeout, status).await {
        Ok(Ok(code)) if (200..400).contains(&code) => ProbeResult::Success,
        Ok(Ok(code)) => ProbeResult::Failure(format!("HTTP probe failed with statuscode: {code}")),
        Ok(Err(e)) => ProbeResult::Failure(format!("Get \"{url}\": {e}")),
        Err(_) => ProbeResult::Failure(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

async fn http_status<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> std::io::Result<u16> {
    let path = if path.is_empty() { "/" } else { path };
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {}\r\n", authority(host, port)));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
    {
        req.push_str("User-Agent: kube-probe/1.33\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Accept: */*\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 8192 {
            break;
        }
    }
    let line = String::from_utf8_lossy(&buf);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn http_get_passes_on_2xx_and_fails_on_5xx() {
        for (status, ok) in [("200 OK", true), ("503 Service Unavailable", false)] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let body = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
            tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(body.as_bytes()).await;
            });
            let r = http_get(
                HttpScheme::Http,
                "127.0.0.1",
                port,
                "/healthz",
                &[],
                Duration::from_secs(5),
            )
            .await;
            assert_eq!(r.is_success(), ok, "{status}: {r:?}");
        }
    }

    /// A TLS server with a self-signed certificate for `localhost` (not the address the
    /// probe dials, so verification would fail twice) answering `status` once.
    async fn https_server(status: &'static str) -> u16 {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(c.signing_key.serialize_der());
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![c.cert.der().clone()], key.into())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut s = acceptor.accept(s).await.unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"GET /healthz HTTP/1.1\r\n"));
            let body = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
            s.write_all(body.as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
        });
        port
    }

    async fn https_healthz(port: u16) -> ProbeResult {
        http_get(
            HttpScheme::Https,
            "127.0.0.1",
            port,
            "/healthz",
            &[],
            Duration::from_secs(10),
        )
        .await
    }

    #[tokio::test]
    async fn https_get_skips_verification_and_passes_on_2xx_fails_on_5xx() {
        let port = https_server("200 OK").await;
        let r = https_healthz(port).await;
        assert!(r.is_success(), "{r:?}");

        let port = https_server("500 Internal Server Error").await;
        let r = https_healthz(port).await;
        assert_eq!(
            r,
            ProbeResult::Failure("HTTP probe failed with statuscode: 500".into())
        );
    }

    #[tokio::test]
    async fn https_get_to_a_plain_http_server_fails_with_the_url() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            // The probe hangs up on a plain-HTTP answer; this server only has to give one.
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await;
        });
        let r = https_healthz(port).await;
        let ProbeResult::Failure(message) = r else {
            panic!("a TLS probe of a plain HTTP server passed");
        };
        assert!(
            message.starts_with(&format!("Get \"https://127.0.0.1:{port}/healthz\": ")),
            "{message}"
        );
    }

    #[tokio::test]
    async fn tcp_fails_when_nothing_listens() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(
            tcp("127.0.0.1", port, Duration::from_secs(5))
                .await
                .is_success()
        );
        drop(listener);
        assert!(
            !tcp("127.0.0.1", port, Duration::from_secs(5))
                .await
                .is_success()
        );
    }
}
