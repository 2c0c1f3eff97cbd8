//! ReplicationControllers: replicas and pod template defaults, and the `status.replicas`
//! field selector.

use serde_json::Value;

use super::Strategy;
use super::pod_template::default_replicated;

/// The strategy of core/v1 replicationcontrollers.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplicationControllerStrategy;

impl Strategy for ReplicationControllerStrategy {
    fn default(&self, obj: &mut Value) {
        default_replicated(obj);
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }
}
