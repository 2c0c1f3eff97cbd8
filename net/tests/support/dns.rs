//! DNS on the wire for the cluster DNS tests: a question, asked over UDP (retried) or TCP
//! (two-byte length prefix), and the A records of the answer. Shared by the net tests
//! (`mod support`) and the cluster tests (`tests/dns.rs`, by `#[path]`), which are separate
//! crates with no test-support crate between them. Each test binary uses a part.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_server::proto::op::{Message, MessageType, OpCode, Query};
use hickory_server::proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long a question may go unanswered on a loaded machine.
const WITHIN: Duration = Duration::from_secs(60);

/// A `qtype` question for `name` with id `id`, asking for recursion as resolvers do.
pub fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    message.to_vec().expect("encode query")
}

/// Asks `server` for `name` over UDP, retried with a new id every two seconds: a datagram
/// may be lost on a loaded machine. The socket is not connected, so a reply counts by its
/// id whatever address it comes from.
pub async fn ask_udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let any: IpAddr = if server.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = UdpSocket::bind((any, 0)).await.expect("bind client");
    let deadline = tokio::time::Instant::now() + WITHIN;
    for id in 1u16.. {
        socket
            .send_to(&query(id, name, qtype), server)
            .await
            .expect("send");
        let mut buf = vec![0u8; 4096];
        if let Ok(received) =
            tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf)).await
        {
            let (n, _) = received.expect("recv");
            let reply = Message::from_vec(&buf[..n]).expect("decode reply");
            if reply.metadata.id == id {
                return reply;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no DNS reply for {name} over UDP"
        );
    }
    unreachable!("ran out of query ids")
}

/// Asks `server` for `name` over TCP with id `id`.
pub async fn ask_tcp(server: SocketAddr, id: u16, name: &str, qtype: RecordType) -> Message {
    tokio::time::timeout(WITHIN, async {
        let mut stream = TcpStream::connect(server)
            .await
            .unwrap_or_else(|e| panic!("TCP {server}: {e}"));
        let query = query(id, name, qtype);
        let len = u16::try_from(query.len()).expect("short query");
        stream
            .write_all(&len.to_be_bytes())
            .await
            .expect("send length");
        stream.write_all(&query).await.expect("send");
        let len = stream.read_u16().await.expect("reply length");
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await.expect("reply");
        Message::from_vec(&buf).expect("decode reply")
    })
    .await
    .unwrap_or_else(|_| panic!("no DNS reply for {name} over TCP from {server}"))
}

/// The addresses of the A records among the answers, sorted: the order of records in an
/// answer carries no meaning.
pub fn a_records(reply: &Message) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}
