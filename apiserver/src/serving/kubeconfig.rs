//! The kubeconfig of a served cluster: one named cluster, user and context, with the CA and
//! the admin client certificate embedded, so the file works on its own.

use std::net::SocketAddr;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::certificates::{CertifiedKey, PkiError, write_file};

/// A kubeconfig document (YAML).
#[derive(Clone)]
pub struct Kubeconfig {
    server: String,
    yaml: String,
}

impl std::fmt::Debug for Kubeconfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The document holds a private key: show only where it points.
        f.debug_struct("Kubeconfig")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Kubeconfig {
    /// A kubeconfig for `user` reaching the server at `addr`, trusting `ca_pem`. `name` names
    /// the cluster and the context (`kybernetes`).
    pub fn new(
        name: &str,
        addr: SocketAddr,
        ca_pem: &str,
        user: &str,
        client: &CertifiedKey,
    ) -> Self {
        let server = format!("https://{}", connect_address(addr));
        let b64 = |s: &str| STANDARD.encode(s.as_bytes());
        let doc = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{
                "name": name,
                "cluster": { "server": server, "certificate-authority-data": b64(ca_pem) },
            }],
            "users": [{
                "name": user,
                "user": {
                    "client-certificate-data": b64(&client.cert_pem),
                    "client-key-data": b64(&client.key_pem),
                },
            }],
            "contexts": [{
                "name": name,
                "context": { "cluster": name, "user": user },
            }],
            "current-context": name,
            "preferences": {},
        });
        // A JSON value of strings, lists and maps always serializes.
        let yaml = serde_norway::to_string(&doc).unwrap_or_else(|_| doc.to_string());
        Kubeconfig { server, yaml }
    }

    /// The server URL (`https://127.0.0.1:6443`).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The document, YAML.
    pub fn to_yaml(&self) -> &str {
        &self.yaml
    }

    /// Writes the document to `path`, readable by its owner only (it holds a private key).
    /// The parent directory is created if missing.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), PkiError> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| PkiError::Io {
                action: "creating",
                path: parent.to_path_buf(),
                source,
            })?;
        }
        write_file(path, &self.yaml, 0o600)
    }
}

/// Where a client connects to reach a server listening on `addr`: a wildcard address
/// (`0.0.0.0`, `::`) becomes loopback.
pub fn connect_address(addr: SocketAddr) -> SocketAddr {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}
