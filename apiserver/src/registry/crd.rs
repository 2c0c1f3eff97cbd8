//! CustomResourceDefinitions: the definition's defaults, validation and status, and serving
//! (or removing) the resources it defines when it is written (or deleted).

use kybernetes_core::status::StatusCause;
use kybernetes_core::{ApiError, Clock, Registry};
use kybernetes_store::Store;
use serde_json::Value;
use std::sync::Arc;

use super::Strategy;
use super::custom_resource::CustomResourceStrategies;
use crate::crd::{self, definition};

/// The strategy of apiextensions.k8s.io/v1 customresourcedefinitions.
#[derive(Clone)]
pub struct CustomResourceDefinitionStrategy {
    registry: Registry,
    store: Arc<dyn Store>,
    custom: CustomResourceStrategies,
}

impl CustomResourceDefinitionStrategy {
    /// A strategy registering custom resources in `registry` and their strategies in
    /// `custom`, and removing their objects from `store`.
    pub fn new(
        registry: Registry,
        store: Arc<dyn Store>,
        custom: CustomResourceStrategies,
    ) -> Self {
        CustomResourceDefinitionStrategy {
            registry,
            store,
            custom,
        }
    }
}

#[async_trait::async_trait]
impl Strategy for CustomResourceDefinitionStrategy {
    fn default(&self, obj: &mut Value) {
        definition::set_defaults(obj);
    }

    fn initial_status(&self, obj: &mut Value, clock: &Clock) {
        obj["status"] = definition::accepted_status(obj, None, &clock.now_rfc3339());
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // The accepted names and stored versions follow the spec; a new storage version is
        // added to storedVersions, none is removed (that is the user's job, as upstream).
        let since = old
            .pointer("/status/conditions/0/lastTransitionTime")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        new["status"] = definition::accepted_status(new, old.get("status"), &since);
    }

    fn validate(&self, obj: &Value) -> Vec<StatusCause> {
        definition::validate(obj)
    }

    fn after_store_write(&self, obj: &Value) {
        crd::register(&self.registry, &self.custom, obj);
    }

    async fn after_store_delete(&self, obj: &Value) -> Result<(), ApiError> {
        crd::unregister(&self.registry, &self.custom, &self.store, obj).await
    }
}
