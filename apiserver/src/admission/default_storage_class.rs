//! `DefaultStorageClass`: a new claim that names no class gets the default StorageClass's
//! name, as upstream's admission plugin of that name.

use std::sync::Arc;

use k8s_openapi::api::storage::v1::StorageClass;
use kybernetes_core::ApiError;
use kybernetes_core::persistent_volume::{BETA_STORAGE_CLASS_ANNOTATION, default_class};
use kybernetes_store::{ListOptions, Store};
use serde_json::{Value, json};

use super::{Admission, AdmissionAttributes, Operation};

/// Where StorageClasses are stored.
const STORAGE_CLASS_PREFIX: &str = "/registry/storage.k8s.io/storageclasses/";

/// Upstream's `DefaultStorageClass` admission plugin: on create, a PersistentVolumeClaim
/// without `spec.storageClassName` (and without the legacy annotation) gets the default
/// class; with several defaults, the newest. Without a default class the claim is left as
/// it is (the PV controller assigns one later, if one appears).
pub struct DefaultStorageClass {
    store: Arc<dyn Store>,
}

impl DefaultStorageClass {
    /// A plugin reading StorageClasses from `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        DefaultStorageClass { store }
    }

    async fn default_class_name(&self) -> Result<Option<String>, ApiError> {
        let list = self
            .store
            .list(STORAGE_CLASS_PREFIX, ListOptions::default())
            .await
            .map_err(|e| {
                ApiError::internal(format!("listing storage classes for admission: {e}"))
            })?;
        let mut classes = Vec::with_capacity(list.items.len());
        for kv in &list.items {
            match serde_json::from_slice::<StorageClass>(&kv.value) {
                Ok(c) => classes.push(c),
                Err(e) => tracing::warn!(key = %kv.key, error = %e, "unreadable storage class"),
            }
        }
        Ok(default_class(&classes).and_then(|c| c.metadata.name.clone()))
    }
}

#[async_trait::async_trait]
impl Admission for DefaultStorageClass {
    fn name(&self) -> &str {
        "DefaultStorageClass"
    }

    async fn admit(&self, a: &AdmissionAttributes<'_>, obj: &mut Value) -> Result<(), ApiError> {
        if a.operation != Operation::Create
            || a.subresource.is_some()
            || !a.resource.group.is_empty()
            || a.resource.plural != "persistentvolumeclaims"
        {
            return Ok(());
        }
        let has_class = obj
            .pointer("/spec/storageClassName")
            .is_some_and(|c| !c.is_null())
            || obj
                .pointer("/metadata/annotations")
                .and_then(|m| m.get(BETA_STORAGE_CLASS_ANNOTATION))
                .is_some();
        if has_class {
            return Ok(());
        }
        let Some(class) = self.default_class_name().await? else {
            return Ok(());
        };
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("storageClassName".into(), json!(class));
        }
        Ok(())
    }
}
