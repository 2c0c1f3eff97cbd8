//! `NamespaceLifecycle`: no new content in a namespace that is missing or being terminated.

use std::sync::Arc;

use kybernetes_core::ApiError;
use kybernetes_store::Store;
use serde_json::Value;

use super::{Admission, AdmissionAttributes, Operation};
use crate::object::{self, meta_str};

/// Upstream's `NamespaceLifecycle` admission plugin, for creates: the namespace must exist
/// and must not be terminating (events are still accepted there, as upstream).
pub struct NamespaceLifecycle {
    store: Arc<dyn Store>,
}

impl NamespaceLifecycle {
    /// A plugin reading namespaces from `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        NamespaceLifecycle { store }
    }
}

#[async_trait::async_trait]
impl Admission for NamespaceLifecycle {
    fn name(&self) -> &str {
        "NamespaceLifecycle"
    }

    async fn validate(&self, a: &AdmissionAttributes<'_>, _obj: &Value) -> Result<(), ApiError> {
        if a.operation != Operation::Create || !a.resource.namespaced {
            return Ok(());
        }
        let Some(ns) = a.namespace else {
            return Ok(());
        };
        let key = format!("/registry/core/namespaces/{ns}");
        let kv = self.store.get(&key).await.map_err(|e| {
            ApiError::internal(format!("reading namespace {ns:?} for admission: {e}"))
        })?;
        let Some(kv) = kv else {
            return Err(ApiError::not_found("", "namespaces", ns));
        };
        let namespace = object::decode(&kv)?;
        // Events describe the termination itself, so upstream still accepts them.
        let is_event = a.resource.kind == "Event";
        if meta_str(&namespace, "deletionTimestamp").is_some() && !is_event {
            return Err(ApiError::forbidden(format!(
                "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                a.resource.plural, a.name
            )));
        }
        Ok(())
    }
}
