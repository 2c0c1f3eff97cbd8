//! The decode step of a write: the request body as an object of the addressed resource.
//!
//! A Kubernetes protobuf body (kubectl's default for built-in kinds) is first transcoded to
//! JSON ([`json_body`], by [`crate::protobuf`]), so every later step reads JSON.
//!
//! Everything a body must pass before the kind's strategy sees it happens here, once: JSON
//! syntax (400 with the decoder's message), an object at the top level, and `kind` and
//! `apiVersion` matching the resource (400; filled in when absent), and duplicated fields
//! reported as `fieldValidation` ([`RequestScope::field_validation`]) says. Unknown fields are
//! pruned on the object about to be stored, so that patches get the same check.

use bytes::Bytes;
use kybernetes_core::ApiError;
use serde_json::Value;

use crate::protobuf;
use crate::registry::{RequestScope, before};

/// The request body as JSON: a protobuf body transcoded, any other returned as it is. Patch
/// bodies are never protobuf (their types are JSON patch formats), so they are left for the
/// patch step to judge by their `Content-Type` (415 for protobuf, as upstream).
pub fn json_body(scope: &RequestScope, body: Bytes) -> Result<Bytes, ApiError> {
    if body.is_empty() || scope.verb == "patch" || !protobuf::is_protobuf(&scope.content_type) {
        return Ok(body);
    }
    let object = protobuf::to_json(&body).map_err(|e| protobuf_error(scope, e))?;
    let json = serde_json::to_vec(&object)
        .map_err(|e| ApiError::internal(format!("the transcoded protobuf body: {e}")))?;
    Ok(Bytes::from(json))
}

/// Upstream's answer to a body that does not decode (`transformDecodeError`): 400, naming
/// the kind the request needed.
fn protobuf_error(scope: &RequestScope, e: protobuf::Error) -> ApiError {
    use protobuf::Error as E;
    let target = body_kind(scope);
    match &e {
        E::Schema(_) => ApiError::internal(e.to_string()),
        E::NotRegistered { kind, api_version }
        | E::Malformed {
            kind, api_version, ..
        } => {
            // Upstream names the version without its group.
            let version = api_version.rsplit('/').next().unwrap_or(api_version);
            ApiError::bad_request(format!(
                "{kind} in version {version:?} cannot be handled as a {target}: {e}"
            ))
        }
        _ => ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {target}): {e}"
        )),
    }
}

/// The kind a request's body must be: the resource's, or a subresource's own.
fn body_kind(scope: &RequestScope) -> &str {
    match scope.subresource.as_deref() {
        Some("binding") => "Binding",
        Some("eviction") => "Eviction",
        Some("scale") => "Scale",
        Some("token") => "TokenRequest",
        _ => &scope.resource.kind,
    }
}

/// Decodes the body of a create or update of the scope's resource. Duplicated fields are
/// reported as `fieldValidation` says; unknown fields are pruned later, on the object about to
/// be stored ([`before::prune_unknown_fields`]).
pub fn decode_object(scope: &RequestScope, body: &Bytes) -> Result<Value, ApiError> {
    let (mut obj, dups) = super::duplicates::parse(body).map_err(not_json)?;
    if !obj.is_object() {
        return Err(not_an_object());
    }
    before::report_duplicate_fields(scope, &dups, &obj)?;
    before::check_type(&scope.resource, &mut obj)?;
    Ok(obj)
}

fn not_json(e: serde_json::Error) -> ApiError {
    ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
}

fn not_an_object() -> ApiError {
    ApiError::bad_request("the request body must be a JSON object")
}

/// Parses a JSON request body into an object (also for bodies of other kinds: `Binding`,
/// `Eviction`, `Scale`).
pub fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(not_json)?;
    if !v.is_object() {
        return Err(not_an_object());
    }
    Ok(v)
}
