//! The TLS side of the HTTPS server: rustls with the serving certificate, ALPN for HTTP/2 and
//! HTTP/1.1, and client certificates verified against the cluster CA.
//!
//! Client certificates are optional at the TLS layer, as upstream's: a client without one
//! (a bearer token, or anonymous) completes the handshake and the authenticators decide. A
//! certificate that does not chain to the cluster CA fails the handshake.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::certificates::ClusterPki;

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM certificate or key could not be read.
    #[error("reading the {what}: {source}")]
    Pem {
        /// Which one.
        what: &'static str,
        /// The cause.
        source: rustls_pki_types::pem::Error,
    },
    /// rustls refused the configuration.
    #[error("configuring TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error("configuring client certificate verification: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The rustls server configuration of the API server.
pub fn server_config(pki: &ClusterPki) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(pki.ca_pem().as_bytes()) {
        let ca = ca.map_err(|source| TlsError::Pem {
            what: "CA certificate",
            source,
        })?;
        roots.add(ca)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let chain = CertificateDer::pem_slice_iter(pki.serving().cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            what: "serving certificate",
            source,
        })?;
    let key =
        PrivateKeyDer::from_pem_slice(pki.serving().key_pem.as_bytes()).map_err(|source| {
            TlsError::Pem {
                what: "serving key",
                source,
            }
        })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
