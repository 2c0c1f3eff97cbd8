//! Signed JSON Web Tokens (RFC 7519) in the compact form, ES256 (ECDSA P-256 with SHA-256,
//! RFC 7518 §3.4): what upstream's `pkg/serviceaccount` issues with an ECDSA key.
//!
//! ring signs and verifies; it cannot make RSA keys, and upstream accepts ECDSA
//! service-account keys as well, so the key is P-256. It is kept as a PKCS#8 PEM file
//! (`sa.key`, as kubeadm names it) beside the cluster CA.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

/// Why a key could not be made or loaded, or a token not signed or read.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The key file could not be read or written.
    #[error("{action} the service account key {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key is not a P-256 PKCS#8 key, or ring failed.
    #[error("service account key: {0}")]
    Key(String),
    /// The token is not a well-formed JWT of ours.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The signature does not verify.
    #[error("invalid token signature")]
    BadSignature,
}

/// The DER prefix of a P-256 `SubjectPublicKeyInfo` before the 65-byte point
/// (id-ecPublicKey, prime256v1, BIT STRING).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The service-account signing key.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    kid: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: show only its id.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish()
    }
}

impl SigningKey {
    /// A fresh key, held in memory only.
    pub fn generate() -> Result<Self, TokenError> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|e| TokenError::Key(format!("generating: {e}")))?;
        Self::from_pkcs8(doc.as_ref())
    }

    /// A key from its PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, TokenError> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| TokenError::Key(format!("not a P-256 PKCS#8 key: {e}")))?;
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(pair.public_key().as_ref());
        // Upstream's key id: the unpadded URL-safe base64 of the SHA-256 of the DER public key.
        let kid = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &spki));
        Ok(SigningKey {
            pair,
            pkcs8: der.to_vec(),
            kid,
            rng,
        })
    }

    /// A key from a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(pem: &str) -> Result<Self, TokenError> {
        match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
            Ok(PrivateKeyDer::Pkcs8(der)) => Self::from_pkcs8(der.secret_pkcs8_der()),
            Ok(_) => Err(TokenError::Key("not a PKCS#8 key".into())),
            Err(e) => Err(TokenError::Key(format!("not PEM: {e}"))),
        }
    }

    /// The key as PKCS#8 PEM.
    pub fn to_pem(&self) -> String {
        let b64 = STANDARD.encode(&self.pkcs8);
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(chunk));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        pem
    }

    /// Loads the key kept at `path`, or generates one and writes it there (owner-only) on
    /// the first start.
    pub fn load_or_generate(path: &Path) -> Result<Self, TokenError> {
        let io = |action, source| TokenError::Io {
            action,
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(pem) => return Self::from_pem(&pem),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("reading", e)),
        }
        let key = Self::generate()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
        }
        crate::serving::certificates::write_file(path, &key.to_pem(), 0o600)
            .map_err(|e| TokenError::Key(e.to_string()))?;
        tracing::info!(path = %path.display(), "generated the service account signing key");
        Ok(key)
    }

    /// The key id (`kid` of the tokens' header).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` into a compact JWT.
    pub fn sign(&self, claims: &Value) -> Result<String, TokenError> {
        let header = json!({ "alg": "ES256", "kid": self.kid });
        let mut token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&self.rng, token.as_bytes())
            .map_err(|e| TokenError::Key(format!("signing: {e}")))?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
        Ok(token)
    }

    /// The claims of `token` if it is a JWT signed by this key; its times and audience are
    /// the caller's to check.
    pub fn verify(&self, token: &str) -> Result<Value, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("not three dot-separated parts"));
        };
        let decode = |part: &str, what| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| TokenError::Malformed(what))
        };
        let header: Value = serde_json::from_slice(&decode(header, "header is not base64url")?)
            .map_err(|_| TokenError::Malformed("header is not JSON"))?;
        if header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return Err(TokenError::Malformed("not ES256"));
        }
        let signed = &token[..token.len() - signature.len() - 1];
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.pair.public_key());
        public
            .verify(
                signed.as_bytes(),
                &decode(signature, "signature is not base64url")?,
            )
            .map_err(|_| TokenError::BadSignature)?;
        serde_json::from_slice(&decode(claims, "claims are not base64url")?)
            .map_err(|_| TokenError::Malformed("claims are not JSON"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_token_verifies_and_a_changed_one_does_not() {
        let key = SigningKey::generate().expect("key");
        let token = key
            .sign(&json!({ "sub": "system:serviceaccount:default:default" }))
            .expect("sign");
        assert_eq!(token.split('.').count(), 3);
        let claims = key.verify(&token).expect("verifies");
        assert_eq!(claims["sub"], "system:serviceaccount:default:default");
        let other = SigningKey::generate().expect("key");
        assert!(matches!(
            other.verify(&token),
            Err(TokenError::BadSignature)
        ));
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(json!({ "sub": "system:admin" }).to_string());
        parts[1] = &forged;
        assert!(matches!(
            key.verify(&parts.join(".")),
            Err(TokenError::BadSignature)
        ));
        assert!(matches!(key.verify("abc"), Err(TokenError::Malformed(_))));
    }

    #[test]
    fn the_key_survives_its_pem_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pki").join("sa.key");
        let first = SigningKey::load_or_generate(&path).expect("first");
        let again = SigningKey::load_or_generate(&path).expect("again");
        assert_eq!(first.kid(), again.kid());
        let token = first.sign(&json!({})).expect("sign");
        assert!(again.verify(&token).is_ok());
    }
}
