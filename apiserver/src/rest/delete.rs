//! delete and deletecollection, with graceful deletion, finalizers and the propagation
//! policy recorded for the garbage collector (the `orphan` and `foregroundDeletion`
//! finalizers, as upstream).

use std::sync::Arc;

use chrono::Duration as ChronoDuration;
use http::StatusCode;
use kybernetes_core::clock::format_time;
use kybernetes_core::status::success_status;
use kybernetes_core::{ApiError, ResourceInfo};
use kybernetes_store::ListOptions;
use serde_json::{Value, json};

use super::read::Filter;
use super::store_err;
use crate::Inner;
use crate::admission::{AdmissionAttributes, Operation};
use crate::object::{self, meta_str};
use crate::registry::RequestScope;
use crate::request::{DeleteOptions, ListQuery};

/// The finalizer that makes the garbage collector orphan dependents.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// The finalizer that holds an owner until its blocking dependents are gone.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

const MAX_RETRIES: usize = 100;

fn check_preconditions(
    r: &ResourceInfo,
    obj: &Value,
    name: &str,
    opts: &DeleteOptions,
) -> Result<(), ApiError> {
    if let Some(uid) = &opts.precondition_uid
        && meta_str(obj, "uid") != Some(uid.as_str())
    {
        return Err(ApiError::conflict(
            &r.group,
            &r.plural,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str(obj, "uid").unwrap_or("")
            ),
        ));
    }
    if let Some(rv) = &opts.precondition_rv
        && meta_str(obj, "resourceVersion") != Some(rv.as_str())
    {
        return Err(ApiError::conflict(
            &r.group,
            &r.plural,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta_str(obj, "resourceVersion").unwrap_or("")
            ),
        ));
    }
    Ok(())
}

/// The finalizers an object carries after a delete with `policy`.
fn finalizers_for(obj: &Value, policy: Option<&str>) -> Vec<String> {
    let mut fins = object::finalizers(obj);
    let Some(policy) = policy else { return fins };
    // An explicit policy replaces the other policy's finalizer; Background needs neither.
    let wanted = match policy {
        "Orphan" => Some(ORPHAN_FINALIZER),
        "Foreground" => Some(FOREGROUND_FINALIZER),
        _ => None,
    };
    fins.retain(|f| {
        (f != ORPHAN_FINALIZER && f != FOREGROUND_FINALIZER) || Some(f.as_str()) == wanted
    });
    if let Some(w) = wanted
        && !fins.iter().any(|f| f == w)
    {
        fins.push(w.to_string());
    }
    fins
}

/// DELETE of one object. Returns the HTTP code and the body (the object while it still
/// exists, a success `Status` once it is gone, or the deleted pod, as upstream).
pub async fn delete(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    opts: &DeleteOptions,
) -> Result<(StatusCode, Value), ApiError> {
    let (r, name, strategy) = (&*scope.resource, scope.name(), &*scope.strategy);
    let dry_run = opts.dry_run || scope.dry_run;
    let key = r.key(scope.ns(), name);
    for _ in 0..MAX_RETRIES {
        let kv = inner
            .store
            .get(&key)
            .await
            .map_err(|e| store_err(r, name, e))?
            .ok_or_else(|| ApiError::not_found(&r.group, &r.plural, name))?;
        let obj = object::decode(&kv)?;
        check_preconditions(r, &obj, name, opts)?;
        let attrs = AdmissionAttributes::new(scope, Operation::Delete, name, Some(&obj));
        inner.admission.validate(&attrs, &obj).await?;
        let grace = strategy
            .graceful_delete_seconds(&obj, opts.grace_period_seconds)
            .max(0);
        let fins = finalizers_for(&obj, opts.propagation_policy.as_deref());
        let namespace_finalizers = strategy.deletion_pending(&obj);
        let already = meta_str(&obj, "deletionTimestamp").is_some();
        let current_grace = obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        let pending = !fins.is_empty() || grace > 0 || namespace_finalizers;
        if pending {
            let mut new = obj.clone();
            let now = inner.clock.now();
            if !already {
                object::meta_mut(&mut new).insert(
                    "deletionTimestamp".into(),
                    json!(format_time(now + ChronoDuration::seconds(grace))),
                );
                object::meta_mut(&mut new)
                    .insert("deletionGracePeriodSeconds".into(), json!(grace));
            } else if current_grace.is_some_and(|g| grace < g) {
                // A shorter grace period replaces a longer one, as upstream.
                object::meta_mut(&mut new).insert(
                    "deletionTimestamp".into(),
                    json!(format_time(now + ChronoDuration::seconds(grace))),
                );
                object::meta_mut(&mut new)
                    .insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            object::set_finalizers(&mut new, &fins);
            if namespace_finalizers {
                new["status"]["phase"] = json!("Terminating");
            }
            let ready = fins.is_empty() && !namespace_finalizers && grace == 0;
            if !ready {
                if new == obj {
                    return Ok((StatusCode::OK, obj));
                }
                if dry_run {
                    return Ok((StatusCode::OK, new));
                }
                match inner
                    .store
                    .update(&key, object::encode(&new)?, kv.mod_revision)
                    .await
                {
                    Ok(w) => {
                        object::meta_mut(&mut new)
                            .insert("resourceVersion".into(), json!(w.mod_revision.to_string()));
                        return Ok((StatusCode::OK, new));
                    }
                    Err(kybernetes_store::Error::Conflict { .. }) => continue,
                    Err(e) => return Err(store_err(r, name, e)),
                }
            }
        }
        if dry_run {
            return Ok((StatusCode::OK, obj));
        }
        match inner.store.delete(&key, Some(kv.mod_revision)).await {
            Ok((_, rev)) => {
                strategy.after_store_delete(&obj).await?;
                let body = if r.graceful_delete || strategy.delete_returns_object() {
                    let mut o = obj;
                    object::meta_mut(&mut o)
                        .insert("resourceVersion".into(), json!(rev.to_string()));
                    o
                } else {
                    success_status(&r.group, &r.plural, name, meta_str(&obj, "uid"))
                };
                return Ok((StatusCode::OK, body));
            }
            Err(kybernetes_store::Error::Conflict { .. }) => continue,
            Err(kybernetes_store::Error::NotFound { .. }) => {
                return Err(ApiError::not_found(&r.group, &r.plural, name));
            }
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

/// DELETE of a collection: deletes every object matching the selectors.
pub async fn delete_collection(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    q: &ListQuery,
    opts: &DeleteOptions,
) -> Result<Value, ApiError> {
    let r = &*scope.resource;
    let filter = Filter::new(scope, q)?;
    let list = inner
        .store
        .list(&r.namespace_prefix(scope.ns()), ListOptions::default())
        .await
        .map_err(|e| store_err(r, "", e))?;
    let mut items = Vec::new();
    for kv in &list.items {
        let obj = object::decode(kv)?;
        if !filter.matches(&obj) {
            continue;
        }
        let name = meta_str(&obj, "name").unwrap_or("").to_string();
        let obj_ns = meta_str(&obj, "namespace").map(String::from);
        match delete(inner, &scope.for_object(obj_ns.as_deref(), &name), opts).await {
            Ok((_, body)) if body.get("kind").and_then(Value::as_str) != Some("Status") => {
                items.push(body)
            }
            Ok(_) => items.push(obj),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json!({
        "kind": r.list_kind(),
        "apiVersion": r.api_version(),
        "metadata": { "resourceVersion": list.revision.to_string() },
        "items": items,
    }))
}
