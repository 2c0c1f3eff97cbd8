//! Server-side apply (`PATCH` with `application/apply-patch+yaml`) and the `managedFields`
//! that every write records, as upstream's field manager and structured-merge-diff do:
//!
//! - an applier owns exactly the fields of its last applied configuration (an `Apply` entry);
//! - applying a field another manager owns with a different value is a 409 conflict, unless
//!   `force=true` moves the field to the applier;
//! - a field the applier stops applying is removed, unless another manager owns it too;
//! - create, PUT and the other patches record an `Update` entry for the fields they changed,
//!   and those fields leave the other managers' sets.

pub mod fieldpath;
pub mod managed;
mod merge;

use std::sync::Arc;

use kybernetes_core::status::StatusCause;
use kybernetes_core::{ApiError, ResourceInfo};
use serde_json::{Value, json};

use crate::Inner;
use crate::object::{meta_str, path_get, path_set};
use crate::patch::schema::Schema;
use crate::registry::{RequestScope, before};
use crate::rest::write;
use fieldpath::{FieldSet, PathElement};
use managed::{APPLY, Entry, Writer};

/// The media type of a server-side apply patch.
pub const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// True for a server-side apply body (`application/apply-patch+yaml`).
pub fn is_apply(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or("").trim() == APPLY_PATCH
}

/// The manager that owns the fields of an object nobody owned before its first apply.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Upstream's limit on a field manager's name.
const MAX_MANAGER_LEN: usize = 128;

/// Who writes, from the request's `fieldManager`, `force` and `User-Agent`, plus the CRD
/// schema of a custom resource (its list types decide how its lists are owned).
#[derive(Clone, Debug, Default)]
pub struct FieldManager {
    field_manager: Option<String>,
    user_agent: String,
    force: bool,
    force_sent: bool,
    applying: bool,
    crd_schema: Option<Value>,
}

impl FieldManager {
    /// The field manager of a write request: `fieldManager` (validated as upstream does),
    /// `force`, the User-Agent, and for a custom resource its CRD's schema for this version.
    /// A server-side apply request records its own entry, so the create or update it runs
    /// records none.
    pub(crate) async fn for_scope(
        inner: &Arc<Inner>,
        scope: &RequestScope,
    ) -> Result<Self, ApiError> {
        let r = &*scope.resource;
        let field_manager = scope.field_manager.clone();
        if let Some(m) = &field_manager
            && (m.chars().count() > MAX_MANAGER_LEN || m.chars().any(|c| c.is_control()))
        {
            return Err(patch_options_invalid(
                "FieldValueInvalid",
                "fieldManager",
                &format!(
                    "Invalid value: {m:?}: must be at most {MAX_MANAGER_LEN} printable characters"
                ),
            ));
        }
        let force = match scope.query.get("force").map(String::as_str) {
            None | Some("") | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "invalid value for force: {other:?}, expected true or false"
                )));
            }
        };
        let crd_schema = if crate::patch::merge_keys::is_builtin(&r.group, &r.kind) {
            None
        } else {
            crd_schema(inner, r).await?
        };
        Ok(FieldManager {
            field_manager,
            user_agent: scope.user_agent.clone(),
            force,
            force_sent: scope.query.contains_key("force"),
            applying: is_apply(&scope.content_type),
            crd_schema,
        })
    }

    /// Upstream's `PatchOptions` rule for the other patch types: `force` belongs to apply.
    pub fn check_not_forced(&self) -> Result<(), ApiError> {
        if !self.force_sent {
            return Ok(());
        }
        Err(patch_options_invalid(
            "FieldValueForbidden",
            "force",
            "Forbidden: may not be specified for non-apply patch",
        ))
    }

    /// The manager of an `Update`: `fieldManager`, else the program name of the User-Agent
    /// (`kubectl/v1.32.0 (linux/amd64)` gives `kubectl`), as upstream does.
    pub fn updater(&self) -> String {
        match &self.field_manager {
            Some(m) => m.clone(),
            None => {
                let prefix = self.user_agent.split('/').next().unwrap_or("");
                prefix.chars().take(MAX_MANAGER_LEN).collect()
            }
        }
    }

    /// The schema a resource's objects merge by.
    pub fn schema(&self, r: &ResourceInfo) -> Schema<'_> {
        match &self.crd_schema {
            Some(s) => Schema::Json(s),
            None => Schema::for_kind(&r.group, &r.kind),
        }
    }

    /// Records the `Update` entry of a create.
    pub fn record_create(&self, r: &ResourceInfo, obj: &mut Value, now: &str) {
        self.record_update(r, &Value::Null, obj, "", now);
    }

    /// Records the `Update` entry of a write through `subresource` (empty for the main
    /// resource) that turned `old` into `new`.
    pub fn record_update(
        &self,
        r: &ResourceInfo,
        old: &Value,
        new: &mut Value,
        subresource: &str,
        now: &str,
    ) {
        if self.applying {
            return;
        }
        let manager = self.updater();
        let api_version = r.api_version();
        managed::record_update(
            old,
            new,
            self.schema(r),
            Writer {
                manager: &manager,
                api_version: &api_version,
                subresource,
                now,
            },
        );
    }
}

/// A 422 about the request's `PatchOptions`, worded as upstream's
/// (`PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: ...`).
fn patch_options_invalid(reason: &str, field: &str, message: &str) -> ApiError {
    ApiError::invalid(
        "meta.k8s.io",
        "PatchOptions",
        "",
        vec![StatusCause {
            reason: reason.into(),
            message: message.into(),
            field: field.into(),
        }],
    )
}

/// The `openAPIV3Schema` of a custom resource's version, from its CRD.
async fn crd_schema(inner: &Arc<Inner>, r: &ResourceInfo) -> Result<Option<Value>, ApiError> {
    let key = format!(
        "/registry/apiextensions.k8s.io/customresourcedefinitions/{}.{}",
        r.plural, r.group
    );
    let Some(kv) = inner
        .store
        .get(&key)
        .await
        .map_err(|e| ApiError::internal(format!("reading the CRD of {}: {e}", r.plural)))?
    else {
        return Ok(None);
    };
    let crd = crate::object::decode(&kv)?;
    Ok(crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(r.version.as_str()))
        .and_then(|v| v.pointer("/schema/openAPIV3Schema"))
        .cloned())
}

/// One apply, as the pure function from the live object to the new one.
#[derive(Clone, Copy, Debug)]
pub struct Applier<'a> {
    /// The field manager.
    pub manager: &'a str,
    /// The apiVersion of the request.
    pub api_version: &'a str,
    /// The subresource applied through, empty for the main resource.
    pub subresource: &'a str,
    /// `force=true`: take conflicting fields instead of failing.
    pub force: bool,
    /// The time now, from the cluster clock.
    pub now: &'a str,
}

impl Applier<'_> {
    /// Applies `applied` (with nulls and reset fields already dropped) to `live` (`null` when
    /// the object does not exist yet); the result carries the new managedFields.
    pub fn apply_to(
        &self,
        live: &Value,
        applied: &Value,
        schema: Schema<'_>,
    ) -> Result<Value, ApiError> {
        let mut entries = managed::decode(live);
        let live_leaves = fieldpath::leaves(live, schema);
        if entries.is_empty() && !live_leaves.is_empty() {
            // An object nobody owns yet (written before managedFields were kept) belongs to
            // `before-first-apply`, so the first apply conflicts where it changes a value, as
            // upstream's skip-non-applied manager does.
            entries.push(Entry {
                manager: BEFORE_FIRST_APPLY.into(),
                operation: managed::UPDATE.into(),
                api_version: self.api_version.to_string(),
                time: Some(self.now.to_string()),
                subresource: String::new(),
                fields: live_leaves.keys().cloned().collect(),
            });
        }
        let is_mine = |e: &Entry| e.is(self.manager, APPLY, "", self.subresource);
        let applied_leaves = fieldpath::leaves(applied, schema);
        let mut conflicts: Vec<(usize, Vec<PathElement>)> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if is_mine(e) {
                continue;
            }
            for (p, v) in &applied_leaves {
                if e.fields.contains(p) && live_leaves.get(p).is_some_and(|l| l != v) {
                    conflicts.push((i, p.clone()));
                }
            }
        }
        if !conflicts.is_empty() && !self.force {
            tracing::debug!(
                manager = self.manager,
                conflicts = conflicts.len(),
                "apply conflicts"
            );
            return Err(conflict_error(&entries, &conflicts));
        }
        if !conflicts.is_empty() {
            tracing::debug!(
                manager = self.manager,
                fields = conflicts.len(),
                "apply forces ownership"
            );
        }
        for (i, p) in &conflicts {
            entries[*i].fields.remove(p);
        }
        let mut merged = merge::merge(live, applied, schema);
        let now_owned: FieldSet = applied_leaves.into_keys().collect();
        let previous = entries
            .iter()
            .find(|e| is_mine(e))
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        for stale in previous.difference(&now_owned) {
            let shared = entries
                .iter()
                .filter(|e| !is_mine(e))
                .any(|e| e.fields.iter().any(|p| p.starts_with(stale)));
            if !shared {
                merge::remove(&mut merged, stale);
            }
        }
        match entries.iter_mut().find(|e| is_mine(e)) {
            Some(e) => {
                if e.fields != now_owned {
                    e.fields = now_owned;
                    e.time = Some(self.now.to_string());
                }
                e.api_version = self.api_version.to_string();
            }
            None => entries.push(Entry {
                manager: self.manager.to_string(),
                operation: APPLY.into(),
                api_version: self.api_version.to_string(),
                time: Some(self.now.to_string()),
                subresource: self.subresource.to_string(),
                fields: now_owned,
            }),
        }
        managed::encode_into(&mut merged, &entries);
        Ok(merged)
    }
}

/// The 409 of an apply that conflicts, worded as upstream words it.
fn conflict_error(entries: &[Entry], conflicts: &[(usize, Vec<PathElement>)]) -> ApiError {
    let causes: Vec<StatusCause> = conflicts
        .iter()
        .map(|(i, p)| StatusCause {
            reason: "FieldManagerConflict".into(),
            message: format!("conflict with {}", entries[*i].describe()),
            field: fieldpath::Display(p).to_string(),
        })
        .collect();
    let message = if let [(i, p)] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            entries[*i].describe(),
            fieldpath::Display(p)
        )
    } else {
        let mut by_manager: Vec<(String, Vec<String>)> = Vec::new();
        for (i, p) in conflicts {
            let who = entries[*i].describe();
            let path = fieldpath::Display(p).to_string();
            match by_manager.iter_mut().find(|(m, _)| *m == who) {
                Some((_, paths)) => paths.push(path),
                None => by_manager.push((who, vec![path])),
            }
        }
        by_manager.sort();
        let lines: Vec<String> = by_manager
            .iter()
            .flat_map(|(m, paths)| {
                std::iter::once(format!("conflicts with {m}:"))
                    .chain(paths.iter().map(|p| format!("- {p}")))
            })
            .collect();
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    let mut err = ApiError::new(409, "Conflict", message);
    err.causes = causes;
    err
}

/// Parses an apply body: YAML or JSON, one object.
fn decode_body(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_norway::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the apply patch must be a single object",
        ));
    }
    Ok(strip_nulls(v))
}

/// Null in an applied configuration sets nothing.
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// The applied configuration, checked against the URL and cut to what the subresource may
/// set (upstream's reset fields): the main resource never sets `status` when it has a status
/// subresource; `/status` sets only `status` (and labels and annotations).
fn applied_config(
    r: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    sub: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let mut applied = decode_body(body)?;
    if applied.pointer("/metadata/managedFields").is_some() {
        return Err(ApiError::bad_request(
            "metadata.managedFields must be nil in an apply patch",
        ));
    }
    for field in ["apiVersion", "kind"] {
        if applied
            .get(field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ApiError::bad_request(format!(
                "the apply patch must set {field}"
            )));
        }
    }
    match meta_str(&applied, "name") {
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name}) for {}",
                r.plural
            )));
        }
        _ => {}
    }
    match (meta_str(&applied, "namespace"), ns) {
        (Some(body_ns), Some(ns)) if !body_ns.is_empty() && body_ns != ns => {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        _ => {}
    }
    if sub == "scale" {
        return scale_config(r, name, &applied);
    }
    before::check_type(r, &mut applied)?;
    crate::object::meta_mut(&mut applied).insert("name".into(), json!(name));
    match sub {
        "" if r.status_subresource => {
            applied.as_object_mut().map(|m| m.remove("status"));
        }
        "status" => {
            let mut only = json!({
                "apiVersion": applied["apiVersion"].clone(),
                "kind": applied["kind"].clone(),
                "metadata": {"name": name},
            });
            for f in ["labels", "annotations"] {
                if let Some(v) = applied.pointer(&format!("/metadata/{f}")) {
                    only["metadata"][f] = v.clone();
                }
            }
            if let Some(s) = applied.get("status") {
                only["status"] = s.clone();
            }
            applied = only;
        }
        _ => {}
    }
    Ok(applied)
}

/// An applied `Scale` as the part of the parent object it sets: the replicas path.
fn scale_config(r: &ResourceInfo, name: &str, scale: &Value) -> Result<Value, ApiError> {
    if scale.get("kind").and_then(Value::as_str) != Some("Scale") {
        return Err(ApiError::bad_request(
            "the apply patch of the scale subresource must be an autoscaling/v1 Scale",
        ));
    }
    let Some(s) = &r.scale else {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    };
    let mut parent =
        json!({"apiVersion": r.api_version(), "kind": r.kind, "metadata": {"name": name}});
    if let Some(replicas) = path_get(scale, ".spec.replicas") {
        let Some(n) = replicas.as_i64().filter(|n| *n >= 0) else {
            return Err(ApiError::invalid_field(
                "autoscaling",
                "Scale",
                name,
                "spec.replicas",
                format!("Invalid value: {replicas}: must be greater than or equal to 0"),
            ));
        };
        path_set(&mut parent, &s.spec_replicas_path, json!(n));
    }
    Ok(parent)
}

/// Serves an apply `PATCH` of the main resource or of `status` or `scale` (the scope's
/// subresource); returns the object (for `scale`, the parent object). Applying to an object
/// that does not exist creates it, as upstream does.
#[tracing::instrument(level = "debug", skip_all, fields(resource = %scope.resource.plural, name = %scope.name(), subresource = ?scope.subresource))]
pub(crate) async fn apply(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    body: &[u8],
    fm: &FieldManager,
) -> Result<Value, ApiError> {
    let (r, name, ns) = (&*scope.resource, scope.name(), scope.ns());
    let sub = scope.subresource.as_deref().unwrap_or("");
    let manager = fm.field_manager.clone().ok_or_else(|| {
        patch_options_invalid(
            "FieldValueRequired",
            "fieldManager",
            "Required value: is required for apply patch",
        )
    })?;
    let mut applied = applied_config(r, ns, name, sub, body)?;
    // Unknown fields leave the configuration before anyone owns them.
    before::prune_unknown_fields(scope, &mut applied)?;
    let api_version = r.api_version();
    let schema = fm.schema(r);
    if let Some(why) = fieldpath::missing_key(&applied, schema) {
        return Err(ApiError::bad_request(format!(
            "failed to create typed patch object ({}/{name}; {api_version}, Kind={}): {why}",
            ns.unwrap_or(""),
            r.kind
        )));
    }
    let now = inner.clock.now_rfc3339();
    let applier = Applier {
        manager: &manager,
        api_version: &api_version,
        subresource: sub,
        force: fm.force,
        now: &now,
    };
    for _ in 0..2 {
        let updated = write::guaranteed_update(inner, scope, None, |old| {
            let mut new = applier.apply_to(old, &applied, schema)?;
            if sub == "status" {
                return Ok(before::prepare_for_status_update(old, &new));
            }
            before::check_type(r, &mut new)?;
            before::prepare_for_update(r, &*scope.strategy, old, &mut new);
            Ok(new)
        })
        .await;
        match updated {
            Err(e) if e.code == 404 && sub.is_empty() => {
                crate::rest::require_ns(r, ns)?;
                let new = applier.apply_to(&Value::Null, &applied, schema)?;
                match write::create(inner, scope, new).await {
                    Err(e) if e.code == 409 && e.reason == "AlreadyExists" => continue,
                    other => return other,
                }
            }
            other => return other,
        }
    }
    Err(ApiError::conflict(
        &r.group,
        &r.plural,
        name,
        "the object was created and deleted while applying; try again",
    ))
}

#[cfg(test)]
mod tests;
