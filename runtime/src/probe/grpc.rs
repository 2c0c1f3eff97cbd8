//! `grpc` probes: one unary call of the gRPC Health Checking Protocol,
//! `/grpc.health.v1.Health/Check`, over HTTP/2 cleartext (prior knowledge), as upstream's
//! prober makes it. The two messages are a single field each, so they are encoded by hand
//! rather than through a protobuf code generator.

use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderMap, TE};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::ProbeResult;

/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;
/// gRPC status `UNIMPLEMENTED`: the server has no health service.
const UNIMPLEMENTED: u32 = 12;

/// A `grpc` probe of `service` (the server's overall health when `None`) at `host:port`:
/// success only if the server answers `SERVING` within `timeout`.
pub async fn check(host: &str, port: u16, service: Option<&str>, timeout: Duration) -> ProbeResult {
    let address = super::authority(host, port);
    let started = Instant::now();
    let sender = match tokio::time::timeout(timeout, connect(host, port, &address)).await {
        Ok(Ok(sender)) => sender,
        Ok(Err(e)) => {
            return ProbeResult::Failure(format!(
                "timeout: failed to connect service {address:?} within {timeout:?}: {e}"
            ));
        }
        Err(_) => {
            return ProbeResult::Failure(format!(
                "timeout: failed to connect service {address:?} within {timeout:?}"
            ));
        }
    };
    let left = timeout.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, call(sender, &address, service.unwrap_or(""))).await {
        Ok(Ok(SERVING)) => ProbeResult::Success,
        Ok(Ok(status)) => ProbeResult::Failure(format!(
            "service unhealthy (responded with {:?})",
            status_name(status)
        )),
        Ok(Err(CallError::Status(UNIMPLEMENTED, message))) => ProbeResult::Failure(format!(
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {message}"
        )),
        Ok(Err(CallError::Status(code, message))) => ProbeResult::Failure(format!(
            "error: health rpc probe failed: rpc error: code = {code} desc = {message}"
        )),
        Ok(Err(CallError::Other(e))) => {
            ProbeResult::Failure(format!("error: health rpc probe failed: {e}"))
        }
        Err(_) => ProbeResult::Failure(format!(
            "timeout: health rpc did not complete within {timeout:?}"
        )),
    }
}

type Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

/// Opens the TCP connection and does the HTTP/2 handshake; the connection is driven by a
/// task that ends when the probe drops its sender.
async fn connect(host: &str, port: u16, address: &str) -> Result<Sender, String> {
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| e.to_string())?;
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    let address = address.to_string();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(%address, error = %e, "gRPC probe connection ended with an error");
        }
    });
    Ok(sender)
}

enum CallError {
    /// A gRPC status other than OK, with its message.
    Status(u32, String),
    /// Anything else that went wrong (HTTP/2, a malformed answer).
    Other(String),
}

/// Sends `HealthCheckRequest{service}` and returns the response's `status`.
async fn call(mut sender: Sender, address: &str, service: &str) -> Result<u64, CallError> {
    let request = hyper::Request::post(format!("http://{address}/grpc.health.v1.Health/Check"))
        .header(CONTENT_TYPE, "application/grpc")
        .header(TE, "trailers")
        .header("user-agent", "kube-probe/1.33")
        .body(Full::new(request_message(service)))
        .map_err(|e| CallError::Other(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| CallError::Other(e.to_string()))?;
    if response.status() != hyper::StatusCode::OK {
        return Err(CallError::Other(format!(
            "unexpected HTTP status {}",
            response.status()
        )));
    }
    let (parts, body) = response.into_parts();
    // A failed call may come as headers only ("Trailers-Only"): grpc-status in the headers.
    grpc_status(&parts.headers)?;
    let collected = body
        .collect()
        .await
        .map_err(|e| CallError::Other(e.to_string()))?;
    if let Some(trailers) = collected.trailers() {
        grpc_status(trailers)?;
    }
    response_status(collected.to_bytes())
}

/// `Err` if `headers` carry a gRPC status other than 0 (OK).
fn grpc_status(headers: &HeaderMap) -> Result<(), CallError> {
    let Some(code) = headers.get("grpc-status") else {
        return Ok(());
    };
    let code = code
        .to_str()
        .ok()
        .and_then(|c| c.parse::<u32>().ok())
        .ok_or_else(|| CallError::Other(format!("malformed grpc-status {code:?}")))?;
    if code == 0 {
        return Ok(());
    }
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Err(CallError::Status(code, message))
}

/// `HealthCheckRequest{service: 1}` in a gRPC frame: no compression, a big-endian length,
/// then the message (field 1, wire type 2: tag 0x0a, varint length, the bytes). The empty
/// service is the field's default, so it is left out, as protobuf encoders do.
fn request_message(service: &str) -> Bytes {
    let mut message = Vec::with_capacity(service.len() + 6);
    if !service.is_empty() {
        message.push(0x0a);
        push_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    // A service name longer than 4 GiB cannot come from a pod spec the API server accepted.
    frame.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    frame.extend_from_slice(&message);
    Bytes::from(frame)
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_varint(buf: &mut Bytes) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        if !buf.has_remaining() {
            return None;
        }
        let byte = buf.get_u8();
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The `status` (field 1, an enum) of the `HealthCheckResponse` in the gRPC frame `body`;
/// `UNKNOWN` (0) when absent, as protobuf decoders read a missing field.
fn response_status(mut body: Bytes) -> Result<u64, CallError> {
    let malformed = |why: &str| CallError::Other(format!("malformed HealthCheckResponse: {why}"));
    if body.remaining() < 5 {
        return Err(malformed("no message"));
    }
    if body.get_u8() != 0 {
        return Err(malformed("compressed message"));
    }
    let length = body.get_u32() as usize;
    if body.remaining() < length {
        return Err(malformed("truncated message"));
    }
    let mut message = body.split_to(length);
    let mut status = 0;
    while message.has_remaining() {
        let key = read_varint(&mut message).ok_or_else(|| malformed("bad field key"))?;
        match key & 7 {
            0 => {
                let value = read_varint(&mut message).ok_or_else(|| malformed("bad varint"))?;
                if key >> 3 == 1 {
                    status = value;
                }
            }
            2 => {
                let len = read_varint(&mut message).ok_or_else(|| malformed("bad length"))?;
                let len = usize::try_from(len).map_err(|_| malformed("bad length"))?;
                if message.remaining() < len {
                    return Err(malformed("truncated field"));
                }
                message.advance(len);
            }
            1 if message.remaining() >= 8 => message.advance(8),
            5 if message.remaining() >= 4 => message.advance(4),
            _ => return Err(malformed("unknown wire type")),
        }
    }
    Ok(status)
}

fn status_name(status: u64) -> String {
    match status {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;
    use http_body_util::StreamBody;
    use hyper::body::{Frame, Incoming};
    use tokio::net::TcpListener;

    /// A minimal gRPC health server (HTTP/2 only) for one connection: it checks the request
    /// carries `HealthCheckRequest{service: expected}` and answers `status`, or the gRPC
    /// error `code` when set.
    async fn health_server(expected: &'static str, status: u8, code: u32) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let service =
                hyper::service::service_fn(move |request: hyper::Request<Incoming>| async move {
                    assert_eq!(request.uri().path(), "/grpc.health.v1.Health/Check");
                    assert_eq!(request.headers()[CONTENT_TYPE], "application/grpc");
                    assert_eq!(request.headers()[TE], "trailers");
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    assert_eq!(body, request_message(expected));
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", code.to_string().parse().unwrap());
                    let frames = vec![
                        Ok::<_, Infallible>(Frame::data(Bytes::from(vec![
                            0, 0, 0, 0, 2, 0x08, status,
                        ]))),
                        Ok(Frame::trailers(trailers)),
                    ];
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .header(CONTENT_TYPE, "application/grpc")
                            .body(StreamBody::new(futures::stream::iter(frames)))
                            .unwrap(),
                    )
                });
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
                .unwrap();
        });
        port
    }

    #[test]
    fn request_message_is_a_framed_health_check_request() {
        assert_eq!(&request_message("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &request_message("db")[..],
            &[0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']
        );
    }

    #[tokio::test]
    async fn serving_passes_and_the_service_name_is_sent() {
        let port = health_server("orders", 1, 0).await;
        let r = check("127.0.0.1", port, Some("orders"), Duration::from_secs(10)).await;
        assert_eq!(r, ProbeResult::Success);
        let port = health_server("", 1, 0).await;
        let r = check("127.0.0.1", port, None, Duration::from_secs(10)).await;
        assert_eq!(r, ProbeResult::Success);
    }

    #[tokio::test]
    async fn not_serving_fails_with_upstreams_message() {
        let port = health_server("", 2, 0).await;
        let r = check("127.0.0.1", port, None, Duration::from_secs(10)).await;
        assert_eq!(
            r,
            ProbeResult::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
    }

    #[tokio::test]
    async fn a_grpc_error_status_fails() {
        let port = health_server("", 1, UNIMPLEMENTED).await;
        let r = check("127.0.0.1", port, None, Duration::from_secs(10)).await;
        let ProbeResult::Failure(message) = r else {
            panic!("an UNIMPLEMENTED answer passed");
        };
        assert!(
            message.contains("does not implement the grpc health protocol"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_closed_port_fails() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let r = check("127.0.0.1", port, None, Duration::from_secs(10)).await;
        let ProbeResult::Failure(message) = r else {
            panic!("a probe of a closed port passed");
        };
        assert!(
            message.starts_with(&format!(
                "timeout: failed to connect service \"127.0.0.1:{port}\""
            )),
            "{message}"
        );
    }
}
