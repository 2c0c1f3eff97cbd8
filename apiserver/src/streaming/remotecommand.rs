//! The remote-command protocol of exec and attach over a WebSocket (`v4.channel.k8s.io` and
//! `v5.channel.k8s.io`, upstream's `remotecommand` with `wsstream`).
//!
//! Every binary message starts with a channel byte: 0 stdin (client to server), 1 stdout,
//! 2 stderr, 3 error (one `Status` JSON when the process ends: `Success`, or `Failure` with
//! reason `NonZeroExitCode` and an `ExitCode` cause), 4 resize (`{"Width":..,"Height":..}`,
//! client to server). Version 5 adds a close message, `[255, channel]`, with which the client
//! ends its stdin without closing the socket. When the process ends, the server sends the
//! rest of stdout and stderr, then the status, then closes.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use kybernetes_core::ApiError;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

use super::websocket::WebSocket;
use crate::kubelet::{StreamSession, TerminalSize};

/// `v4.channel.k8s.io`: channels 0–4, the error channel carries a `Status`.
pub const V4: &str = "v4.channel.k8s.io";
/// `v5.channel.k8s.io`: v4 plus the close message.
pub const V5: &str = "v5.channel.k8s.io";
/// The protocols served, in the server's order of preference.
pub const PROTOCOLS: [&str; 2] = [V5, V4];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5: `[CLOSE, channel]` ends the client's side of `channel`.
const CLOSE: u8 = 255;

/// How much one stdout or stderr message carries at most.
const CHUNK: usize = 32 * 1024;

/// Serves one exec or attach over `ws` until the process ends, the client goes away or the
/// server shuts down. `command` is for the exit-code message (empty for attach).
pub async fn serve(
    ws: WebSocket,
    protocol: &'static str,
    session: StreamSession,
    command: Vec<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (sink, mut incoming) = ws.split();
    let (out, out_rx) = mpsc::channel::<Message>(16);
    let writer = tokio::spawn(write_messages(sink, out_rx));
    let StreamSession {
        stdin,
        stdout,
        stderr,
        resize,
        exit,
    } = session;
    // The first message, on the lowest channel the client reads, says the streams are open.
    let first = if stdout.is_some() {
        STDOUT
    } else if stderr.is_some() {
        STDERR
    } else {
        ERROR
    };
    if out.send(Message::binary(vec![first])).await.is_err() {
        return;
    }
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    if let Some(stdin) = stdin {
        tokio::spawn(write_stdin(stdin, stdin_rx));
    }
    let mut stdin_tx = Some(stdin_tx);
    {
        // Ends when the process has ended and its status is queued; dropped early (with its
        // senders) if the client or the server stops first.
        let finished = finish(stdout, stderr, exit, command, out.clone());
        tokio::pin!(finished);
        loop {
            tokio::select! {
                () = &mut finished => break,
                () = super::shutting_down(&mut shutdown) => {
                    debug!("exec stream ended by the server's shutdown");
                    break;
                }
                message = incoming.next() => match message {
                    Some(Ok(Message::Binary(data))) => {
                        on_client_message(protocol, &data, &mut stdin_tx, resize.as_ref()).await;
                    }
                    // The Python client sends stdin as text frames (its channel byte first);
                    // upstream reads text and binary frames alike.
                    Some(Ok(Message::Text(text))) => {
                        on_client_message(protocol, text.as_bytes(), &mut stdin_tx, resize.as_ref())
                            .await;
                    }
                    Some(Ok(Message::Close(_))) | None => {
                        debug!("the exec client closed the stream");
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        debug!(error = %e, "reading the exec stream failed");
                        break;
                    }
                },
            }
        }
    }
    drop(out);
    // The writer sends what is queued (the status last), then closes the socket.
    if let Err(e) = writer.await {
        debug!(error = %e, "the exec stream writer failed");
    }
}

/// Copies stdout and stderr to their channels until both end, then queues the exit status.
async fn finish(
    stdout: Option<std::pin::Pin<Box<dyn AsyncRead + Send>>>,
    stderr: Option<std::pin::Pin<Box<dyn AsyncRead + Send>>>,
    exit: futures::future::BoxFuture<'static, Result<i32, ApiError>>,
    command: Vec<String>,
    out: mpsc::Sender<Message>,
) {
    tokio::join!(
        pump(stdout, STDOUT, out.clone()),
        pump(stderr, STDERR, out.clone())
    );
    let status = exit_status(exit.await, &command);
    let mut message = vec![ERROR];
    message.extend_from_slice(status.to_string().as_bytes());
    // A client that has gone before the exit status arrives no longer wants it.
    let _ = out.send(Message::binary(message)).await;
}

/// Routes one client message: stdin data, a resize, or (v5) the end of stdin.
async fn on_client_message(
    protocol: &str,
    data: &[u8],
    stdin: &mut Option<mpsc::Sender<Bytes>>,
    resize: Option<&mpsc::Sender<TerminalSize>>,
) {
    let Some((&channel, payload)) = data.split_first() else {
        return;
    };
    match channel {
        STDIN if !payload.is_empty() => {
            if let Some(tx) = stdin
                && tx.send(Bytes::copy_from_slice(payload)).await.is_err()
            {
                // The process closed its stdin; drop what the client still sends.
                *stdin = None;
            }
        }
        RESIZE => match parse_resize(payload) {
            Some(size) => {
                if let Some(tx) = resize {
                    // Fails only once the process has ended; a late resize is moot.
                    let _ = tx.send(size).await;
                }
            }
            None => debug!("ignoring a malformed resize message"),
        },
        CLOSE if protocol == V5 && payload.first() == Some(&STDIN) => *stdin = None,
        _ => {}
    }
}

/// A resize message: `{"Width":80,"Height":24}`.
fn parse_resize(payload: &[u8]) -> Option<TerminalSize> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let dim = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| u16::try_from(n).ok())
    };
    Some(TerminalSize {
        width: dim("Width")?,
        height: dim("Height")?,
    })
}

/// Feeds the process's stdin; dropping the sender closes it.
async fn write_stdin(
    mut stdin: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    mut rx: mpsc::Receiver<Bytes>,
) {
    while let Some(data) = rx.recv().await {
        if stdin.write_all(&data).await.is_err() {
            return;
        }
    }
    if let Err(e) = stdin.shutdown().await {
        debug!(error = %e, "closing the process's stdin");
    }
}

/// Copies one output stream to its channel until it ends.
async fn pump(
    reader: Option<std::pin::Pin<Box<dyn AsyncRead + Send>>>,
    channel: u8,
    out: mpsc::Sender<Message>,
) {
    let Some(mut reader) = reader else { return };
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                let mut message = Vec::with_capacity(n + 1);
                message.push(channel);
                message.extend_from_slice(&buf[..n]);
                if out.send(Message::binary(message)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                debug!(channel, error = %e, "reading the process's output failed");
                return;
            }
        }
    }
}

/// Sends queued messages in order, then closes the socket.
async fn write_messages(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Message>,
) {
    while let Some(m) = rx.recv().await {
        if let Err(e) = sink.send(m).await {
            debug!(error = %e, "writing to the exec stream failed");
            return;
        }
    }
    super::websocket::close_normally(&mut sink).await;
}

/// The error channel's `Status` for how the process ended, as upstream's kubelet writes it.
pub fn exit_status(exit: Result<i32, ApiError>, command: &[String]) -> Value {
    match exit {
        Ok(0) => json!({ "metadata": {}, "status": "Success" }),
        Ok(code) => {
            let code = code & 0xff;
            json!({
                "metadata": {},
                "status": "Failure",
                "message": format!(
                    "command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"
                ),
                "reason": "NonZeroExitCode",
                "details": { "causes": [{ "reason": "ExitCode", "message": code.to_string() }] },
            })
        }
        Err(e) => json!({
            "metadata": {},
            "status": "Failure",
            "message": e.message,
            "reason": e.reason,
            "code": e.code,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_become_upstreams_status() {
        assert_eq!(exit_status(Ok(0), &[])["status"], "Success");
        let s = exit_status(Ok(3), &["sh".into(), "-c".into(), "exit 3".into()]);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(
            s["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
        let e = exit_status(Err(ApiError::internal("boom")), &[]);
        assert_eq!(
            (e["status"].as_str(), e["code"].as_u64()),
            (Some("Failure"), Some(500))
        );
    }

    #[test]
    fn resize_messages_carry_width_and_height() {
        let size = parse_resize(br#"{"Width":120,"Height":40}"#);
        assert_eq!(
            size,
            Some(TerminalSize {
                width: 120,
                height: 40
            })
        );
        assert_eq!(parse_resize(b"{}"), None);
    }
}
