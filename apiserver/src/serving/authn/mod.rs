//! Authentication of HTTPS requests (upstream's `WithAuthentication` with its union of
//! request authenticators): client certificates, then bearer tokens (service account tokens,
//! then a token file), then anonymous.
//!
//! The first [`Authenticator`] that recognises the request names its user; credentials that
//! are presented but wrong answer 401 at once. A request with no credentials is anonymous
//! (`system:anonymous`, group `system:unauthenticated`) if anonymous access is enabled, and
//! 401 otherwise, as upstream with `--anonymous-auth=false`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;

use crate::authentication::{Authenticator, GROUP_AUTHENTICATED, UserInfo};
use crate::filters::unauthorized;
use crate::response::{self, ApiResponse};

pub mod token_file;
pub mod x509;

pub use token_file::TokenFile;
pub use x509::ClientCertificates;

/// The authenticators of the HTTPS server, asked in order.
#[derive(Clone, Default)]
pub struct Authentication {
    authenticators: Vec<Arc<dyn Authenticator>>,
    anonymous: bool,
}

impl std::fmt::Debug for Authentication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authentication")
            .field("authenticators", &self.authenticators.len())
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

impl Authentication {
    /// No authenticators and no anonymous access: every request gets 401.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an authenticator.
    pub fn with(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticators.push(Arc::new(authenticator));
        self
    }

    /// Whether requests without credentials pass as `system:anonymous`.
    pub fn anonymous(mut self, enabled: bool) -> Self {
        self.anonymous = enabled;
        self
    }

    /// Who makes the request: `Ok(None)` when it carries no credentials and anonymous access
    /// is off; `Err` when its credentials are wrong.
    pub async fn authenticate(
        &self,
        parts: &http::request::Parts,
    ) -> Result<Option<UserInfo>, kybernetes_core::ApiError> {
        for a in &self.authenticators {
            if let Some(mut user) = a.authenticate(parts).await? {
                // Every authenticated user is in system:authenticated, as upstream adds it.
                if !user.in_group(GROUP_AUTHENTICATED) {
                    user.groups.push(GROUP_AUTHENTICATED.into());
                }
                return Ok(Some(user));
            }
        }
        Ok(self.anonymous.then(UserInfo::anonymous))
    }
}

/// The authentication step of the HTTPS handler chain: puts the request's [`UserInfo`] in its
/// extensions and removes the `Authorization` header, as upstream does, so that credentials
/// never travel further (to a proxied pod, say).
pub async fn with_authentication(
    State(authn): State<Arc<Authentication>>,
    req: Request,
    next: Next,
) -> ApiResponse {
    let (mut parts, body) = req.into_parts();
    let user = match authn.authenticate(&parts).await {
        Ok(Some(user)) => user,
        Ok(None) => return response::error(&unauthorized()),
        Err(e) => {
            tracing::debug!(error = %e.message, path = %parts.uri.path(), "authentication failed");
            return response::error(&e);
        }
    };
    parts.headers.remove(http::header::AUTHORIZATION);
    parts.extensions.insert(user);
    next.run(Request::from_parts(parts, body)).await
}
