//! The decode step of a write: the request body as an object of the addressed resource.
//!
//! Everything a body must pass before the kind's strategy sees it happens here, once: JSON
//! syntax (400 with the decoder's message), an object at the top level, and `kind` and
//! `apiVersion` matching the resource (400; filled in when absent). Field validation
//! (`fieldValidation=Strict|Warn`, from [`RequestScope::field_validation`]) and the pruning
//! of unknown fields belong in [`decode_object`], after the type check.

use bytes::Bytes;
use kybernetes_core::ApiError;
use serde_json::Value;

use crate::registry::{RequestScope, before};

/// Decodes the body of a create or update of the scope's resource.
pub fn decode_object(scope: &RequestScope, body: &Bytes) -> Result<Value, ApiError> {
    let mut obj = parse_json(body)?;
    before::check_type(&scope.resource, &mut obj)?;
    Ok(obj)
}

/// Parses a JSON request body into an object (also for bodies of other kinds: `Binding`,
/// `Eviction`, `Scale`).
pub fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(v)
}
