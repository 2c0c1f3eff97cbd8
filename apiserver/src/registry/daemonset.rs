//! DaemonSets: defaults (update strategy, history limit, pod template) and workload validation.

use kybernetes_core::status::StatusCause;
use serde_json::{Value, json};

use super::pod_template::{default_template, validate_workload};
use super::{Strategy, default_field, object_field};

/// The strategy of apps/v1 daemonsets.
#[derive(Clone, Copy, Debug, Default)]
pub struct DaemonSetStrategy;

impl Strategy for DaemonSetStrategy {
    fn default(&self, obj: &mut Value) {
        default_template(obj);
        default_daemon_set(obj);
    }

    fn validate(&self, obj: &Value) -> Vec<StatusCause> {
        let mut out = Vec::new();
        validate_workload(obj, &mut out);
        out
    }
}

/// Upstream's `SetDefaults_DaemonSet`: a rolling update of one pod at a time, ten revisions.
fn default_daemon_set(obj: &mut Value) {
    let Some(spec) = object_field(obj, "spec") else {
        return;
    };
    default_field(spec, "revisionHistoryLimit", json!(10));
    let strategy = spec.entry("updateStrategy").or_insert_with(|| json!({}));
    if let Some(s) = strategy.as_object_mut() {
        default_field(s, "type", json!("RollingUpdate"));
        if s.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            let ru = s.entry("rollingUpdate").or_insert_with(|| json!({}));
            if let Some(ru) = ru.as_object_mut() {
                default_field(ru, "maxUnavailable", json!(1));
                default_field(ru, "maxSurge", json!(0));
            }
        }
    }
}
