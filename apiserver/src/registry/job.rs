//! Jobs: pod template defaults and the `status.successful` field selector.

use serde_json::Value;

use super::Strategy;
use super::pod_template::default_template;

/// The strategy of batch/v1 jobs.
#[derive(Clone, Copy, Debug, Default)]
pub struct JobStrategy;

impl Strategy for JobStrategy {
    fn default(&self, obj: &mut Value) {
        default_template(obj);
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &["status.successful"]
    }
}
