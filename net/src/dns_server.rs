//! The cluster DNS server: CoreDNS's `kubernetes` plugin on hickory-server, answering every
//! query from a [`Network`]'s live catalog, so a Service or Endpoints change shows in the
//! very next answer (no zone is copied or reloaded).
//!
//! What it answers, for names under the cluster domain (records have CoreDNS's 5 s TTL):
//! - `A` for `<svc>.<ns>.svc.<domain>` (the ClusterIP, or every ready endpoint of a headless
//!   Service), `<endpoint>.<svc>.<ns>.svc.<domain>` (hostname/subdomain pod records) and
//!   `<a-b-c-d>.<ns>.pod.<domain>`;
//! - `SOA` for the domain itself;
//! - a name that exists but has no record of the asked type: `NOERROR`, no answers, the SOA in
//!   the authority section (NODATA);
//! - a name that does not exist: `NXDOMAIN` with the SOA in the authority section, so
//!   resolvers cache the miss for the SOA minimum;
//! - names outside the cluster domain: `REFUSED` (this server does not forward or recurse).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, SOA};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo, Server};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};

use crate::Network;
use crate::dns;

/// The TTL CoreDNS's `kubernetes` plugin gives its records, and its SOA minimum.
const TTL: u32 = 5;
/// How long a TCP client may stay idle before the server closes its connection.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;

/// A running cluster DNS server on UDP and TCP, both on [`DnsServer::local_addr`].
///
/// Dropping it stops serving; [`DnsServer::shutdown`] waits for in-flight queries.
///
/// ```
/// use std::sync::Arc;
/// use kybernetes_net::{DnsServer, LocalNetwork, Network};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let network = Arc::new(LocalNetwork::default());
/// let dns = DnsServer::bind(
///     network.clone(),
///     &network.cluster_domain(),
///     "127.0.0.1:0".parse().unwrap(),
/// )
/// .await?;
/// // A pod's resolv.conf would say `nameserver <dns.local_addr().ip()>` (port 53 in a pod
/// // network namespace; a loopback port for `LocalNetwork`).
/// let _addr = dns.local_addr();
/// dns.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct DnsServer {
    server: Server<ClusterDns>,
    addr: SocketAddr,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl DnsServer {
    /// Serves `domain` (`cluster.local`) from `network` on UDP and TCP at `addr`. Port 0 picks
    /// a free port, the same for both protocols.
    pub async fn bind(
        network: Arc<dyn Network>,
        domain: &str,
        addr: SocketAddr,
    ) -> io::Result<DnsServer> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let origin = Name::from_ascii(format!("{domain}.")).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cluster domain {domain:?} is not a DNS name: {e}"),
            )
        })?;
        let udp = UdpSocket::bind(addr).await?;
        let addr = udp.local_addr()?;
        let tcp = TcpListener::bind(addr).await?;
        let soa = soa_record(&origin)?;
        let mut server = Server::new(ClusterDns {
            network,
            domain,
            soa,
        });
        server.register_socket(udp);
        server.register_listener(tcp, TCP_TIMEOUT, TCP_RESPONSE_BUFFER);
        tracing::info!(%addr, "cluster DNS serving");
        Ok(DnsServer { server, addr })
    }

    /// The address both the UDP socket and the TCP listener are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting queries and waits for the ones in flight.
    pub async fn shutdown(mut self) {
        if let Err(error) = self.server.shutdown_gracefully().await {
            tracing::warn!(%error, "cluster DNS stopped with an error");
        }
    }
}

/// The SOA CoreDNS serves for the cluster zone.
fn soa_record(origin: &Name) -> io::Result<Record> {
    let name = |prefix: &str| {
        Name::from_ascii(prefix)
            .and_then(|n| n.append_domain(origin))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
    };
    let soa = SOA::new(
        name("ns.dns")?,
        name("hostmaster")?,
        1,
        7200,
        1800,
        86400,
        TTL,
    );
    Ok(Record::from_rdata(origin.clone(), TTL, RData::SOA(soa)))
}

/// The request handler: every query answered from the network's catalog as it is now.
struct ClusterDns {
    network: Arc<dyn Network>,
    /// Lowercase, no trailing dot.
    domain: String,
    soa: Record,
}

/// What one question gets.
struct Answer {
    code: ResponseCode,
    answers: Vec<Record>,
    /// Whether the SOA goes in the authority section (NXDOMAIN and NODATA).
    with_soa: bool,
}

impl ClusterDns {
    fn answer(&self, qname: &Name, qtype: RecordType) -> Answer {
        let fqdn = qname.to_ascii().to_ascii_lowercase();
        let fqdn = fqdn.trim_end_matches('.');
        let in_zone = fqdn == self.domain
            || fqdn
                .strip_suffix(self.domain.as_str())
                .is_some_and(|rest| rest.ends_with('.'));
        if !in_zone {
            return Answer {
                code: ResponseCode::Refused,
                answers: Vec::new(),
                with_soa: false,
            };
        }
        if fqdn == self.domain {
            let answers = match qtype {
                RecordType::SOA | RecordType::ANY => vec![self.soa.clone()],
                _ => Vec::new(),
            };
            return Answer {
                code: ResponseCode::NoError,
                with_soa: answers.is_empty(),
                answers,
            };
        }
        let ips = match dns::parse_fqdn(fqdn, &self.domain) {
            // The trailing dot makes the name absolute: no search path is applied.
            Some(_) => self.network.resolve(&format!("{fqdn}."), "default"),
            None => Vec::new(),
        };
        if ips.is_empty() {
            return Answer {
                code: ResponseCode::NXDomain,
                answers: Vec::new(),
                with_soa: true,
            };
        }
        let answers: Vec<Record> = ips
            .into_iter()
            .filter_map(|ip| match (ip, qtype) {
                (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => Some(RData::A(A(v4))),
                (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(RData::AAAA(AAAA(v6))),
                _ => None,
            })
            .map(|rdata| Record::from_rdata(qname.clone(), TTL, rdata))
            .collect();
        Answer {
            code: ResponseCode::NoError,
            with_soa: answers.is_empty(),
            answers,
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for ClusterDns {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut metadata = Metadata::response_from_request(&request.metadata);
        let answer = if request.metadata.op_code != OpCode::Query {
            Answer {
                code: ResponseCode::NotImp,
                answers: Vec::new(),
                with_soa: false,
            }
        } else {
            match request.request_info() {
                Ok(info) => {
                    let query = info.query.original();
                    let answer = self.answer(query.name(), query.query_type());
                    tracing::trace!(name = %query.name(), qtype = %query.query_type(), code = %answer.code, "dns query");
                    answer
                }
                // Not exactly one question.
                Err(_) => Answer {
                    code: ResponseCode::FormErr,
                    answers: Vec::new(),
                    with_soa: false,
                },
            }
        };
        metadata.response_code = answer.code;
        metadata.authoritative =
            matches!(answer.code, ResponseCode::NoError | ResponseCode::NXDomain);
        metadata.recursion_available = false;
        let soa = answer.with_soa.then_some(&self.soa);
        let response = builder.build(
            metadata,
            answer.answers.iter(),
            std::iter::empty(),
            soa,
            std::iter::empty(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, src = %request.src(), "dns response not sent");
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}
