//! Who is making a request: the identity that authentication attaches to every request, and the
//! trait that authenticators implement (upstream's `authenticator.Request`).
//!
//! Every request that reaches the registry carries a [`UserInfo`] in its `http::Extensions`.
//! The in-process client gets the privileged loopback identity ([`UserInfo::loopback`]), as
//! upstream's loopback client does; the HTTPS server runs a chain of [`Authenticator`]s (client
//! certificates, bearer tokens) and answers 401 when none recognises the request, unless
//! anonymous access is enabled.

use std::collections::BTreeMap;

use kybernetes_core::ApiError;

/// The group every authenticated user belongs to.
pub const GROUP_AUTHENTICATED: &str = "system:authenticated";
/// The group of anonymous requests.
pub const GROUP_UNAUTHENTICATED: &str = "system:unauthenticated";
/// The superuser group: members may do anything, whatever the authorizer says.
pub const GROUP_MASTERS: &str = "system:masters";
/// The user name of the API server's own loopback client.
pub const USER_LOOPBACK: &str = "system:apiserver";
/// The user name of anonymous requests.
pub const USER_ANONYMOUS: &str = "system:anonymous";

/// An authenticated identity (upstream's `user.Info`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// The user name (a certificate's CN, a token file's user column).
    pub name: String,
    /// A unique id for the user, if the authenticator knows one.
    pub uid: String,
    /// The groups (a certificate's O entries, a token file's group column).
    pub groups: Vec<String>,
    /// Anything else the authenticator wants to pass on to authorization.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The privileged identity of in-process clients: the scheduler, the controllers, the node
    /// agents and user code that calls `Cluster::client()`.
    pub fn loopback() -> Self {
        UserInfo {
            name: USER_LOOPBACK.into(),
            uid: String::new(),
            groups: vec![GROUP_MASTERS.into(), GROUP_AUTHENTICATED.into()],
            extra: BTreeMap::new(),
        }
    }

    /// The identity of a request that presented no credentials, when anonymous access is on.
    pub fn anonymous() -> Self {
        UserInfo {
            name: USER_ANONYMOUS.into(),
            uid: String::new(),
            groups: vec![GROUP_UNAUTHENTICATED.into()],
            extra: BTreeMap::new(),
        }
    }

    /// True if the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// The DER-encoded client certificate chain of a TLS connection, leaf first. The HTTPS server
/// puts it in each request's extensions so that the client-certificate authenticator can read
/// it; in-process requests have none.
#[derive(Clone, Debug, Default)]
pub struct PeerCertificates(pub Vec<Vec<u8>>);

/// Recognises the credentials of a request. Asynchronous, since some look up what the
/// credentials name (a service account token's account must still exist).
///
/// `Ok(None)` means "not mine" (the next authenticator is asked); `Err` means the request
/// carried credentials of this kind and they are wrong (401 at once, as upstream).
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Authenticates the request whose head is `parts` (its extensions may hold
    /// [`PeerCertificates`]).
    async fn authenticate(
        &self,
        parts: &http::request::Parts,
    ) -> Result<Option<UserInfo>, ApiError>;
}

/// The request's bearer token (`Authorization: Bearer TOKEN`), if it has one.
pub fn bearer_token(parts: &http::request::Parts) -> Option<&str> {
    parts
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}
