//! Service account tokens (upstream's `pkg/serviceaccount` and the `serviceaccounts/token`
//! REST): `TokenRequest` issues a signed JWT naming a service account (and optionally a pod
//! or secret it is bound to), and the HTTPS server's bearer-token authenticator accepts it as
//! `system:serviceaccount:NS:NAME` for as long as it has not expired and the service account
//! (and bound object) with the same UID still exists.

pub mod jwt;
pub mod token_request;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kybernetes_core::ApiError;
use serde_json::Value;

use crate::authentication::{Authenticator, UserInfo};
use crate::object::meta_str;
use crate::{ApiServer, Inner};
pub use jwt::{SigningKey, TokenError};

/// The group of every service account.
pub const GROUP_SERVICE_ACCOUNTS: &str = "system:serviceaccounts";
/// The user name prefix of service accounts.
pub const USER_PREFIX: &str = "system:serviceaccount:";
/// The claim upstream keeps its private claims in.
const PRIVATE_CLAIM: &str = "kubernetes.io";

/// The issuer and audience of the API server's tokens, as kubeadm configures them
/// (`https://kubernetes.default.svc.<cluster domain>`).
pub fn issuer(cluster_domain: &str) -> String {
    format!("https://kubernetes.default.svc.{cluster_domain}")
}

/// What issues and checks the tokens: the key, the issuer, and the audiences the API server
/// itself accepts.
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    key: Arc<SigningKey>,
    issuer: String,
}

impl TokenIssuer {
    /// Tokens signed with `key` and issued as `issuer` (which is also the API audience).
    pub fn new(key: Arc<SigningKey>, issuer: String) -> Self {
        TokenIssuer { key, issuer }
    }

    /// The issuer (`iss`), and the API server's audience.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs claims.
    pub fn sign(&self, claims: &Value) -> Result<String, TokenError> {
        self.key.sign(claims)
    }
}

/// The claims of a verified token of ours that are still to check against the store.
struct Claims {
    namespace: String,
    name: String,
    uid: String,
    pod: Option<(String, String)>,
    secret: Option<(String, String)>,
    jti: Option<String>,
}

fn claim_str<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn unauthorized(why: &str) -> ApiError {
    tracing::debug!(reason = why, "service account token refused");
    crate::filters::unauthorized()
}

/// Checks a verified token's issuer, times and audience, and reads its private claims.
fn check_claims(issuer: &str, claims: &Value, now: DateTime<Utc>) -> Result<Claims, ApiError> {
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(unauthorized("wrong issuer"));
    }
    let now = now.timestamp();
    let time = |k: &str| claims.get(k).and_then(Value::as_i64);
    match time("exp") {
        Some(exp) if now < exp => {}
        _ => return Err(unauthorized("token has expired")),
    }
    if time("nbf").is_some_and(|nbf| now < nbf) {
        return Err(unauthorized("token is not valid yet"));
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&issuer) {
        return Err(unauthorized(
            "token audiences do not include the API server",
        ));
    }
    let private = claims
        .get(PRIVATE_CLAIM)
        .ok_or_else(|| unauthorized("no kubernetes.io claim"))?;
    let field = |p: &str| claim_str(private, p).map(str::to_string);
    let bound = |kind: &str| {
        Some((
            field(&format!("/{kind}/name"))?,
            field(&format!("/{kind}/uid"))?,
        ))
    };
    Ok(Claims {
        namespace: field("/namespace").ok_or_else(|| unauthorized("no namespace claim"))?,
        name: field("/serviceaccount/name")
            .ok_or_else(|| unauthorized("no service account claim"))?,
        uid: field("/serviceaccount/uid").ok_or_else(|| unauthorized("no service account uid"))?,
        pod: bound("pod"),
        secret: bound("secret"),
        jti: claims
            .get("jti")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// Whether `plural/name` in `namespace` exists with `uid` (upstream's validator reads the
/// service account, and the bound pod or secret, and compares UIDs).
async fn exists_with_uid(
    inner: &Arc<Inner>,
    plural: &str,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Result<bool, ApiError> {
    let r = inner
        .registry
        .lookup("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))?;
    match crate::rest::read::get(inner, &r, Some(namespace), name).await {
        Ok(obj) => Ok(meta_str(&obj, "uid") == Some(uid)),
        Err(e) if e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// The bearer-token authenticator of service account tokens.
#[derive(Clone)]
pub struct ServiceAccountAuthenticator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ServiceAccountAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountAuthenticator")
            .field("issuer", &self.inner.tokens.issuer())
            .finish()
    }
}

impl ApiServer {
    /// The authenticator that accepts the service account tokens this server issues.
    pub fn service_account_authenticator(&self) -> ServiceAccountAuthenticator {
        ServiceAccountAuthenticator {
            inner: self.inner.clone(),
        }
    }
}

#[async_trait]
impl Authenticator for ServiceAccountAuthenticator {
    async fn authenticate(
        &self,
        parts: &http::request::Parts,
    ) -> Result<Option<UserInfo>, ApiError> {
        let Some(token) = crate::authentication::bearer_token(parts) else {
            return Ok(None);
        };
        let claims = match self.inner.tokens.key.verify(token) {
            Ok(claims) => claims,
            // Not a JWT at all: another token authenticator's (a token file's) business.
            Err(TokenError::Malformed(_)) => return Ok(None),
            Err(e) => return Err(unauthorized(&e.to_string())),
        };
        let c = check_claims(self.inner.tokens.issuer(), &claims, self.inner.clock.now())?;
        let inner = &self.inner;
        if !exists_with_uid(inner, "serviceaccounts", &c.namespace, &c.name, &c.uid).await? {
            return Err(unauthorized("the service account no longer exists"));
        }
        let mut extra = BTreeMap::new();
        if let Some((pod, uid)) = &c.pod {
            if !exists_with_uid(inner, "pods", &c.namespace, pod, uid).await? {
                return Err(unauthorized("the bound pod no longer exists"));
            }
            extra.insert(
                "authentication.kubernetes.io/pod-name".to_string(),
                vec![pod.clone()],
            );
            extra.insert(
                "authentication.kubernetes.io/pod-uid".to_string(),
                vec![uid.clone()],
            );
        }
        if let Some((secret, uid)) = &c.secret
            && !exists_with_uid(inner, "secrets", &c.namespace, secret, uid).await?
        {
            return Err(unauthorized("the bound secret no longer exists"));
        }
        if let Some(jti) = &c.jti {
            extra.insert(
                "authentication.kubernetes.io/credential-id".to_string(),
                vec![format!("JTI={jti}")],
            );
        }
        Ok(Some(UserInfo {
            name: format!("{USER_PREFIX}{}:{}", c.namespace, c.name),
            uid: c.uid.clone(),
            groups: vec![
                GROUP_SERVICE_ACCOUNTS.to_string(),
                format!("{GROUP_SERVICE_ACCOUNTS}:{}", c.namespace),
            ],
            extra,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(exp: i64, aud: &str) -> Value {
        json!({
            "iss": "https://kubernetes.default.svc.cluster.local",
            "aud": [aud],
            "exp": exp, "iat": 0, "nbf": 0,
            "sub": "system:serviceaccount:default:default",
            "kubernetes.io": { "namespace": "default", "serviceaccount": { "name": "default", "uid": "u1" } },
        })
    }

    #[test]
    fn expired_tokens_and_other_audiences_are_refused() {
        let iss = issuer("cluster.local");
        let now = DateTime::from_timestamp(1_000, 0).unwrap_or_default();
        let ok = check_claims(&iss, &claims(2_000, &iss), now).expect("valid");
        assert_eq!(
            (ok.namespace.as_str(), ok.name.as_str(), ok.uid.as_str()),
            ("default", "default", "u1")
        );
        assert_eq!(
            check_claims(&iss, &claims(1_000, &iss), now)
                .err()
                .map(|e| e.code),
            Some(401)
        );
        assert!(check_claims(&iss, &claims(2_000, "vault"), now).is_err());
        assert!(check_claims("https://elsewhere", &claims(2_000, &iss), now).is_err());
    }
}
