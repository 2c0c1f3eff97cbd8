//! The WebSocket handshake of the streaming subresources (upstream's `wsstream`): which
//! subprotocol the client and server share, the `101 Switching Protocols` answer, and the
//! upgraded connection as a [`WebSocketStream`].

use std::future::Future;

use futures::SinkExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use kybernetes_core::ApiError;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::debug;

use crate::response::ApiResponse;

/// The WebSocket of an upgraded request.
pub type WebSocket = WebSocketStream<TokioIo<Upgraded>>;

/// Whether the request asks for a WebSocket (`Upgrade: websocket` and `Connection: upgrade`).
pub fn is_websocket_request(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    upgrade && connection_upgrade(headers)
}

/// Whether `Connection` lists `upgrade`.
pub fn connection_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// The subprotocols the client offers, in its order of preference (one header with a
/// comma-separated list, or several headers).
pub fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The first protocol the client offers that the server supports.
pub fn negotiate(
    headers: &HeaderMap,
    supported: &[&'static str],
) -> Result<&'static str, ApiError> {
    let offered = offered_protocols(headers);
    offered
        .iter()
        .find_map(|p| supported.iter().find(|s| **s == p.as_str()).copied())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "requested protocol(s) are not supported: {offered:?}; supports {supported:?}"
            ))
        })
}

/// A WebSocket handshake that can be answered: checked before the server does anything the
/// client would have to undo (like starting a process).
pub struct Handshake {
    accept: HeaderValue,
    protocol: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl Handshake {
    /// Checks the request's handshake headers and that its connection can be upgraded;
    /// `protocol` is the negotiated subprotocol.
    pub fn check(
        headers: &HeaderMap,
        on_upgrade: Option<OnUpgrade>,
        protocol: &str,
    ) -> Result<Self, ApiError> {
        let key = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .ok_or_else(|| ApiError::bad_request("missing Sec-WebSocket-Key header"))?;
        let version_ok = headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13");
        if !version_ok {
            return Err(ApiError::bad_request(
                "unsupported WebSocket version: Sec-WebSocket-Version must be 13",
            ));
        }
        let on_upgrade = on_upgrade.ok_or_else(not_upgradable)?;
        let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
            .map_err(|e| ApiError::internal(format!("encoding Sec-WebSocket-Accept: {e}")))?;
        let protocol = HeaderValue::from_str(protocol)
            .map_err(|e| ApiError::internal(format!("encoding Sec-WebSocket-Protocol: {e}")))?;
        Ok(Handshake {
            accept,
            protocol,
            on_upgrade,
        })
    }

    /// The `101 Switching Protocols` answer; once hyper hands over the connection, `serve`
    /// runs on the WebSocket in a task of its own.
    pub fn accept<F, Fut>(self, serve: F) -> ApiResponse
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let io = TokioIo::new(upgraded);
                    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
                    serve(ws).await;
                }
                Err(e) => debug!(error = %e, "the WebSocket upgrade did not complete"),
            }
        });
        let mut response = ApiResponse::new(axum::body::Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = response.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::SEC_WEBSOCKET_ACCEPT, self.accept);
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, self.protocol);
        response
    }
}

/// Closes the socket with code 1000 (normal closure): kubectl reads any other code, even
/// "no status", as the streams failing.
pub async fn close_normally<S>(sink: &mut S)
where
    S: futures::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    if let Err(e) = sink.send(Message::Close(Some(frame))).await {
        // The client closed first: its close is answered, not ours sent.
        debug!(error = %e, "sending the WebSocket close");
    }
    // Flushes what is still queued, the answer to the client's close included.
    if let Err(e) = sink.close().await {
        debug!(error = %e, "closing the WebSocket");
    }
}

/// The error of an upgrade request that reached the server over a connection that cannot be
/// upgraded (a router called directly, or HTTP/2).
pub fn not_upgradable() -> ApiError {
    ApiError::bad_request(
        "this connection cannot be upgraded: streaming requests need HTTP/1.1 (in process, use \
         ApiServer::duplex_service)",
    )
}
