//! DaemonSets: pod template defaults and workload validation.

use kybernetes_core::status::StatusCause;
use serde_json::Value;

use super::Strategy;
use super::pod_template::{default_template, validate_workload};

/// The strategy of apps/v1 daemonsets.
#[derive(Clone, Copy, Debug, Default)]
pub struct DaemonSetStrategy;

impl Strategy for DaemonSetStrategy {
    fn default(&self, obj: &mut Value) {
        default_template(obj);
    }

    fn validate(&self, obj: &Value) -> Vec<StatusCause> {
        let mut out = Vec::new();
        validate_workload(obj, &mut out);
        out
    }
}
