//! The decode step of a write: the request body as an object of the addressed resource.
//!
//! Everything a body must pass before the kind's strategy sees it happens here, once: JSON
//! syntax (400 with the decoder's message), an object at the top level, and `kind` and
//! `apiVersion` matching the resource (400; filled in when absent), and duplicated fields
//! reported as `fieldValidation` ([`RequestScope::field_validation`]) says. Unknown fields are
//! pruned on the object about to be stored, so that patches get the same check.

use bytes::Bytes;
use kybernetes_core::ApiError;
use serde_json::Value;

use crate::registry::{RequestScope, before};

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
