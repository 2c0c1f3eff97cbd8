//! CustomResourceDefinitions: creating one registers its resource (every served version, with
//! the `status` and `scale` subresources, short names and categories it declares) and the
//! resource's strategy, so it is served at once; deleting it removes the resource and its
//! objects.
//!
//! - [`definition`]: the CRD object's own defaults, validation and status;
//! - [`schema`]: validation of custom objects against `openAPIV3Schema`, with [`format`];
//! - [`prune`]: pruning of unknown fields and defaulting.

use std::sync::Arc;

use kybernetes_core::registry::ScaleSubresource;
use kybernetes_core::{ApiError, Registry, ResourceInfo};
use kybernetes_store::{ListOptions, Store};
use serde_json::{Value, json};

use crate::Inner;
use crate::object;
use crate::registry::custom_resource::{CustomResourceStrategies, CustomResourceStrategy};

pub mod definition;
pub mod format;
pub mod prune;
pub mod schema;

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

/// Registers the resources of a CRD and their strategy, and stops serving the versions it
/// no longer serves.
pub(crate) fn register(registry: &Registry, custom: &CustomResourceStrategies, crd: &Value) {
    let resources = resources_of(crd);
    let Some(first) = resources.first() else {
        return;
    };
    let (group, plural) = (first.group.clone(), first.plural.clone());
    for old in registry.all() {
        if old.group == group
            && old.plural == plural
            && !resources.iter().any(|r| r.version == old.version)
        {
            registry.unregister(&old.group, &old.version, &old.plural);
        }
    }
    custom.set(&group, &plural, CustomResourceStrategy::from_crd(crd));
    for r in resources {
        registry.register(r);
    }
}

/// Removes a CRD's resources and deletes its objects.
pub(crate) async fn unregister(
    registry: &Registry,
    custom: &CustomResourceStrategies,
    store: &Arc<dyn Store>,
    crd: &Value,
) -> Result<(), ApiError> {
    let resources = resources_of(crd);
    for r in &resources {
        registry.unregister(&r.group, &r.version, &r.plural);
    }
    if let Some(r) = resources.first() {
        custom.remove(&r.group, &r.plural);
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
        register(
            &inner.registry,
            inner.strategies.custom(),
            &object::decode(kv)?,
        );
    }
    Ok(())
}
