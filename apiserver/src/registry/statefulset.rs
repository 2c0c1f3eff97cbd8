//! StatefulSets: replicas and pod template defaults, and workload validation.

use kybernetes_core::status::StatusCause;
use serde_json::Value;

use super::Strategy;
use super::pod_template::{default_replicated, validate_workload};

/// The strategy of apps/v1 statefulsets.
#[derive(Clone, Copy, Debug, Default)]
pub struct StatefulSetStrategy;

impl Strategy for StatefulSetStrategy {
    fn default(&self, obj: &mut Value) {
        default_replicated(obj);
    }

    fn validate(&self, obj: &Value) -> Vec<StatusCause> {
        let mut out = Vec::new();
        validate_workload(obj, &mut out);
        out
    }
}
