//! The cluster DNS server: CoreDNS's `kubernetes` plugin on hickory-server, answering every
//! query from a [`Network`]'s live catalog, so a Service or Endpoints change shows in the
//! very next answer (no zone is copied or reloaded).
//!
//! What it answers, for names under the cluster domain (records have CoreDNS's 5 s TTL):
//! - `A` for `<svc>.<ns>.svc.<domain>` (the ClusterIP, or every ready endpoint of a headless
//!   Service), `<endpoint>.<svc>.<ns>.svc.<domain>` (hostname/subdomain pod records) and
//!   `<a-b-c-d>.<ns>.pod.<domain>`;
//! - `CNAME` to `spec.externalName` for an ExternalName Service, whatever type is asked;
//! - `SRV` for `_<port>._<proto>.<svc>.<ns>.svc.<domain>` of a named port: the service name
//!   on the service port, or for a headless Service each ready endpoint's name on its port,
//!   with the targets' addresses in the additional section;
//! - `SOA` for the domain itself;
//! - `PTR` for `<d.c.b.a>.in-addr.arpa`, the reverse zone served beside the domain: a
//!   ClusterIP names its Service, an endpoint address `<hostname or dashed IP>.<svc>.<ns>.svc.<domain>`;
//!   other addresses get `NXDOMAIN` with the reverse zone's SOA (CoreDNS's answer for its
//!   reverse zones without `fallthrough`);
//! - a name that exists but has no record of the asked type: `NOERROR`, no answers, the SOA in
//!   the authority section (NODATA); this includes a headless Service with no ready endpoint
//!   and the names between the domain and the records (`svc.<domain>`, `<ns>.svc.<domain>`
//!   of a namespace with Services);
//! - a name that does not exist: `NXDOMAIN` with the SOA in the authority section, so
//!   resolvers cache the miss for the SOA minimum;
//! - names outside the cluster domain and the reverse zone: `REFUSED` (this server does not forward or recurse).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo, Server};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};

use crate::dns::{REVERSE_ZONE, in_reverse_zone};
use crate::{DnsRecord, Network};

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
        // With port 0 the UDP port is free, but the same TCP port may belong to another
        // socket (an ephemeral client port, say): pick again rather than fail.
        let attempts = if addr.port() == 0 { 16 } else { 1 };
        let mut last = None;
        for _ in 0..attempts {
            let udp = UdpSocket::bind(addr).await?;
            let bound = udp.local_addr()?;
            match TcpListener::bind(bound).await {
                Ok(tcp) => return Self::serve(network, domain, udp, tcp),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
    }

    /// Serves `domain` from `network` on sockets bound already: how [`LinuxNetwork`] serves
    /// the cluster DNS address inside each node's network namespace (a socket stays in the
    /// namespace it was created in, whichever thread polls it). Must be called inside a
    /// tokio runtime.
    ///
    /// [`LinuxNetwork`]: crate::LinuxNetwork
    pub fn serve(
        network: Arc<dyn Network>,
        domain: &str,
        udp: UdpSocket,
        tcp: TcpListener,
    ) -> io::Result<DnsServer> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let origin = Name::from_ascii(format!("{domain}.")).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cluster domain {domain:?} is not a DNS name: {e}"),
            )
        })?;
        let addr = udp.local_addr()?;
        let soa = soa_record(&origin)?;
        let reverse_origin = Name::from_ascii(format!("{REVERSE_ZONE}.")).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{REVERSE_ZONE}: {e}"))
        })?;
        let reverse_soa = soa_record(&reverse_origin)?;
        let mut server = Server::new(ClusterDns {
            network,
            domain,
            soa,
            reverse_soa,
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
    /// The SOA of `in-addr.arpa`, the reverse zone served beside the cluster domain.
    reverse_soa: Record,
}

/// What one question gets.
struct Answer {
    code: ResponseCode,
    answers: Vec<Record>,
    /// The addresses of SRV targets, so a client needs no second query.
    additionals: Vec<Record>,
    /// Whether the SOA goes in the authority section (NXDOMAIN and NODATA).
    with_soa: bool,
    /// Whether the name is in the reverse zone (whose SOA then goes there).
    reverse: bool,
}

impl Answer {
    fn empty(code: ResponseCode) -> Self {
        Answer {
            code,
            answers: Vec::new(),
            additionals: Vec::new(),
            with_soa: false,
            reverse: false,
        }
    }
}

impl ClusterDns {
    fn answer(&self, qname: &Name, qtype: RecordType) -> Answer {
        let fqdn = qname.to_ascii().to_ascii_lowercase();
        let fqdn = fqdn.trim_end_matches('.');
        let reverse = in_reverse_zone(fqdn);
        if !reverse && !self.in_zone(fqdn) {
            return Answer::empty(ResponseCode::Refused);
        }
        let (apex, soa) = if reverse {
            (REVERSE_ZONE, &self.reverse_soa)
        } else {
            (self.domain.as_str(), &self.soa)
        };
        if fqdn == apex {
            let answers = match qtype {
                RecordType::SOA | RecordType::ANY => vec![soa.clone()],
                _ => Vec::new(),
            };
            return Answer {
                code: ResponseCode::NoError,
                with_soa: answers.is_empty(),
                answers,
                additionals: Vec::new(),
                reverse,
            };
        }
        let Some(records) = self.network.dns_records(fqdn) else {
            return Answer {
                with_soa: true,
                reverse,
                ..Answer::empty(ResponseCode::NXDomain)
            };
        };
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        for record in records {
            match record {
                DnsRecord::Address(ip) => {
                    if let Some(rdata) = address(ip, qtype) {
                        answers.push(Record::from_rdata(qname.clone(), TTL, rdata));
                    }
                }
                // A CNAME stands for every type at its name; this server does not chase it
                // out of the cluster domain (CoreDNS leaves that to the resolver too).
                DnsRecord::Cname(target) => {
                    if let Some(target) = absolute(&target) {
                        answers.push(Record::from_rdata(
                            qname.clone(),
                            TTL,
                            RData::CNAME(CNAME(target)),
                        ));
                    }
                }
                DnsRecord::Srv {
                    priority,
                    weight,
                    port,
                    target,
                } if matches!(qtype, RecordType::SRV | RecordType::ANY) => {
                    let Some(target_name) = absolute(&target) else {
                        continue;
                    };
                    if self.in_zone(&target) {
                        let glue = self.network.dns_records(&target).unwrap_or_default();
                        additionals.extend(glue.into_iter().filter_map(|r| match r {
                            DnsRecord::Address(ip) => {
                                address(ip, RecordType::ANY).map(|rdata| {
                                    Record::from_rdata(target_name.clone(), TTL, rdata)
                                })
                            }
                            _ => None,
                        }));
                    }
                    answers.push(Record::from_rdata(
                        qname.clone(),
                        TTL,
                        RData::SRV(SRV::new(priority, weight, port, target_name)),
                    ));
                }
                DnsRecord::Srv { .. } => {}
                DnsRecord::Ptr(target) if matches!(qtype, RecordType::PTR | RecordType::ANY) => {
                    if let Some(target) = absolute(&target) {
                        answers.push(Record::from_rdata(
                            qname.clone(),
                            TTL,
                            RData::PTR(PTR(target)),
                        ));
                    }
                }
                DnsRecord::Ptr(_) => {}
            }
        }
        Answer {
            code: ResponseCode::NoError,
            with_soa: answers.is_empty(),
            answers,
            additionals,
            reverse,
        }
    }

    /// Whether `fqdn` (lowercase, no trailing dot) is the cluster domain or under it.
    fn in_zone(&self, fqdn: &str) -> bool {
        fqdn == self.domain
            || fqdn
                .strip_suffix(self.domain.as_str())
                .is_some_and(|rest| rest.ends_with('.'))
    }
}

/// The A or AAAA data of `ip`, if `qtype` asks for it.
fn address(ip: IpAddr, qtype: RecordType) -> Option<RData> {
    match (ip, qtype) {
        (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => Some(RData::A(A(v4))),
        (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(RData::AAAA(AAAA(v6))),
        _ => None,
    }
}

/// `name` (no trailing dot) as an absolute DNS name; a name that is not one (an
/// ExternalName the API server let through) is logged and left out of the answer.
fn absolute(name: &str) -> Option<Name> {
    match Name::from_ascii(format!("{name}.")) {
        Ok(n) => Some(n),
        Err(error) => {
            tracing::warn!(name, %error, "not a DNS name; record not served");
            None
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
            Answer::empty(ResponseCode::NotImp)
        } else {
            match request.request_info() {
                Ok(info) => {
                    let query = info.query.original();
                    let answer = self.answer(query.name(), query.query_type());
                    tracing::trace!(name = %query.name(), qtype = %query.query_type(), code = %answer.code, "dns query");
                    answer
                }
                // Not exactly one question.
                Err(_) => Answer::empty(ResponseCode::FormErr),
            }
        };
        metadata.response_code = answer.code;
        metadata.authoritative =
            matches!(answer.code, ResponseCode::NoError | ResponseCode::NXDomain);
        metadata.recursion_available = false;
        let soa = answer.with_soa.then_some(if answer.reverse {
            &self.reverse_soa
        } else {
            &self.soa
        });
        let response = builder.build(
            metadata,
            answer.answers.iter(),
            std::iter::empty(),
            soa,
            answer.additionals.iter(),
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
