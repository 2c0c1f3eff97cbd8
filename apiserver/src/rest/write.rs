//! create, update (PUT) and patch, and the optimistic-concurrency update loop they share
//! (upstream's `GuaranteedUpdate`).

use std::sync::Arc;

use kybernetes_core::{ApiError, ResourceInfo};
use serde_json::{Value, json};

use super::store_err;
use crate::apply::FieldManager;
use crate::object::{self, meta_str};
use crate::request::parse_rv;
use crate::{Inner, crd, defaults, strategy};

/// How many times an unconditional update retries after losing a race.
const MAX_RETRIES: usize = 100;

/// Refuses to create content in a namespace that is missing or being deleted (upstream's
/// NamespaceLifecycle admission).
async fn check_namespace(
    inner: &Arc<Inner>,
    r: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<(), ApiError> {
    let (true, Some(ns)) = (r.namespaced, ns) else {
        return Ok(());
    };
    let key = format!("/registry/core/namespaces/{ns}");
    let kv = inner
        .store
        .get(&key)
        .await
        .map_err(|e| store_err(r, ns, e))?;
    let Some(kv) = kv else {
        return Err(ApiError::not_found("", "namespaces", ns));
    };
    let nsobj = object::decode(&kv)?;
    if meta_str(&nsobj, "deletionTimestamp").is_some() && !matches!(r.plural.as_str(), "events") {
        return Err(ApiError::forbidden(format!(
            "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            r.plural
        )));
    }
    Ok(())
}

/// True for core/v1 services, whose ClusterIPs and NodePorts the server allocates.
pub fn is_service(r: &ResourceInfo) -> bool {
    r.group.is_empty() && r.plural == "services"
}

/// POST: creates an object.
pub async fn create(
    inner: &Arc<Inner>,
    r: &ResourceInfo,
    ns: Option<&str>,
    mut obj: Value,
    dry_run: bool,
    fm: &FieldManager,
) -> Result<Value, ApiError> {
    strategy::check_type(r, &mut obj)?;
    strategy::prepare_for_create(r, &mut obj, ns, &inner.clock)?;
    defaults::initial_status(r, &mut obj);
    let name = meta_str(&obj, "name").unwrap_or("").to_string();
    strategy::validate(r, &obj)?;
    if crd::is_crd(r) {
        crd::validate(&obj)?;
        obj["status"] = crd::accepted_status(&obj, &inner.clock.now_rfc3339());
    }
    check_namespace(inner, r, ns, &name).await?;
    fm.record_create(r, &mut obj, &inner.clock.now_rfc3339());
    if dry_run {
        return Ok(obj);
    }
    let service = is_service(r);
    if service {
        inner.services.on_create(&mut obj)?;
    }
    let key = r.key(ns, &name);
    let kv = match inner.store.create(&key, object::encode(&obj)?).await {
        Ok(kv) => kv,
        Err(e) => {
            if service {
                inner.services.on_delete(&obj);
            }
            return Err(store_err(r, &name, e));
        }
    };
    object::meta_mut(&mut obj).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    if crd::is_crd(r) {
        crd::register(inner, &obj);
    }
    Ok(obj)
}

/// A body naming a different UID than the stored object's is a failed precondition (409), as
/// upstream: it protects against writing onto an object recreated under the same name.
fn check_uid(r: &ResourceInfo, body: &Value, old: &Value, name: &str) -> Result<(), ApiError> {
    match (meta_str(body, "uid"), meta_str(old, "uid")) {
        (Some(want), Some(have)) if !want.is_empty() && want != have => Err(ApiError::conflict(
            &r.group,
            &r.plural,
            name,
            &format!(
                "Precondition failed: UID in precondition: {want}, UID in object meta: {have}"
            ),
        )),
        _ => Ok(()),
    }
}

fn check_name(r: &ResourceInfo, obj: &Value, name: &str) -> Result<(), ApiError> {
    match meta_str(obj, "name") {
        Some(n) if n == name => Ok(()),
        None | Some("") => Ok(()),
        Some(n) => Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name}) for {}",
            r.plural
        ))),
    }
}

/// PUT of the main resource.
pub async fn update(
    inner: &Arc<Inner>,
    r: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    mut obj: Value,
    dry_run: bool,
    fm: &FieldManager,
) -> Result<Value, ApiError> {
    strategy::check_type(r, &mut obj)?;
    check_name(r, &obj, name)?;
    object::meta_mut(&mut obj).insert("name".into(), json!(name));
    let precondition = parse_rv(meta_str(&obj, "resourceVersion"))?;
    let now = inner.clock.now_rfc3339();
    guaranteed_update(inner, r, ns, name, precondition, dry_run, |old| {
        check_uid(r, &obj, old, name)?;
        let mut new = obj.clone();
        strategy::prepare_for_update(r, old, &mut new);
        fm.record_update(r, old, &mut new, "", &now);
        Ok(new)
    })
    .await
}

/// PUT of the `status` subresource.
pub async fn update_status(
    inner: &Arc<Inner>,
    r: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    mut obj: Value,
    dry_run: bool,
    fm: &FieldManager,
) -> Result<Value, ApiError> {
    strategy::check_type(r, &mut obj)?;
    check_name(r, &obj, name)?;
    let precondition = parse_rv(meta_str(&obj, "resourceVersion"))?;
    let now = inner.clock.now_rfc3339();
    guaranteed_update(inner, r, ns, name, precondition, dry_run, |old| {
        check_uid(r, &obj, old, name)?;
        let mut new = strategy::prepare_for_status_update(old, &obj);
        fm.record_update(r, old, &mut new, "status", &now);
        Ok(new)
    })
    .await
}

/// A PATCH body, parsed once by its content type and applied to each attempt of an update.
#[derive(Debug)]
pub enum PatchDocument {
    /// `application/json-patch+json`: the operations, kept as JSON until applied (see
    /// [`null_tests_of_missing_paths_pass`]).
    Json(Value),
    /// `application/merge-patch+json`.
    Merge(Value),
    /// `application/strategic-merge-patch+json` (see [`crate::patch::strategic`]).
    Strategic(Value),
}

impl PatchDocument {
    /// Parses a body; a body that is not JSON is a 400, an unsupported type a 415.
    pub fn parse(content_type: &str, body: &[u8]) -> Result<Self, ApiError> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/json-patch+json" => {
                let ops: Value = serde_json::from_slice(body).map_err(|e| {
                    ApiError::bad_request(format!("the JSON patch is not valid JSON: {e}"))
                })?;
                // Reject malformed operations now, not on every attempt.
                serde_json::from_value::<json_patch::Patch>(ops.clone()).map_err(|e| {
                    ApiError::bad_request(format!("the JSON patch is not valid: {e}"))
                })?;
                Ok(PatchDocument::Json(ops))
            }
            "application/merge-patch+json" => {
                let patch: Value = serde_json::from_slice(body).map_err(|e| {
                    ApiError::bad_request(format!("the merge patch is not valid JSON: {e}"))
                })?;
                if !patch.is_object() {
                    return Err(ApiError::bad_request(
                        "the merge patch must be a JSON object",
                    ));
                }
                Ok(PatchDocument::Merge(patch))
            }
            crate::patch::STRATEGIC_MERGE_PATCH => {
                let patch: Value = serde_json::from_slice(body).map_err(|e| {
                    ApiError::bad_request(format!(
                        "the strategic merge patch is not valid JSON: {e}"
                    ))
                })?;
                Ok(PatchDocument::Strategic(patch))
            }
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }

    /// Applies the patch to a copy of `target`.
    pub fn apply(&self, target: &Value) -> Result<Value, ApiError> {
        let mut doc = target.clone();
        match self {
            PatchDocument::Json(ops) => {
                let ops = null_tests_of_missing_paths_pass(ops.clone(), &doc);
                let patch: json_patch::Patch = serde_json::from_value(ops).map_err(|e| {
                    ApiError::bad_request(format!("the JSON patch is not valid: {e}"))
                })?;
                json_patch::patch(&mut doc, &patch).map_err(|e| {
                    ApiError::new(
                        422,
                        "Invalid",
                        format!("the JSON patch could not be applied: {e}"),
                    )
                })?;
            }
            PatchDocument::Merge(patch) => json_patch::merge(&mut doc, patch),
            PatchDocument::Strategic(patch) => {
                doc = crate::patch::strategic::apply(
                    &doc,
                    patch,
                    crate::patch::schema::Schema::of_object(&doc),
                )?;
            }
        }
        Ok(doc)
    }
}

/// Upstream's JSON patch library treats a missing path as `null` in a `test` operation;
/// clients rely on it (kube-runtime's finalizer helper tests `/metadata/finalizers` for null
/// before adding the first finalizer). Such tests are dropped when the path is absent.
fn null_tests_of_missing_paths_pass(ops: Value, doc: &Value) -> Value {
    let Value::Array(ops) = ops else { return ops };
    Value::Array(
        ops.into_iter()
            .filter(|op| {
                let is_null_test = op.get("op").and_then(Value::as_str) == Some("test")
                    && op.get("value").is_some_and(Value::is_null);
                let path = op.get("path").and_then(Value::as_str).unwrap_or("");
                !(is_null_test && doc.pointer(path).is_none_or(Value::is_null))
            })
            .collect(),
    )
}

/// True for a server-side apply body (`application/apply-patch+yaml`).
pub fn is_apply(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or("").trim() == crate::apply::APPLY_PATCH
}

/// PATCH of the main resource or its `status`.
#[allow(clippy::too_many_arguments)]
pub async fn patch(
    inner: &Arc<Inner>,
    r: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    sub: Option<&str>,
    content_type: &str,
    body: &[u8],
    dry_run: bool,
    fm: &FieldManager,
) -> Result<Value, ApiError> {
    if is_apply(content_type) {
        return crate::apply::apply(inner, r, ns, name, sub, body, fm, dry_run).await;
    }
    fm.check_not_forced()?;
    // Parsed before touching the store, so a bad patch is a 400/415, not a 404.
    let patch = PatchDocument::parse(content_type, body)?;
    if matches!(patch, PatchDocument::Strategic(_)) {
        crate::patch::check_strategic_supported(r)?;
    }
    let status_only = sub == Some("status");
    let now = inner.clock.now_rfc3339();
    guaranteed_update(inner, r, ns, name, None, dry_run, |old| {
        let mut patched = patch.apply(old)?;
        let old_rv = meta_str(old, "resourceVersion");
        if let Some(rv) = meta_str(&patched, "resourceVersion")
            && Some(rv) != old_rv
        {
            return Err(ApiError::stale(&r.group, &r.plural, name));
        }
        check_name(r, &patched, name)?;
        check_uid(r, &patched, old, name)?;
        strategy::check_type(r, &mut patched)?;
        if status_only {
            let mut new = strategy::prepare_for_status_update(old, &patched);
            fm.record_update(r, old, &mut new, "status", &now);
            Ok(new)
        } else {
            strategy::prepare_for_update(r, old, &mut patched);
            fm.record_update(r, old, &mut patched, "", &now);
            Ok(patched)
        }
    })
    .await
}

fn ready_to_delete(r: &ResourceInfo, obj: &Value) -> bool {
    if meta_str(obj, "deletionTimestamp").is_none() || !object::finalizers(obj).is_empty() {
        return false;
    }
    let grace = obj
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if grace > 0 {
        return false;
    }
    if r.group.is_empty() && r.plural == "namespaces" {
        return obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
    }
    true
}

fn finalizers_added_during_deletion(old: &Value, new: &Value) -> Option<String> {
    meta_str(old, "deletionTimestamp")?;
    let before = object::finalizers(old);
    object::finalizers(new)
        .into_iter()
        .find(|f| !before.contains(f))
}

/// Reads, transforms and writes an object until the write wins the race (or the caller's
/// resourceVersion precondition fails with 409). An update that leaves an object being deleted
/// with no finalizers deletes it.
#[allow(clippy::too_many_arguments)]
pub async fn guaranteed_update<F>(
    inner: &Arc<Inner>,
    r: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    precondition: Option<i64>,
    dry_run: bool,
    mut transform: F,
) -> Result<Value, ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    let key = r.key(ns, name);
    for _ in 0..MAX_RETRIES {
        let kv = inner
            .store
            .get(&key)
            .await
            .map_err(|e| store_err(r, name, e))?
            .ok_or_else(|| ApiError::not_found(&r.group, &r.plural, name))?;
        if let Some(p) = precondition
            && p != kv.mod_revision
        {
            return Err(ApiError::stale(&r.group, &r.plural, name));
        }
        let old = object::decode(&kv)?;
        let mut new = transform(&old)?;
        if is_service(r) {
            inner.services.on_update(&old, &mut new)?;
        }
        object::meta_mut(&mut new)
            .insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
        if let Some(f) = finalizers_added_during_deletion(&old, &new) {
            return Err(ApiError::invalid_field(
                &r.group,
                &r.kind,
                name,
                "metadata.finalizers",
                format!(
                    "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers [{f}]"
                ),
            ));
        }
        strategy::validate(r, &new)?;
        if new == old {
            return Ok(old);
        }
        if dry_run {
            return Ok(new);
        }
        if ready_to_delete(r, &new) {
            match inner.store.delete(&key, Some(kv.mod_revision)).await {
                Ok((_, rev)) => {
                    object::meta_mut(&mut new)
                        .insert("resourceVersion".into(), json!(rev.to_string()));
                    if crd::is_crd(r) {
                        crd::unregister(inner, &new).await?;
                    }
                    if is_service(r) {
                        inner.services.on_delete(&new);
                    }
                    return Ok(new);
                }
                Err(kybernetes_store::Error::Conflict { .. }) if precondition.is_none() => continue,
                Err(e) => return Err(store_err(r, name, e)),
            }
        }
        match inner
            .store
            .update(&key, object::encode(&new)?, kv.mod_revision)
            .await
        {
            Ok(written) => {
                object::meta_mut(&mut new).insert(
                    "resourceVersion".into(),
                    json!(written.mod_revision.to_string()),
                );
                if crd::is_crd(r) {
                    crd::register(inner, &new);
                }
                return Ok(new);
            }
            Err(kybernetes_store::Error::Conflict { .. }) if precondition.is_none() => continue,
            Err(kybernetes_store::Error::NotFound { .. }) if precondition.is_none() => continue,
            Err(e) => return Err(store_err(r, name, e)),
        }
    }
    Err(ApiError::conflict(
        &r.group,
        &r.plural,
        name,
        "too many concurrent updates; try again",
    ))
}
