//! Strategic merge patch: the patch type kubectl sends for `apply` (client-side), `edit`,
//! `set image` and `rollout restart`, with the merge keys and strategies of every built-in
//! kind's fields.

pub mod merge_keys;
mod merge_keys_table;
pub mod schema;
pub mod strategic;

use kybernetes_core::{ApiError, ResourceInfo};

/// The media type of a strategic merge patch.
pub const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";

/// Upstream refuses a strategic merge patch of a custom resource (it has no Go struct to take
/// merge keys from) with 415; so do we.
pub fn check_strategic_supported(r: &ResourceInfo) -> Result<(), ApiError> {
    if merge_keys::is_builtin(&r.group, &r.kind) {
        return Ok(());
    }
    Err(ApiError::new(
        415,
        "UnsupportedMediaType",
        format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (strategic merge patch is not supported for {}, a custom resource)",
            r.plural
        ),
    ))
}
