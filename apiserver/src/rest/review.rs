//! Reviews: create-only resources whose answer is computed from the request and never
//! stored, as upstream's `SelfSubjectReview` (`kubectl auth whoami`) and
//! `SelfSubjectAccessReview` (`kubectl auth can-i`).

use std::sync::Arc;

use http::StatusCode;
use kybernetes_core::ApiError;
use serde_json::{Value, json};

use crate::Inner;
use crate::authorization::{Attributes, Authorizer, Decision};
use crate::registry::RequestScope;
use crate::response::{self, ApiResponse};

/// Answers a create of a review resource.
pub fn create(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    obj: Value,
) -> Result<ApiResponse, ApiError> {
    let r = &scope.resource;
    let mut out = obj;
    out["apiVersion"] = json!(format!("{}/{}", r.group, r.version));
    out["kind"] = json!(r.kind);
    if out.get("metadata").is_none_or(|m| !m.is_object()) {
        out["metadata"] = json!({});
    }
    out["metadata"]["creationTimestamp"] = Value::Null;
    match r.kind.as_str() {
        "SelfSubjectReview" => {
            let user = &scope.user;
            let mut info = json!({ "username": user.name, "groups": user.groups });
            if !user.uid.is_empty() {
                info["uid"] = json!(user.uid);
            }
            if !user.extra.is_empty() {
                info["extra"] = json!(user.extra);
            }
            out["status"] = json!({ "userInfo": info });
        }
        "SelfSubjectAccessReview" => {
            out["status"] = access_review(inner, scope, &out)?;
        }
        other => {
            return Err(ApiError::internal(format!(
                "no review is served for kind {other}"
            )));
        }
    }
    Ok(response::json(StatusCode::CREATED, &out))
}

/// Asks the server's authorizer about the attributes in `spec`, for the requesting user.
fn access_review(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    review: &Value,
) -> Result<Value, ApiError> {
    let spec = review.get("spec").cloned().unwrap_or(Value::Null);
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (resource, non_resource) = (
        spec.get("resourceAttributes"),
        spec.get("nonResourceAttributes"),
    );
    let (verb, group, version, res, sub, ns, name, path, resource_request) = match (
        resource,
        non_resource,
    ) {
        (Some(a), None) => (
            s(a, "verb"),
            s(a, "group"),
            s(a, "version"),
            s(a, "resource"),
            s(a, "subresource"),
            s(a, "namespace"),
            s(a, "name"),
            String::new(),
            true,
        ),
        (None, Some(a)) => (
            s(a, "verb"),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            s(a, "path"),
            false,
        ),
        _ => {
            return Err(ApiError::invalid_field(
                "authorization.k8s.io",
                "SelfSubjectAccessReview",
                "",
                "spec.resourceAttributes",
                "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ));
        }
    };
    let attributes = Attributes {
        user: &scope.user,
        verb: &verb,
        resource_request,
        group: &group,
        version: &version,
        resource: &res,
        subresource: &sub,
        namespace: &ns,
        name: &name,
        path: &path,
    };
    Ok(match inner.authorizer.authorize(&attributes) {
        Decision::Allow => json!({ "allowed": true }),
        Decision::Deny(reason) => json!({ "allowed": false, "denied": true, "reason": reason }),
        Decision::NoOpinion => json!({ "allowed": false }),
    })
}
