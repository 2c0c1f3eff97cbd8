//! CustomResourceDefinitions: the definition's own validation, the accepted status, and
//! serving (or removing) the resources it defines when it is written (or deleted).

use kybernetes_core::status::StatusCause;
use kybernetes_core::{ApiError, Clock, Registry};
use kybernetes_store::Store;
use serde_json::Value;
use std::sync::Arc;

use super::Strategy;
use crate::crd;

/// The strategy of apiextensions.k8s.io/v1 customresourcedefinitions.
#[derive(Clone)]
pub struct CustomResourceDefinitionStrategy {
    registry: Registry,
    store: Arc<dyn Store>,
}

impl CustomResourceDefinitionStrategy {
    /// A strategy registering custom resources in `registry` and removing their objects from
    /// `store`.
    pub fn new(registry: Registry, store: Arc<dyn Store>) -> Self {
        CustomResourceDefinitionStrategy { registry, store }
    }
}

#[async_trait::async_trait]
impl Strategy for CustomResourceDefinitionStrategy {
    fn initial_status(&self, obj: &mut Value, clock: &Clock) {
        obj["status"] = crd::accepted_status(obj, &clock.now_rfc3339());
    }

    fn validate(&self, obj: &Value) -> Vec<StatusCause> {
        crd::validate(obj)
    }

    fn after_store_write(&self, obj: &Value) {
        crd::register(&self.registry, obj);
    }

    async fn after_store_delete(&self, obj: &Value) -> Result<(), ApiError> {
        crd::unregister(&self.registry, &self.store, obj).await
    }
}
