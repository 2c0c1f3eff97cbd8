//! The cluster's public-key infrastructure: a CA, the API server's serving certificate and the
//! admin client certificate, generated at the first start and kept in `<data-dir>/pki/`
//! (upstream kubeadm's `ca.crt`, `apiserver.crt` and the admin kubeconfig's client pair).
//!
//! Keys are ECDSA P-256. The CA is valid for ten years and the leaf certificates for one, as
//! kubeadm issues them. A restart with the same directory reuses every file; only a serving
//! certificate that lacks a requested name is re-issued, signed by the same CA, so kubeconfigs
//! written earlier keep working.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use x509_parser::extensions::GeneralName;

use crate::authentication::GROUP_MASTERS;

/// The user name of the admin client certificate, as kubeadm names it.
pub const ADMIN_USER: &str = "kubernetes-admin";

/// The names every serving certificate carries besides the listen address: loopback, and the
/// in-cluster names of the `kubernetes` service.
pub const DEFAULT_SERVING_NAMES: [&str; 8] = [
    "127.0.0.1",
    "::1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "10.96.0.1",
];

/// What can go wrong creating or loading the certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a file failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A certificate or key could not be generated or parsed.
    #[error("{context}: {source}")]
    Certificate {
        /// Which certificate.
        context: String,
        /// The cause.
        source: rcgen::Error,
    },
    /// A stored certificate is not valid X.509.
    #[error("{} is not a valid certificate: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct CertifiedKey {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a private key.
        f.debug_struct("CertifiedKey").finish_non_exhaustive()
    }
}

/// The cluster CA and the certificates it signed for the API server and the admin.
#[derive(Clone, Debug)]
pub struct ClusterPki {
    ca: CertifiedKey,
    serving: CertifiedKey,
    admin: CertifiedKey,
}

impl ClusterPki {
    /// A fresh CA, serving certificate (for `serving_names` and [`DEFAULT_SERVING_NAMES`]) and
    /// admin certificate, held in memory only.
    pub fn generate(serving_names: &[String], now: DateTime<Utc>) -> Result<Self, PkiError> {
        let (ca, ca_issuer) = new_ca(now)?;
        let serving = new_serving(&ca_issuer, serving_names, now)?;
        let admin = new_client(&ca_issuer, ADMIN_USER, &[GROUP_MASTERS], now)?;
        Ok(ClusterPki { ca, serving, admin })
    }

    /// Loads the certificates kept in `dir`, or generates and writes them on the first start.
    /// A serving certificate that lacks one of `serving_names` is re-issued by the same CA.
    pub fn load_or_generate(
        dir: &Path,
        serving_names: &[String],
        now: DateTime<Utc>,
    ) -> Result<Self, PkiError> {
        let files = PkiFiles(dir.to_path_buf());
        let Some(ca) = files.read("ca")? else {
            let pki = Self::generate(serving_names, now)?;
            files.create_dir()?;
            files.write("ca", &pki.ca)?;
            files.write("apiserver", &pki.serving)?;
            files.write("admin", &pki.admin)?;
            tracing::info!(dir = %dir.display(), "generated the cluster certificates");
            return Ok(pki);
        };
        let issuer = ca_issuer(&ca, &files.path("ca.crt"))?;
        let serving = match files.read("apiserver")? {
            Some(s) if covers(&s.cert_pem, serving_names, &files.path("apiserver.crt"))? => s,
            _ => {
                let s = new_serving(&issuer, serving_names, now)?;
                files.write("apiserver", &s)?;
                tracing::info!(names = ?serving_names, "re-issued the serving certificate");
                s
            }
        };
        let admin = match files.read("admin")? {
            Some(a) => a,
            None => {
                let a = new_client(&issuer, ADMIN_USER, &[GROUP_MASTERS], now)?;
                files.write("admin", &a)?;
                a
            }
        };
        Ok(ClusterPki { ca, serving, admin })
    }

    /// The CA certificate, PEM: what clients trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// The API server's serving certificate and key.
    pub fn serving(&self) -> &CertifiedKey {
        &self.serving
    }

    /// The admin client certificate (`kubernetes-admin`, group `system:masters`) and key.
    pub fn admin(&self) -> &CertifiedKey {
        &self.admin
    }

    /// Issues a client certificate for `user` in `groups` (its CN and O entries), signed by the
    /// cluster CA: the x509 authenticator then knows the bearer as that user.
    pub fn issue_client_certificate(
        &self,
        user: &str,
        groups: &[&str],
        now: DateTime<Utc>,
    ) -> Result<CertifiedKey, PkiError> {
        let issuer = ca_issuer(&self.ca, Path::new("the cluster CA"))?;
        new_client(&issuer, user, groups, now)
    }
}

fn cert_error(context: impl Into<String>) -> impl FnOnce(rcgen::Error) -> PkiError {
    let context = context.into();
    move |source| PkiError::Certificate { context, source }
}

fn validity(params: &mut CertificateParams, now: DateTime<Utc>, days: i64) {
    // Whole days, from the day before now: that covers clocks that disagree a little. Year,
    // month and day come from a valid date, so they are in range.
    let day = |t: DateTime<Utc>| rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8);
    params.not_before = day(now - Duration::days(1));
    params.not_after = day(now + Duration::days(days));
}

fn new_ca(now: DateTime<Utc>) -> Result<(CertifiedKey, Issuer<'static, KeyPair>), PkiError> {
    let key = KeyPair::generate().map_err(cert_error("generating the CA key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "kybernetes-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    validity(&mut params, now, 3650);
    let cert = params
        .self_signed(&key)
        .map_err(cert_error("signing the CA certificate"))?;
    let ca = CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    };
    Ok((ca, Issuer::new(params, key)))
}

fn ca_issuer(ca: &CertifiedKey, path: &Path) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let context = format!("loading the CA from {}", path.display());
    let key = KeyPair::from_pem(&ca.key_pem).map_err(cert_error(context.clone()))?;
    Issuer::from_ca_cert_pem(&ca.cert_pem, key).map_err(cert_error(context))
}

fn all_serving_names(names: &[String]) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for n in names
        .iter()
        .map(String::as_str)
        .chain(DEFAULT_SERVING_NAMES)
    {
        if !all.iter().any(|a| a == n) {
            all.push(n.to_string());
        }
    }
    all
}

fn new_serving(
    issuer: &Issuer<'_, KeyPair>,
    names: &[String],
    now: DateTime<Utc>,
) -> Result<CertifiedKey, PkiError> {
    let key = KeyPair::generate().map_err(cert_error("generating the serving key"))?;
    let mut params = CertificateParams::new(all_serving_names(names))
        .map_err(cert_error("naming the serving certificate"))?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, now, 365);
    let cert = params
        .signed_by(&key, issuer)
        .map_err(cert_error("signing the serving certificate"))?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn new_client(
    issuer: &Issuer<'_, KeyPair>,
    user: &str,
    groups: &[&str],
    now: DateTime<Utc>,
) -> Result<CertifiedKey, PkiError> {
    let context = format!("the client certificate of {user:?}");
    let key = KeyPair::generate().map_err(cert_error(context.clone()))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, user);
    for g in groups {
        params.distinguished_name.push(DnType::OrganizationName, *g);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut params, now, 365);
    let cert = params
        .signed_by(&key, issuer)
        .map_err(cert_error(context))?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// True if the certificate names every one of `names` (DNS names or IP addresses).
fn covers(cert_pem: &str, names: &[String], path: &Path) -> Result<bool, PkiError> {
    let invalid = |message: String| PkiError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| invalid(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| invalid(e.to_string()))?;
    let sans = cert
        .subject_alternative_name()
        .map_err(|e| invalid(e.to_string()))?;
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for name in sans.iter().flat_map(|s| s.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(d) => dns.push(d.to_string()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())),
                16 => ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())),
                _ => {}
            },
            _ => {}
        }
    }
    Ok(all_serving_names(names)
        .iter()
        .all(|n| match n.parse::<IpAddr>() {
            Ok(ip) => ips.contains(&ip),
            Err(_) => dns.iter().any(|d| d == n),
        }))
}

/// The files of a PKI directory: `<name>.crt` and `<name>.key`.
struct PkiFiles(PathBuf);

impl PkiFiles {
    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    fn create_dir(&self) -> Result<(), PkiError> {
        std::fs::create_dir_all(&self.0).map_err(|source| PkiError::Io {
            action: "creating",
            path: self.0.clone(),
            source,
        })
    }

    fn read(&self, name: &str) -> Result<Option<CertifiedKey>, PkiError> {
        let read = |path: PathBuf| match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(PkiError::Io {
                action: "reading",
                path,
                source,
            }),
        };
        let cert = read(self.path(&format!("{name}.crt")))?;
        let key = read(self.path(&format!("{name}.key")))?;
        Ok(match (cert, key) {
            (Some(cert_pem), Some(key_pem)) => Some(CertifiedKey { cert_pem, key_pem }),
            _ => None,
        })
    }

    fn write(&self, name: &str, pair: &CertifiedKey) -> Result<(), PkiError> {
        write_file(&self.path(&format!("{name}.crt")), &pair.cert_pem, 0o644)?;
        write_file(&self.path(&format!("{name}.key")), &pair.key_pem, 0o600)
    }
}

/// Writes `contents` to `path` with the given Unix permissions (keys are owner-only).
pub(crate) fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PkiError::Io {
        action: "writing",
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_reused_from_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = vec!["192.0.2.10".to_string()];
        let first = ClusterPki::load_or_generate(dir.path(), &names, Utc::now()).expect("first");
        let again = ClusterPki::load_or_generate(dir.path(), &names, Utc::now()).expect("again");
        assert_eq!(first.ca_pem(), again.ca_pem());
        assert_eq!(first.serving().cert_pem, again.serving().cert_pem);
        assert_eq!(first.admin().cert_pem, again.admin().cert_pem);
    }

    #[test]
    fn a_new_listen_address_reissues_only_the_serving_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = ClusterPki::load_or_generate(dir.path(), &["192.0.2.10".into()], Utc::now())
            .expect("first");
        let moved = ClusterPki::load_or_generate(dir.path(), &["192.0.2.11".into()], Utc::now())
            .expect("moved");
        assert_eq!(first.ca_pem(), moved.ca_pem());
        assert_ne!(first.serving().cert_pem, moved.serving().cert_pem);
        assert_eq!(first.admin().cert_pem, moved.admin().cert_pem);
        let path = dir.path().join("apiserver.crt");
        assert!(
            covers(
                &moved.serving().cert_pem,
                &["192.0.2.11".into(), "localhost".into()],
                &path
            )
            .expect("parse")
        );
    }
}
