//! The generic half of every create and update (upstream's `rest.BeforeCreate` and
//! `rest.BeforeUpdate`): the type check, server-owned metadata, status reset, `generation`,
//! and object-meta validation, each calling into the kind's [`Strategy`] for its own rules.

use kybernetes_core::status::StatusCause;
use kybernetes_core::validation;
use kybernetes_core::{ApiError, Clock, ResourceInfo};
use serde_json::{Value, json};

use super::{RequestScope, Strategy};
use crate::object::{self, meta_mut, meta_str};

const GENERATE_NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Checks `kind`/`apiVersion` of a request body against the resource, filling them if absent.
pub fn check_type(r: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    let av = r.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            obj["apiVersion"] = json!(av);
        }
        Some(v) if v == av => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({av})"
            )));
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            obj["kind"] = json!(r.kind);
        }
        Some(k) if k == r.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                r.kind
            )));
        }
    }
    Ok(())
}

/// Prunes the fields the kind's schema does not know, as the request's `fieldValidation` says:
/// `Strict` refuses them with upstream's error, `Ignore` drops them silently, and `Warn` (the
/// default, as upstream) drops them with a warning each. Built-in kinds are checked against
/// their OpenAPI definitions (what upstream's strict decoding into the Go types reports),
/// custom resources against their CRD's schema (upstream's pruning).
pub fn prune_unknown_fields(scope: &RequestScope, obj: &mut Value) -> Result<(), ApiError> {
    let pruned = scope.strategy.prune_unknown_fields(&scope.resource, obj);
    let unknown: Vec<String> = pruned
        .iter()
        .map(|p| format!("unknown field {p:?}"))
        .collect();
    report_strict_errors(scope, &unknown, Some(obj))
}

/// Duplicated fields of a request body (`duplicate field "spec.replicas"`), as the request's
/// `fieldValidation` says (see [`prune_unknown_fields`]); the last value was kept.
/// `body` is the document they were found in (a patch is refused with it).
pub fn report_duplicate_fields(
    scope: &RequestScope,
    paths: &[String],
    body: &Value,
) -> Result<(), ApiError> {
    let dups: Vec<String> = paths
        .iter()
        .map(|p| format!("duplicate field {p:?}"))
        .collect();
    report_strict_errors(scope, &dups, Some(body))
}

/// Turns strict decoding errors into a refusal (`Strict`), warnings (`Warn`, the default) or
/// nothing (`Ignore`). A patch is refused as upstream refuses one: 422 on the `patch` field,
/// with the patched object as the invalid value; a create or update with 400.
fn report_strict_errors(
    scope: &RequestScope,
    errors: &[String],
    patched: Option<&Value>,
) -> Result<(), ApiError> {
    if errors.is_empty() {
        return Ok(());
    }
    match scope.field_validation.as_deref() {
        Some("Ignore") => Ok(()),
        Some("Strict") => {
            let r = &scope.resource;
            let strict = format!("strict decoding error: {}", errors.join(", "));
            if scope.verb == "patch" && !crate::apply::is_apply(&scope.content_type) {
                let value = patched.map(Value::to_string).unwrap_or_default();
                return Err(ApiError::invalid(
                    "",
                    "",
                    "",
                    vec![cause(
                        "patch",
                        format!("Invalid value: {value:?}: {strict}"),
                    )],
                ));
            }
            Err(ApiError::bad_request(format!(
                "{kind} in version {version:?} cannot be handled as a {kind}: {strict}",
                kind = r.kind,
                version = r.version,
            )))
        }
        _ => {
            for w in errors {
                scope.warnings.add(w.clone());
            }
            Ok(())
        }
    }
}

/// Fills server-owned metadata, resets status, applies the kind's defaults and its initial
/// status on create.
pub fn prepare_for_create(
    r: &ResourceInfo,
    strategy: &dyn Strategy,
    obj: &mut Value,
    namespace: Option<&str>,
    clock: &Clock,
) -> Result<(), ApiError> {
    let name = meta_str(obj, "name").unwrap_or("").to_string();
    let generate = meta_str(obj, "generateName").unwrap_or("").to_string();
    if name.is_empty() && generate.is_empty() {
        return Err(ApiError::invalid_field(
            &r.group,
            &r.kind,
            "",
            "metadata.name",
            "Required value: name or generateName is required",
        ));
    }
    if r.namespaced {
        let ns = namespace.ok_or_else(|| {
            ApiError::bad_request(format!(
                "{} is namespaced: the request must name a namespace",
                r.plural
            ))
        })?;
        match meta_str(obj, "namespace") {
            Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta_mut(obj).insert("namespace".into(), json!(ns));
            }
        }
    } else {
        meta_mut(obj).remove("namespace");
    }
    if name.is_empty() {
        meta_mut(obj).insert(
            "name".into(),
            json!(format!("{generate}{}", random_suffix())),
        );
    }
    let meta = meta_mut(obj);
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(clock.now_rfc3339()));
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("selfLink");
    if r.has_generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    if r.status_subresource && strategy.resets_status_on_create() {
        // POST ignores status: the server owns it.
        obj.as_object_mut().map(|m| m.remove("status"));
    }
    strategy.prepare_for_create(obj);
    strategy.default(obj);
    strategy.initial_status(obj, clock);
    Ok(())
}

/// Carries server-owned fields over from `old` on a PUT or PATCH of the main resource, and
/// bumps `generation` when the spec changed.
pub fn prepare_for_update(r: &ResourceInfo, strategy: &dyn Strategy, old: &Value, new: &mut Value) {
    let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
    let meta = meta_mut(new);
    for f in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
        "generation",
    ] {
        match old_meta.get(f) {
            Some(v) => meta.insert(f.into(), v.clone()),
            None => meta.remove(f),
        };
    }
    if r.status_subresource {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                new.as_object_mut().map(|m| m.remove("status"));
            }
        }
    }
    strategy.prepare_for_update(new, old);
    strategy.default(new);
    if r.has_generation && object::spec_part(old) != object::spec_part(new) {
        let g = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(new).insert("generation".into(), json!(g + 1));
    }
}

/// For a write to `/status`: the spec comes from `old`, and so do the server-owned metadata
/// fields; status and ordinary metadata (labels, annotations) come from `new`, as upstream's
/// status strategies allow.
pub fn prepare_for_status_update(old: &Value, new: &Value) -> Value {
    let mut out = old.clone();
    match new.get("status") {
        Some(s) => out["status"] = s.clone(),
        None => {
            out.as_object_mut().map(|m| m.remove("status"));
        }
    }
    let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
    let mut meta = new.get("metadata").cloned().unwrap_or(json!({}));
    if let Some(m) = meta.as_object_mut() {
        for f in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "ownerReferences",
            "finalizers",
        ] {
            match old_meta.get(f) {
                Some(v) => m.insert(f.into(), v.clone()),
                None => m.remove(f),
            };
        }
        if m.get("resourceVersion").is_none() {
            m.remove("resourceVersion");
        }
    }
    out["metadata"] = meta;
    out
}

fn random_suffix() -> String {
    let mut out = String::with_capacity(5);
    let bytes = uuid::Uuid::new_v4();
    for b in bytes.as_bytes().iter().take(5) {
        out.push(GENERATE_NAME_CHARS[(*b as usize) % GENERATE_NAME_CHARS.len()] as char);
    }
    out
}

fn cause(field: &str, message: impl Into<String>) -> StatusCause {
    StatusCause {
        reason: "FieldValueInvalid".into(),
        message: message.into(),
        field: field.into(),
    }
}

/// Validates an object (metadata and the kind's rules; `old` is the stored object on an
/// update). Nothing is stored on failure.
pub fn validate(
    r: &ResourceInfo,
    strategy: &dyn Strategy,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let name = meta_str(obj, "name").unwrap_or("");
    let mut causes = Vec::new();
    for e in strategy.validate_name(name) {
        causes.push(cause(
            "metadata.name",
            format!("Invalid value: {name:?}: {e}"),
        ));
    }
    for e in validation::validate_labels(&object::labels(obj)) {
        causes.push(cause("metadata.labels", e));
    }
    for e in validation::validate_annotations(&object::annotations(obj)) {
        causes.push(cause("metadata.annotations", e));
    }
    if let Some(m) = obj.get("metadata")
        && let Some(f) = m.get("finalizers")
        && !f.as_array().is_some_and(|a| a.iter().all(Value::is_string))
    {
        causes.push(cause(
            "metadata.finalizers",
            "Invalid value: finalizers must be a list of strings",
        ));
    }
    causes.extend(match old {
        None => strategy.validate(obj),
        Some(old) => strategy.validate_update(obj, old),
    });
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&r.group, &r.kind, name, causes))
    }
}
