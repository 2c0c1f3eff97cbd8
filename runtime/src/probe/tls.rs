//! The TLS client of `httpGet` probes with `scheme: HTTPS`: certificates are not verified,
//! as upstream's prober does (see [`kybernetes_core::pod_tls`]).

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Opens a TLS connection over `stream` to `host` (the SNI name when it is a DNS name),
/// accepting any certificate.
pub(super) async fn connect(
    host: &str,
    stream: TcpStream,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(host.to_string()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("invalid host {host:?}: {e}"),
        )
    })?;
    let config =
        kybernetes_core::pod_tls::insecure_skip_verify_config().map_err(std::io::Error::other)?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
}
