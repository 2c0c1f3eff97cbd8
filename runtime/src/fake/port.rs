//! Ports of fake containers: what answers a port-forward connection.

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tracing::debug;

use crate::stream::PortForwardStream;

/// What listens on a scripted port of a fake container
/// ([`ContainerScript::serve_port`](super::ContainerScript::serve_port)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortResponder {
    /// Sends back every byte it receives, until the client closes its side.
    Echo,
    /// A tiny HTTP/1.1 server: reads one request and answers every one with this status and
    /// body (`text/plain`), then closes the connection.
    Http {
        /// The status code.
        status: u16,
        /// The body.
        body: String,
    },
    /// A tiny HTTP/1.1 server that answers one request with 200 and the request itself as
    /// the body (`text/plain`): its request line, its headers as received, a blank line, and
    /// its body (by `Content-Length`). Tests see what a proxy passed on.
    HttpEcho,
}

impl PortResponder {
    /// An HTTP responder answering `status` with `body`.
    pub fn http(status: u16, body: impl Into<String>) -> Self {
        PortResponder::Http {
            status,
            body: body.into(),
        }
    }
}

/// How much a connection buffers each way.
const PIPE_BYTES: usize = 64 * 1024;

/// One connection to `responder`: the client's end is returned, the server's end is served
/// by a task until either side closes.
pub(crate) fn connect(responder: PortResponder, port: u16) -> Box<dyn PortForwardStream> {
    let (client, server) = tokio::io::duplex(PIPE_BYTES);
    tokio::spawn(async move {
        let served = match responder {
            PortResponder::Echo => echo(server).await,
            PortResponder::Http { status, body } => http(server, status, &body).await,
            PortResponder::HttpEcho => http_echo(server).await,
        };
        if let Err(e) = served {
            debug!(port, error = %e, "fake port connection ended with an error");
        }
    });
    Box::new(client)
}

async fn echo(server: DuplexStream) -> std::io::Result<()> {
    let (mut r, mut w) = tokio::io::split(server);
    tokio::io::copy(&mut r, &mut w).await?;
    w.shutdown().await
}

/// The largest request head the HTTP responder reads before it answers anyway.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Reads a request head (up to the blank line, or [`MAX_REQUEST_HEAD`] bytes); what came
/// after it is the start of the body. `None` if the client closed first.
async fn read_head(server: &mut DuplexStream) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = head.split_off(end + 4);
            return Ok(Some((head, rest)));
        }
        if head.len() >= MAX_REQUEST_HEAD {
            return Ok(Some((head, Vec::new())));
        }
        let n = server.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
    }
}

async fn http_echo(mut server: DuplexStream) -> std::io::Result<()> {
    let Some((head, mut body)) = read_head(&mut server).await? else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(&head);
    let length = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST_HEAD);
    let mut buf = [0u8; 4096];
    while body.len() < length {
        let n = server.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    let mut echoed = head;
    echoed.extend_from_slice(&body);
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        echoed.len(),
    );
    server.write_all(response.as_bytes()).await?;
    server.write_all(&echoed).await?;
    server.shutdown().await
}

async fn http(mut server: DuplexStream, status: u16, body: &str) -> std::io::Result<()> {
    if read_head(&mut server).await?.is_none() {
        return Ok(());
    }
    let response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason_phrase(status),
        body.len(),
    );
    server.write_all(response.as_bytes()).await?;
    server.shutdown().await
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}
