//! Client-certificate authentication (upstream's x509 authenticator): the leaf certificate's
//! Common Name is the user and its Organization entries are the groups.
//!
//! The TLS layer has already verified the chain against the cluster CA (see
//! [`super::super::tls`]), so a certificate that reaches this authenticator is trusted; this
//! step only reads who it names.

use kybernetes_core::ApiError;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::authentication::{Authenticator, PeerCertificates, UserInfo};

/// Authenticates requests by the client certificate of their TLS connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientCertificates;

#[async_trait::async_trait]
impl Authenticator for ClientCertificates {
    async fn authenticate(
        &self,
        parts: &http::request::Parts,
    ) -> Result<Option<UserInfo>, ApiError> {
        let Some(leaf) = parts
            .extensions
            .get::<PeerCertificates>()
            .and_then(|p| p.0.first())
        else {
            return Ok(None);
        };
        user_of(leaf).map(Some)
    }
}

/// The user a DER certificate names.
pub fn user_of(der: &[u8]) -> Result<UserInfo, ApiError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| {
        ApiError::new(
            401,
            "Unauthorized",
            format!("unreadable client certificate: {e}"),
        )
    })?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        // Upstream refuses a certificate without a CN: it names nobody.
        return Err(ApiError::new(
            401,
            "Unauthorized",
            "the client certificate has no common name",
        ));
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    Ok(UserInfo {
        name,
        groups,
        ..Default::default()
    })
}
