//! The filters of the handler chain before the registry, as upstream's
//! `WithRequestInfo`, `WithAuthentication` and `WithAuthorization`: each an axum middleware
//! that [`crate::ApiServer`] stacks, in order, where it builds the router.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use kybernetes_core::ApiError;
use tracing::Instrument;

use crate::authentication::UserInfo;
use crate::authorization::{Attributes, Authorizer, AuthorizerUnion, Decision, forbidden};
use crate::request::RequestInfo;
use crate::response::{self, ApiResponse};

/// The 401 of a request that reached authorization with no identity.
pub fn unauthorized() -> ApiError {
    ApiError::new(401, "Unauthorized", "Unauthorized")
}

/// Parses the method, path and query into a [`RequestInfo`] in the request's extensions, and
/// opens the request's span.
pub(crate) async fn with_request_info(mut req: Request, next: Next) -> ApiResponse {
    let info = RequestInfo::parse(req.method(), req.uri());
    let span = tracing::debug_span!(
        "api_request",
        verb = %info.verb,
        path = %info.path,
        resource = %info.resource,
    );
    req.extensions_mut().insert(info);
    next.run(req).instrument(span).await
}

/// Gives a request that no earlier layer authenticated the server's default identity, if it
/// has one (the loopback user for the in-process router, none for the authenticated service).
pub(crate) async fn with_authentication(
    State(default_user): State<Option<Arc<UserInfo>>>,
    mut req: Request,
    next: Next,
) -> ApiResponse {
    if let Some(user) = default_user
        && req.extensions().get::<UserInfo>().is_none()
    {
        req.extensions_mut().insert(UserInfo::clone(&user));
    }
    next.run(req).await
}

/// Asks the authorizer about the request: 401 without an identity, 403 unless allowed.
pub(crate) async fn with_authorization(
    State(authorizer): State<Arc<AuthorizerUnion>>,
    req: Request,
    next: Next,
) -> ApiResponse {
    let Some(user) = req.extensions().get::<UserInfo>() else {
        return response::error(&unauthorized());
    };
    let parsed;
    let info = match req.extensions().get::<RequestInfo>() {
        Some(info) => info,
        None => {
            parsed = RequestInfo::parse(req.method(), req.uri());
            &parsed
        }
    };
    let attributes = Attributes::new(info, user);
    let refused = match authorizer.authorize(&attributes) {
        Decision::Allow => None,
        Decision::Deny(reason) => Some(forbidden(&attributes, &reason)),
        Decision::NoOpinion => Some(forbidden(&attributes, "")),
    };
    match refused {
        None => next.run(req).await,
        Some(e) => {
            tracing::debug!(user = %user.name, verb = %info.verb, path = %info.path, "forbidden");
            response::error(&e)
        }
    }
}
