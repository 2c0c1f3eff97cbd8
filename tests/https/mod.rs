//! A small HTTPS client for the serving tests and benchmarks: rustls with the cluster CA, an
//! optional client certificate, and a chosen ALPN protocol (HTTP/2 or HTTP/1.1), over one
//! connection.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Boxed error of the client.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which HTTP version to offer in ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `h2`.
    Http2,
    /// `http/1.1`.
    Http1,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One HTTPS connection to the API server.
pub struct HttpsClient {
    sender: Sender,
    authority: String,
}

/// A client certificate and key, PEM.
pub struct Identity<'a> {
    /// Certificate, PEM.
    pub cert_pem: &'a str,
    /// Key, PEM.
    pub key_pem: &'a str,
}

impl HttpsClient {
    /// Connects to `addr` trusting `ca_pem`, presenting `identity` if given.
    pub async fn connect(
        addr: SocketAddr,
        ca_pem: &str,
        identity: Option<Identity<'_>>,
        protocol: Protocol,
    ) -> Result<Self, BoxError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c?)?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match identity {
            Some(id) => {
                let chain = CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()?;
                let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes())?;
                builder.with_client_auth_cert(chain, key)?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![match protocol {
            Protocol::Http2 => b"h2".to_vec(),
            Protocol::Http1 => b"http/1.1".to_vec(),
        }];
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(tls);
        let sender = match negotiated.as_deref() {
            Some(b"h2") => {
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(conn);
                Sender::H2(sender)
            }
            _ => {
                let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
                tokio::spawn(conn);
                Sender::H1(sender)
            }
        };
        Ok(HttpsClient {
            sender,
            authority: format!("localhost:{}", addr.port()),
        })
    }

    /// The HTTP version of this connection.
    pub fn version(&self) -> Version {
        match self.sender {
            Sender::H1(_) => Version::HTTP_11,
            Sender::H2(_) => Version::HTTP_2,
        }
    }

    /// Sends a request (its URI a path) and reads the whole response.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Response<Bytes>, BoxError> {
        let (mut parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        let resp = match &mut self.sender {
            Sender::H1(s) => {
                parts
                    .headers
                    .insert(http::header::HOST, self.authority.parse()?);
                parts.uri = path.parse()?;
                s.ready().await?;
                s.send_request(Request::from_parts(parts, body)).await?
            }
            Sender::H2(s) => {
                parts.uri = format!("https://{}{path}", self.authority).parse()?;
                parts.version = Version::HTTP_2;
                s.ready().await?;
                s.send_request(Request::from_parts(parts, body)).await?
            }
        };
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await?.to_bytes();
        Ok(Response::from_parts(parts, bytes))
    }

    /// A GET of `path`, with an optional bearer token.
    pub async fn get(
        &mut self,
        path: &str,
        token: Option<&str>,
    ) -> Result<Response<Bytes>, BoxError> {
        let mut req = Request::get(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        self.send(req.body(Full::default())?).await
    }
}
