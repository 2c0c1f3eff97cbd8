//! CustomResourceDefinitions: creating one registers its resource (every served version, with
//! the `status` and `scale` subresources it declares), so it is served at once; deleting it
//! removes the resource and its objects.

use std::sync::Arc;

use kybernetes_core::registry::ScaleSubresource;
use kybernetes_core::status::StatusCause;
use kybernetes_core::{ApiError, Registry, ResourceInfo};
use kybernetes_store::{ListOptions, Store};
use serde_json::{Value, json};

use crate::Inner;
use crate::object;

/// The resources a CRD object defines (one per served version).
pub fn resources_of(crd: &Value) -> Vec<ResourceInfo> {
    let spec = crd.get("spec").cloned().unwrap_or(json!({}));
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let names = spec.get("names").cloned().unwrap_or(json!({}));
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let kind = s(&names, "kind");
    let plural = s(&names, "plural");
    let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
    let list = |k: &str| -> Vec<String> {
        names
            .get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for v in spec
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let mut r = ResourceInfo::custom(&group, &s(v, "name"), &kind, &plural, namespaced);
        let singular = s(&names, "singular");
        if !singular.is_empty() {
            r.singular = singular;
        }
        r.short_names = list("shortNames");
        r.categories = list("categories");
        r.status_subresource = v.pointer("/subresources/status").is_some();
        if let Some(scale) = v.pointer("/subresources/scale") {
            r.scale = Some(ScaleSubresource {
                spec_replicas_path: s(scale, "specReplicasPath"),
                status_replicas_path: s(scale, "statusReplicasPath"),
                label_selector_path: scale
                    .get("labelSelectorPath")
                    .and_then(Value::as_str)
                    .map(String::from),
            });
        }
        out.push(r);
    }
    out
}

/// The status the API server gives a CRD it accepts: names accepted, established.
pub fn accepted_status(crd: &Value, now: &str) -> Value {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let storage: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .filter_map(|v| v.get("name").cloned())
        .collect();
    let cond = |t: &str, reason: &str, msg: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": msg});
    json!({
        "acceptedNames": names,
        "storedVersions": storage,
        "conditions": [
            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
    })
}

/// Checks a CRD the way the clients depend on: a group, names and at least one version.
pub fn validate(crd: &Value) -> Vec<StatusCause> {
    let name = object::meta_str(crd, "name").unwrap_or("");
    let s = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or("");
    let (group, plural, kind) = (
        s("/spec/group"),
        s("/spec/names/plural"),
        s("/spec/names/kind"),
    );
    let invalid = |field: &str, message: String| {
        vec![StatusCause {
            reason: "FieldValueInvalid".into(),
            message,
            field: field.into(),
        }]
    };
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return invalid(
            "spec",
            "Required value: spec.group, spec.names.plural and spec.names.kind are required".into(),
        );
    }
    if name != format!("{plural}.{group}") {
        return invalid(
            "metadata.name",
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        );
    }
    if resources_of(crd).is_empty() {
        return invalid("spec.versions", "Invalid value: must have exactly one version marked as storage version and at least one served".into());
    }
    Vec::new()
}

/// Registers the resources of a CRD.
pub(crate) fn register(registry: &Registry, crd: &Value) {
    for r in resources_of(crd) {
        registry.register(r);
    }
}

/// Removes a CRD's resources and deletes its objects.
pub(crate) async fn unregister(
    registry: &Registry,
    store: &Arc<dyn Store>,
    crd: &Value,
) -> Result<(), ApiError> {
    let resources = resources_of(crd);
    for r in &resources {
        registry.unregister(&r.group, &r.version, &r.plural);
    }
    if let Some(r) = resources.first() {
        let prefix = r.key_prefix();
        let list = store
            .list(&prefix, ListOptions::default())
            .await
            .map_err(|e| {
                ApiError::internal(format!("listing {prefix} to remove custom resources: {e}"))
            })?;
        for kv in list.items {
            // Already gone is fine: something else deleted it meanwhile.
            if let Err(e) = store.delete(&kv.key, None).await
                && !matches!(e, kybernetes_store::Error::NotFound { .. })
            {
                tracing::warn!(key = %kv.key, error = %e, "removing a custom object of a deleted CRD");
            }
        }
    }
    Ok(())
}

/// Registers every CRD already in the store (at start-up, e.g. on a durable store).
pub(crate) async fn load_all(inner: &Arc<Inner>) -> Result<(), ApiError> {
    let prefix = "/registry/apiextensions.k8s.io/customresourcedefinitions/";
    let list = inner
        .store
        .list(prefix, ListOptions::default())
        .await
        .map_err(|e| ApiError::internal(format!("loading CRDs: {e}")))?;
    for kv in &list.items {
        register(&inner.registry, &object::decode(kv)?);
    }
    Ok(())
}
