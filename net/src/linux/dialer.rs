//! Connections from this process to pod addresses. Pod and service addresses exist only
//! inside the node namespaces, so a socket that reaches them must be made in one: a dialer
//! is a thread that entered a node's namespace and makes TCP sockets on request. Only the
//! `socket()` call happens there; the caller's runtime drives the connect and the traffic,
//! since a socket stays in the namespace it was made in whichever thread uses it.
//!
//! Any node namespace routes to every pod (the nodes have routes to each other's pod
//! CIDRs) and holds the service rules, so one dialer serves the whole cluster.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;

use super::netns;
use crate::{Error, Result};

/// A request for one socket: IPv4 or not, and where to send it.
type SocketRequest = (bool, oneshot::Sender<io::Result<TcpSocket>>);

/// Makes sockets inside one node namespace. Dropping it ends its thread.
pub(crate) struct Dialer {
    /// The node whose namespace the thread entered.
    pub(crate) node: String,
    requests: mpsc::Sender<SocketRequest>,
}

impl Dialer {
    /// Starts the thread inside `netns`, the namespace of `node`.
    pub(crate) async fn start(node: &str, netns: &Path) -> Result<Dialer> {
        let (requests, incoming) = mpsc::channel::<SocketRequest>();
        let (entered, started) = oneshot::channel();
        let path: PathBuf = netns.to_owned();
        std::thread::Builder::new()
            .name("kyb-dialer".into())
            .spawn(move || {
                if let Err(e) = netns::enter(&path) {
                    // The receiver only goes if the caller was cancelled; nothing to tell then.
                    let _ = entered.send(Err(e));
                    return;
                }
                if entered.send(Ok(())).is_err() {
                    return;
                }
                // Ends when the `Dialer` (the only sender) is dropped.
                while let Ok((v4, reply)) = incoming.recv() {
                    let socket = if v4 {
                        TcpSocket::new_v4()
                    } else {
                        TcpSocket::new_v6()
                    };
                    // A caller that gave up waiting needs no socket.
                    let _ = reply.send(socket);
                }
            })
            .map_err(|e| Error::Backend {
                context: format!("spawning the dialer thread for {}", netns.display()),
                source: Some(Box::new(e)),
            })?;
        started.await.map_err(|e| Error::Backend {
            context: format!("the dialer thread for {} died", netns.display()),
            source: Some(Box::new(e)),
        })??;
        Ok(Dialer {
            node: node.to_string(),
            requests,
        })
    }

    /// A TCP connection to `addr`, made from inside the node namespace.
    pub(crate) async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let (reply, socket) = oneshot::channel();
        self.requests
            .send((addr.is_ipv4(), reply))
            .map_err(|_| io::Error::other("the pod network's dialer thread has stopped"))?;
        let socket = socket
            .await
            .map_err(|_| io::Error::other("the pod network's dialer thread has stopped"))??;
        socket.connect(addr).await
    }
}
