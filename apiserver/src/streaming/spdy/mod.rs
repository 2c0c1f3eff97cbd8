//! Port-forward over SPDY/3.1 (`portforward.k8s.io`), as kubectl speaks it: tunnelled in a
//! WebSocket (`SPDY/3.1+portforward.k8s.io`, kubectl 1.31+) or over a plain
//! `Upgrade: SPDY/3.1` connection (older kubectl, and 1.32 when WebSockets are turned off).
//!
//! For each local connection kubectl opens two streams carrying the same `requestid` and
//! `port` headers: an error stream (`streamtype: error`) and a data stream (`streamtype:
//! data`). The server answers every stream with a SYN_REPLY; once both of a pair are open
//! it connects to the port in the pod and copies bytes between that connection and the
//! data stream. A failure to connect is written on the error stream. When the pod's side
//! closes, both streams end (FLAG_FIN). SPDY flow control is not enforced, as kubectl's
//! SPDY library does not enforce it either.

mod dictionary;
pub mod frame;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

use super::portforward::PodPorts;
use super::websocket::WebSocket;
use crate::kubelet::KubeletConnection;
use frame::{FLAG_FIN, Frame, FrameError, FrameReader, FrameWriter, Headers};

/// The WebSocket subprotocol of SPDY tunnelled in a WebSocket.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// The `Upgrade` token of plain SPDY.
pub const UPGRADE: &str = "SPDY/3.1";
/// The stream protocol (`X-Stream-Protocol-Version`) of port-forward.
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// How much one DATA frame carries at most.
const CHUNK: usize = 32 * 1024;

/// Serves SPDY port-forward tunnelled in `ws`.
pub async fn serve_tunnel(
    ws: WebSocket,
    kubelet: Arc<dyn KubeletConnection>,
    pod: PodPorts,
    shutdown: watch::Receiver<bool>,
) {
    let (mut sink, incoming) = ws.split();
    // The tunnel is a byte stream cut into binary messages anywhere.
    let bytes = incoming
        .take_while(|m| futures::future::ready(!matches!(m, Ok(Message::Close(_)))))
        .filter_map(|m| {
            futures::future::ready(match m {
                Ok(Message::Binary(b)) => Some(Ok(b)),
                Ok(_) => None,
                Err(e) => Some(Err(std::io::Error::other(e))),
            })
        });
    let reader = tokio_util::io::StreamReader::new(Box::pin(bytes));
    let (out, mut out_rx) = mpsc::channel::<Bytes>(32);
    let writer = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if let Err(e) = sink.send(Message::binary(frame)).await {
                debug!(error = %e, "writing to the SPDY tunnel failed");
                return;
            }
        }
        super::websocket::close_normally(&mut sink).await;
    });
    serve(reader, out, kubelet, pod, shutdown).await;
    if let Err(e) = writer.await {
        debug!(error = %e, "the SPDY tunnel writer failed");
    }
}

/// Serves SPDY port-forward on an upgraded connection.
pub async fn serve_upgraded<S>(
    io: S,
    kubelet: Arc<dyn KubeletConnection>,
    pod: PodPorts,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, mut write) = tokio::io::split(io);
    let (out, mut out_rx) = mpsc::channel::<Bytes>(32);
    let writer = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if let Err(e) = write.write_all(&frame).await {
                debug!(error = %e, "writing to the SPDY connection failed");
                return;
            }
        }
        // Every frame is written; a failed close leaves nothing more to deliver.
        let _ = write.shutdown().await;
    });
    serve(reader, out, kubelet, pod, shutdown).await;
    if let Err(e) = writer.await {
        debug!(error = %e, "the SPDY writer failed");
    }
}

/// The two streams of one forwarded connection, as they arrive.
#[derive(Default)]
struct Pair {
    port: u16,
    error: Option<u32>,
    data: Option<u32>,
}

/// The session: reads frames, answers streams, pairs them and starts the forwards.
async fn serve<R>(
    reader: R,
    out: mpsc::Sender<Bytes>,
    kubelet: Arc<dyn KubeletConnection>,
    pod: PodPorts,
    mut shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin + Send + 'static,
{
    // Reading a frame is not cancel-safe, so it runs on its own and hands frames over.
    let (frames_tx, mut frames) = mpsc::channel::<Result<Frame, FrameError>>(16);
    let read_task = tokio::spawn(async move {
        let mut r = FrameReader::new(reader);
        loop {
            let next = r.next().await.transpose();
            let Some(next) = next else { return };
            let failed = next.is_err();
            if frames_tx.send(next).await.is_err() || failed {
                return;
            }
        }
    });
    let mut writer = FrameWriter::new();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut to_pod: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    let mut forwards = JoinSet::new();
    let mut last_stream = 0u32;
    loop {
        let frame = tokio::select! {
            f = frames.recv() => f,
            () = super::shutting_down(&mut shutdown) => {
                // Best effort: the writer may already have stopped with the connection.
                let _ = out.send(frame::goaway(last_stream)).await;
                break;
            }
            Some(_) = forwards.join_next(), if !forwards.is_empty() => continue,
        };
        match frame {
            Some(Ok(Frame::SynStream {
                stream_id, headers, ..
            })) => {
                last_stream = last_stream.max(stream_id);
                let Some((kind, port, request)) = stream_headers(&headers) else {
                    debug!(
                        stream_id,
                        "refusing a port-forward stream without its headers"
                    );
                    let rst = frame::rst_stream(stream_id, frame::RST_PROTOCOL_ERROR);
                    if out.send(rst).await.is_err() {
                        break;
                    }
                    continue;
                };
                let reply = match writer.syn_reply(stream_id) {
                    Ok(r) => r,
                    Err(e) => {
                        debug!(error = %e, "building a SYN_REPLY");
                        break;
                    }
                };
                if out.send(reply).await.is_err() {
                    break;
                }
                let pair = pairs.entry(request.clone()).or_default();
                pair.port = port;
                match kind {
                    StreamKind::Error => pair.error = Some(stream_id),
                    StreamKind::Data => pair.data = Some(stream_id),
                }
                if let Pair {
                    port,
                    error: Some(error),
                    data: Some(data),
                } = *pair
                {
                    pairs.remove(&request);
                    let (tx, rx) = mpsc::channel::<Bytes>(16);
                    to_pod.insert(data, tx);
                    forwards.spawn(forward(
                        kubelet.clone(),
                        pod.clone(),
                        port,
                        Streams { data, error },
                        rx,
                        out.clone(),
                    ));
                }
            }
            Some(Ok(Frame::Data {
                stream_id,
                flags,
                data,
            })) => {
                if !data.is_empty()
                    && let Some(tx) = to_pod.get(&stream_id)
                    && tx.send(data).await.is_err()
                {
                    to_pod.remove(&stream_id);
                }
                if flags & FLAG_FIN != 0 {
                    // The client's side ended: half-close towards the pod.
                    to_pod.remove(&stream_id);
                }
            }
            Some(Ok(Frame::RstStream { stream_id, .. })) => {
                to_pod.remove(&stream_id);
            }
            Some(Ok(Frame::Ping { id })) => {
                if out.send(frame::ping(id)).await.is_err() {
                    break;
                }
            }
            Some(Ok(Frame::GoAway)) | None => break,
            Some(Ok(Frame::Ignored)) => {}
            Some(Err(e)) => {
                debug!(error = %e, "port-forward SPDY session ended");
                break;
            }
        }
    }
    forwards.abort_all();
    read_task.abort();
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamKind {
    Error,
    Data,
}

/// `streamtype`, `port` and `requestid` of a new stream.
fn stream_headers(h: &Headers) -> Option<(StreamKind, u16, String)> {
    let first = |k: &str| h.get(k).and_then(|v| v.first()).map(String::as_str);
    let kind = match first("streamtype")? {
        "error" => StreamKind::Error,
        "data" => StreamKind::Data,
        _ => return None,
    };
    let port = first("port")?.parse::<u16>().ok().filter(|p| *p > 0)?;
    let request = first("requestid")?.to_string();
    Some((kind, port, request))
}

/// The stream ids of one forwarded connection.
#[derive(Clone, Copy)]
struct Streams {
    data: u32,
    error: u32,
}

/// One forwarded connection: connects to the port, then copies until the pod's side ends.
async fn forward(
    kubelet: Arc<dyn KubeletConnection>,
    pod: PodPorts,
    port: u16,
    streams: Streams,
    mut from_client: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<Bytes>,
) {
    let conn = match kubelet
        .port_forward(&pod.namespace, &pod.pod, &pod.pod_uid, port)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            let message = format!(
                "error forwarding port {port} to pod {}, uid {}: {}",
                pod.pod, pod.pod_uid, e.message
            );
            // A closed connection has no one left to tell.
            let _ = out
                .send(frame::data(streams.error, 0, message.as_bytes()))
                .await;
            end_streams(&out, streams).await;
            return;
        }
    };
    let (mut reader, mut writer) = tokio::io::split(conn);
    let to_pod = tokio::spawn(async move {
        while let Some(bytes) = from_client.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
        // The client stopped sending: half-close, as a TCP client would.
        let _ = writer.shutdown().await;
    });
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if out
                    .send(frame::data(streams.data, 0, &buf[..n]))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Err(e) => {
                debug!(port, error = %e, "reading from the pod's port failed");
                break;
            }
        }
    }
    end_streams(&out, streams).await;
    to_pod.abort();
}

/// Ends both streams of a forwarded connection (FLAG_FIN), as upstream's kubelet closes them.
async fn end_streams(out: &mpsc::Sender<Bytes>, streams: Streams) {
    // Sends fail only when the connection is already closed, which ends the streams anyway.
    let _ = out.send(frame::data(streams.data, FLAG_FIN, &[])).await;
    let _ = out.send(frame::data(streams.error, FLAG_FIN, &[])).await;
}
