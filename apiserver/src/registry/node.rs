//! Nodes: the `spec.unschedulable` field selector.

use super::Strategy;

/// The strategy of core/v1 nodes.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeStrategy;

impl Strategy for NodeStrategy {
    fn field_selectors(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }
}
