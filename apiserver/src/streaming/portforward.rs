//! Port-forward over a WebSocket with channels (upstream kubelet's `portforward` WebSocket
//! protocol, subprotocol `v4.channel.k8s.io`), as kube-rs and the Python client speak it.
//!
//! The ports come from the query (`ports=8080,9090`). Port number `i` has two channels: data
//! `2i` (both ways) and error `2i+1` (server to client). The first message on each channel
//! carries the port as two little-endian bytes. Each port gets one connection into the pod;
//! a failure to connect is written as text on its error channel. When every port's
//! connection has closed, the server closes the socket.

use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

use super::websocket::WebSocket;
use crate::kubelet::KubeletConnection;

/// The channel protocol served for WebSocket port-forward.
pub const PROTOCOLS: [&str; 1] = ["v4.channel.k8s.io"];

/// How much one data message carries at most.
const CHUNK: usize = 32 * 1024;

/// The pod the ports are in.
#[derive(Clone, Debug)]
pub struct PodPorts {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's UID.
    pub pod_uid: String,
    /// The ports, in the order the client asked for them (their channel order).
    pub ports: Vec<u16>,
}

/// Serves port-forward over `ws` until every port's connection closed, the client goes
/// away or the server shuts down.
pub async fn serve(
    ws: WebSocket,
    kubelet: Arc<dyn KubeletConnection>,
    target: PodPorts,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut sink, mut incoming) = ws.split();
    let (out, mut out_rx) = mpsc::channel::<Message>(16);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if let Err(e) = sink.send(m).await {
                debug!(error = %e, "writing to the port-forward stream failed");
                return;
            }
        }
        super::websocket::close_normally(&mut sink).await;
    });
    let mut to_pod = Vec::with_capacity(target.ports.len());
    let mut forwards = JoinSet::new();
    for (i, &port) in target.ports.iter().enumerate() {
        let data = channel_of(i, 0);
        let error = channel_of(i, 1);
        for ch in [data, error] {
            let [lo, hi] = port.to_le_bytes();
            if out.send(Message::binary(vec![ch, lo, hi])).await.is_err() {
                return;
            }
        }
        let (tx, rx) = mpsc::channel::<Bytes>(16);
        to_pod.push(Some(tx));
        forwards.spawn(forward_port(
            kubelet.clone(),
            target.clone(),
            port,
            (data, error),
            rx,
            out.clone(),
        ));
    }
    loop {
        tokio::select! {
            done = forwards.join_next() => {
                if done.is_none() {
                    break;
                }
            }
            () = super::shutting_down(&mut shutdown) => break,
            message = incoming.next() => match message {
                Some(Ok(Message::Binary(data))) => {
                    let Some((&channel, payload)) = data.split_first() else { continue };
                    let index = usize::from(channel / 2);
                    if channel % 2 != 0 || payload.is_empty() {
                        continue;
                    }
                    if let Some(slot) = to_pod.get_mut(index)
                        && let Some(tx) = slot
                        && tx.send(Bytes::copy_from_slice(payload)).await.is_err()
                    {
                        *slot = None;
                    }
                }
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    debug!(error = %e, "reading the port-forward stream failed");
                    break;
                }
            },
        }
    }
    forwards.abort_all();
    drop(out);
    if let Err(e) = writer.await {
        debug!(error = %e, "the port-forward writer failed");
    }
}

/// The channel of port number `index`: 0 for data, 1 for errors.
fn channel_of(index: usize, kind: u8) -> u8 {
    // At most 128 ports are accepted, so this fits in a byte.
    u8::try_from(index * 2).unwrap_or(u8::MAX - 1) + kind
}

/// One port: connects, then copies both ways until the pod's side closes.
async fn forward_port(
    kubelet: Arc<dyn KubeletConnection>,
    target: PodPorts,
    port: u16,
    (data, error): (u8, u8),
    mut from_client: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<Message>,
) {
    let conn = kubelet
        .port_forward(&target.namespace, &target.pod, &target.pod_uid, port)
        .await;
    let conn = match conn {
        Ok(c) => c,
        Err(e) => {
            let text = format!(
                "error forwarding port {port} to pod {}, uid {}: {}",
                target.pod, target.pod_uid, e.message
            );
            let mut message = vec![error];
            message.extend_from_slice(text.as_bytes());
            // If the socket is already gone there is no one left to tell.
            let _ = out.send(Message::binary(message)).await;
            return;
        }
    };
    let (mut reader, mut writer) = tokio::io::split(conn);
    let to_pod = async move {
        while let Some(bytes) = from_client.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
        // The client stopped sending: half-close, as a TCP client would.
        let _ = writer.shutdown().await;
    };
    let from_pod = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => {
                    let mut message = Vec::with_capacity(n + 1);
                    message.push(data);
                    message.extend_from_slice(&buf[..n]);
                    if out.send(Message::binary(message)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    debug!(port, error = %e, "reading from the pod's port failed");
                    return;
                }
            }
        }
    };
    // The pod closing its side ends the port, as upstream; the client's end of input only
    // half-closes it.
    let to_pod = tokio::spawn(to_pod);
    from_pod.await;
    to_pod.abort();
}
