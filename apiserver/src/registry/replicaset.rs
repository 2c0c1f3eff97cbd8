//! ReplicaSets: replicas and pod template defaults, workload validation, and the
//! `status.replicas` field selector.

use kybernetes_core::status::StatusCause;
use serde_json::Value;

use super::Strategy;
use super::pod_template::{default_replicated, validate_workload};

/// The strategy of apps/v1 replicasets.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplicaSetStrategy;

impl Strategy for ReplicaSetStrategy {
    fn default(&self, obj: &mut Value) {
        default_replicated(obj);
    }

    fn validate(&self, obj: &Value) -> Vec<StatusCause> {
        let mut out = Vec::new();
        validate_workload(obj, &mut out);
        out
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }
}
