//! create, update (PUT) and patch, and the optimistic-concurrency update loop they share
//! (upstream's `GuaranteedUpdate`). The kind's rules come from the scope's [`Strategy`];
//! admission runs between the strategy and the store.

use std::sync::Arc;

use http::StatusCode;
use kybernetes_core::{ApiError, ResourceInfo};
use serde_json::{Value, json};

use super::store_err;
use crate::Inner;
use crate::admission::{AdmissionAttributes, Operation};
use crate::apply::FieldManager;
use crate::object::{self, meta_str};
use crate::registry::{RequestScope, Strategy, before};
use crate::request::parse_rv;

/// How many times an unconditional update retries after losing a race.
const MAX_RETRIES: usize = 100;

/// POST: creates a decoded object (see [`super::decode`]). The steps, in upstream's order:
/// strategy (prepare, default, initial status) → mutating admission → validation →
/// validating admission → (unless a dry run) the kind's storage hooks and the store.
pub async fn create(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    mut obj: Value,
) -> Result<Value, ApiError> {
    let r = &*scope.resource;
    let strategy = &*scope.strategy;
    let fm = FieldManager::for_scope(inner, scope).await?;
    before::prune_unknown_fields(scope, &mut obj)?;
    before::prepare_for_create(r, strategy, &mut obj, scope.ns(), &inner.clock)?;
    fm.record_create(r, &mut obj, &inner.clock.now_rfc3339());
    let name = meta_str(&obj, "name").unwrap_or("").to_string();
    let attrs = AdmissionAttributes::new(scope, Operation::Create, &name, None);
    inner.admission.admit(&attrs, &mut obj).await?;
    before::validate(r, strategy, &obj, None)?;
    strategy.canonicalize(&mut obj);
    inner.admission.validate(&attrs, &obj).await?;
    if scope.dry_run {
        return Ok(obj);
    }
    strategy.before_store_create(&mut obj)?;
    let key = r.key(scope.ns(), &name);
    let stored = strategy.storage_form(&obj);
    let encoded = object::encode(stored.as_ref().unwrap_or(&obj))?;
    let kv = match inner.store.create(&key, encoded).await {
        Ok(kv) => kv,
        Err(e) => {
            strategy.create_abandoned(&obj);
            return Err(store_err(r, &name, e));
        }
    };
    object::meta_mut(&mut obj).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    strategy.after_store_write(&obj);
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

/// PUT of the main resource (a decoded object). Answers 200 with the updated object, or 201
/// when the kind allows create-on-update and the object did not exist.
pub async fn update(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    mut obj: Value,
) -> Result<(StatusCode, Value), ApiError> {
    let (r, name) = (&*scope.resource, scope.name());
    check_name(r, &obj, name)?;
    before::prune_unknown_fields(scope, &mut obj)?;
    object::meta_mut(&mut obj).insert("name".into(), json!(name));
    let precondition = parse_rv(meta_str(&obj, "resourceVersion"))?;
    let fm = FieldManager::for_scope(inner, scope).await?;
    let now = inner.clock.now_rfc3339();
    let updated = guaranteed_update(inner, scope, precondition, |old| {
        check_uid(r, &obj, old, name)?;
        let mut new = obj.clone();
        before::prepare_for_update(r, &*scope.strategy, old, &mut new);
        fm.record_update(r, old, &mut new, "", &now);
        Ok(new)
    })
    .await;
    match updated {
        Ok(v) => Ok((StatusCode::OK, v)),
        Err(e)
            if e.code == 404
                && precondition.is_none()
                && scope.strategy.allow_create_on_update() =>
        {
            create(inner, scope, obj)
                .await
                .map(|v| (StatusCode::CREATED, v))
        }
        Err(e) => Err(e),
    }
}

/// PUT of the `status` subresource.
pub async fn update_status(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    mut obj: Value,
) -> Result<Value, ApiError> {
    let (r, name) = (&*scope.resource, scope.name());
    check_name(r, &obj, name)?;
    before::prune_unknown_fields(scope, &mut obj)?;
    let precondition = parse_rv(meta_str(&obj, "resourceVersion"))?;
    let fm = FieldManager::for_scope(inner, scope).await?;
    let now = inner.clock.now_rfc3339();
    guaranteed_update(inner, scope, precondition, |old| {
        check_uid(r, &obj, old, name)?;
        let mut new = before::prepare_for_status_update(old, &obj);
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
                let schema = crate::patch::schema::Schema::of_object(&doc);
                doc = crate::patch::strategic::apply(&doc, patch, schema)?;
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

/// PATCH of the main resource or its `status`.
pub async fn patch(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    body: &[u8],
) -> Result<Value, ApiError> {
    let (r, name) = (&*scope.resource, scope.name());
    let fm = FieldManager::for_scope(inner, scope).await?;
    if crate::apply::is_apply(&scope.content_type) {
        return crate::apply::apply(inner, scope, body, &fm).await;
    }
    fm.check_not_forced()?;
    // Parsed before touching the store, so a bad patch is a 400/415, not a 404.
    let patch = PatchDocument::parse(&scope.content_type, body)?;
    if matches!(patch, PatchDocument::Strategic(_)) {
        crate::patch::check_strategic_supported(r)?;
    }
    if let PatchDocument::Merge(doc) | PatchDocument::Strategic(doc) = &patch
        && scope.field_validation.as_deref() != Some("Ignore")
        && let Ok((_, dups)) = super::duplicates::parse(body)
    {
        before::report_duplicate_fields(scope, &dups, doc)?;
    }
    let status_only = scope.subresource.as_deref() == Some("status");
    let now = inner.clock.now_rfc3339();
    guaranteed_update(inner, scope, None, |old| {
        let mut patched = patch.apply(old)?;
        let old_rv = meta_str(old, "resourceVersion");
        if let Some(rv) = meta_str(&patched, "resourceVersion")
            && Some(rv) != old_rv
        {
            return Err(ApiError::stale(&r.group, &r.plural, name));
        }
        check_name(r, &patched, name)?;
        check_uid(r, &patched, old, name)?;
        before::check_type(r, &mut patched)?;
        before::prune_unknown_fields(scope, &mut patched)?;
        if status_only {
            let mut new = before::prepare_for_status_update(old, &patched);
            fm.record_update(r, old, &mut new, "status", &now);
            Ok(new)
        } else {
            before::prepare_for_update(r, &*scope.strategy, old, &mut patched);
            fm.record_update(r, old, &mut patched, "", &now);
            Ok(patched)
        }
    })
    .await
}

fn ready_to_delete(strategy: &dyn Strategy, obj: &Value) -> bool {
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
    !strategy.deletion_pending(obj)
}

fn finalizers_added_during_deletion(old: &Value, new: &Value) -> Option<String> {
    meta_str(old, "deletionTimestamp")?;
    let before = object::finalizers(old);
    object::finalizers(new)
        .into_iter()
        .find(|f| !before.contains(f))
}

/// Reads, transforms and writes an object until the write wins the race (or the caller's
/// resourceVersion precondition fails with 409). Between the transform and the write run
/// mutating admission, validation and validating admission; a dry run stops before the write.
/// An update that leaves an object being deleted with no finalizers deletes it.
pub async fn guaranteed_update<F>(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    precondition: Option<i64>,
    mut transform: F,
) -> Result<Value, ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    let (r, name, strategy) = (&*scope.resource, scope.name(), &*scope.strategy);
    let key = r.key(scope.ns(), name);
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
        let stored = object::decode(&kv)?;
        let old = strategy.served_form(r, &stored).unwrap_or(stored);
        let mut new = transform(&old)?;
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
        strategy.before_store_update(&old, &mut new)?;
        if let Err(e) = admit_update(inner, scope, &old, &mut new).await {
            strategy.update_abandoned(&old, &new);
            return Err(e);
        }
        if new == old {
            return Ok(old);
        }
        if scope.dry_run {
            strategy.update_abandoned(&old, &new);
            return Ok(new);
        }
        match write_update(inner, scope, &key, kv.mod_revision, &mut new).await {
            Ok(()) => return Ok(new),
            Err(e) => {
                strategy.update_abandoned(&old, &new);
                match e {
                    WriteError::Raced if precondition.is_none() => continue,
                    WriteError::Raced => return Err(ApiError::stale(&r.group, &r.plural, name)),
                    WriteError::Failed(e) => return Err(e),
                }
            }
        }
    }
    Err(ApiError::conflict(
        &r.group,
        &r.plural,
        name,
        "too many concurrent updates; try again",
    ))
}

/// Mutating admission, validation and validating admission of an update.
async fn admit_update(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    old: &Value,
    new: &mut Value,
) -> Result<(), ApiError> {
    let attrs = AdmissionAttributes::new(scope, Operation::Update, scope.name(), Some(old));
    inner.admission.admit(&attrs, new).await?;
    before::validate(&scope.resource, &*scope.strategy, new, Some(old))?;
    scope.strategy.canonicalize(new);
    inner.admission.validate(&attrs, new).await
}

enum WriteError {
    /// Another writer won; read again.
    Raced,
    Failed(ApiError),
}

/// Writes an updated object (or removes it, once nothing holds its deletion any more) and
/// sets its new resourceVersion.
async fn write_update(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    key: &str,
    revision: i64,
    new: &mut Value,
) -> Result<(), WriteError> {
    let (r, name, strategy) = (&*scope.resource, scope.name(), &*scope.strategy);
    let raced_or = |e: kybernetes_store::Error| match e {
        kybernetes_store::Error::Conflict { .. } | kybernetes_store::Error::NotFound { .. } => {
            WriteError::Raced
        }
        e => WriteError::Failed(store_err(r, name, e)),
    };
    if ready_to_delete(strategy, new) {
        let (_, rev) = inner
            .store
            .delete(key, Some(revision))
            .await
            .map_err(raced_or)?;
        object::meta_mut(new).insert("resourceVersion".into(), json!(rev.to_string()));
        strategy
            .after_store_delete(new)
            .await
            .map_err(WriteError::Failed)?;
        return Ok(());
    }
    let stored = strategy.storage_form(new);
    let encoded = object::encode(stored.as_ref().unwrap_or(new)).map_err(WriteError::Failed)?;
    let written = inner
        .store
        .update(key, encoded, revision)
        .await
        .map_err(raced_or)?;
    object::meta_mut(new).insert(
        "resourceVersion".into(),
        json!(written.mod_revision.to_string()),
    );
    strategy.after_store_write(new);
    Ok(())
}
