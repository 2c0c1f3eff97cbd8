//! TLS termination: the certificates of the served Ingresses' `spec.tls` Secrets, chosen by
//! the client's SNI name.
//!
//! Each `spec.tls` entry names a `kubernetes.io/tls` Secret in the Ingress's namespace
//! (`tls.crt`: the PEM chain, `tls.key`: the PEM key) and the hosts it serves, exact or
//! `*.example.com`. An exact host beats a wildcard, and the older Ingress wins a host both
//! claim. An entry without hosts is the certificate for clients that send no SNI name or one
//! no entry lists (ingress-nginx serves its own fake certificate there; with no such entry
//! this controller ends the handshake, as it has no certificate to offer).
//!
//! The [`SniResolver`] reads the current [`CertTable`] on every handshake, so a Secret's
//! update is served from the next connection on.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::routes::HostMatch;

/// The certificates by host, built from the served Ingresses.
#[derive(Debug, Default)]
pub struct CertTable {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    fallback: Option<Arc<CertifiedKey>>,
}

/// A `spec.tls` entry whose Secret could not be served.
#[derive(Debug)]
pub struct SecretProblem {
    /// The Ingress naming it.
    pub ingress: Arc<Ingress>,
    /// What is wrong, naming the Secret.
    pub message: String,
}

impl CertTable {
    /// The certificates of `ingresses` (oldest first), their Secrets read from `secrets`.
    pub fn build(
        ingresses: &[Arc<Ingress>],
        secrets: &Store<Secret>,
    ) -> (Self, Vec<SecretProblem>) {
        let mut table = CertTable::default();
        let mut problems = Vec::new();
        // Parsed once per Secret, however many entries name it.
        let mut parsed: HashMap<(String, String), Option<Arc<CertifiedKey>>> = HashMap::new();
        for ingress in ingresses {
            let namespace = ingress.namespace().unwrap_or_default();
            let entries = ingress
                .spec
                .as_ref()
                .and_then(|s| s.tls.as_deref())
                .unwrap_or_default();
            for entry in entries {
                let Some(secret_name) = entry.secret_name.as_deref().filter(|n| !n.is_empty())
                else {
                    continue;
                };
                let key = (namespace.clone(), secret_name.to_string());
                let cert = parsed
                    .entry(key)
                    .or_insert_with(|| match load(secrets, &namespace, secret_name) {
                        Ok(cert) => Some(cert),
                        Err(message) => {
                            problems.push(SecretProblem {
                                ingress: ingress.clone(),
                                message,
                            });
                            None
                        }
                    })
                    .clone();
                let Some(cert) = cert else { continue };
                table.insert(entry.hosts.as_deref().unwrap_or_default(), cert);
            }
        }
        (table, problems)
    }

    /// Serves `cert` for `hosts` where no older entry does.
    fn insert(&mut self, hosts: &[String], cert: Arc<CertifiedKey>) {
        if hosts.is_empty() && self.fallback.is_none() {
            self.fallback = Some(cert.clone());
        }
        for host in hosts {
            match HostMatch::parse(Some(host)) {
                HostMatch::Exact(h) => {
                    self.exact.entry(h).or_insert_with(|| cert.clone());
                }
                HostMatch::Wildcard(suffix) => {
                    self.wildcard.entry(suffix).or_insert_with(|| cert.clone());
                }
                HostMatch::Any => {}
            }
        }
    }

    /// The certificate for SNI name `name`.
    pub fn lookup(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let by_name = name.map(str::to_ascii_lowercase).and_then(|name| {
            self.exact.get(&name).cloned().or_else(|| {
                // `*.example.com` serves exactly one more label.
                let (_, suffix) = name.split_once('.')?;
                self.wildcard.get(&format!(".{suffix}")).cloned()
            })
        });
        by_name.or_else(|| self.fallback.clone())
    }
}

/// The certificate and key of Secret `namespace/name`, or why it cannot be served.
fn load(secrets: &Store<Secret>, namespace: &str, name: &str) -> Result<Arc<CertifiedKey>, String> {
    let secret = secrets
        .get(&ObjectRef::new(name).within(namespace))
        .ok_or_else(|| format!("secret {namespace}/{name} not found"))?;
    if secret.type_.as_deref() != Some("kubernetes.io/tls") {
        return Err(format!(
            "secret {namespace}/{name} is of type {:?}, not kubernetes.io/tls",
            secret.type_.as_deref().unwrap_or("")
        ));
    }
    let field = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.as_slice())
            .ok_or_else(|| format!("secret {namespace}/{name} has no {key}"))
    };
    certified_key(field("tls.crt")?, field("tls.key")?)
        .map(Arc::new)
        .map_err(|e| format!("secret {namespace}/{name}: {e}"))
}

/// A rustls certificate from PEM `tls.crt` and `tls.key`.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.crt: {e}"))?;
    if chain.is_empty() {
        return Err("tls.crt holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("tls.key: {e}"))?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("tls.key: {e}"))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|e| format!("tls.key does not match tls.crt: {e}"))?;
    Ok(certified)
}

/// Picks the certificate by SNI from the current [`CertTable`].
#[derive(Debug, Default)]
pub struct SniResolver {
    table: RwLock<Arc<CertTable>>,
}

impl SniResolver {
    /// Serves `table` from the next handshake on.
    pub fn replace(&self, table: CertTable) {
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner()).clone();
        let cert = table.lookup(client_hello.server_name());
        if cert.is_none() {
            tracing::debug!(sni = ?client_hello.server_name(), "no certificate for the TLS handshake");
        }
        cert
    }
}

/// The TLS server configuration: HTTP/1.1 only, certificates from `resolver`.
pub fn server_config(resolver: Arc<SniResolver>) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str) -> Arc<CertifiedKey> {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("self-signed");
        Arc::new(
            certified_key(
                c.cert.pem().as_bytes(),
                c.signing_key.serialize_pem().as_bytes(),
            )
            .expect("certified key"),
        )
    }

    #[test]
    fn exact_beats_wildcard_and_older_entries_win() {
        let a = cert("a.example.com");
        let wild = cert("*.example.com");
        let later = cert("a.example.com");
        let mut table = CertTable::default();
        table.insert(&["a.example.com".into()], a.clone());
        table.insert(
            &["*.example.com".into(), "a.example.com".into()],
            wild.clone(),
        );
        table.insert(&["a.example.com".into()], later);
        let same = |x: Option<Arc<CertifiedKey>>, y: &Arc<CertifiedKey>| {
            x.is_some_and(|x| Arc::ptr_eq(&x, y))
        };
        assert!(same(table.lookup(Some("A.example.com")), &a));
        assert!(same(table.lookup(Some("b.example.com")), &wild));
        assert!(table.lookup(Some("c.b.example.com")).is_none());
        assert!(table.lookup(None).is_none());
        table.insert(&[], a.clone());
        assert!(same(table.lookup(None), &a));
    }

    #[test]
    fn a_key_for_another_certificate_is_refused() {
        let one = rcgen::generate_simple_self_signed(vec!["a".into()]).expect("cert");
        let other = rcgen::generate_simple_self_signed(vec!["a".into()]).expect("cert");
        let err = certified_key(
            one.cert.pem().as_bytes(),
            other.signing_key.serialize_pem().as_bytes(),
        )
        .expect_err("mismatch refused");
        assert!(err.contains("does not match"), "{err}");
        assert!(certified_key(b"", b"").is_err());
    }
}
