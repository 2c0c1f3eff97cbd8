//! Nodes: the `spec.unschedulable` field selector and `nodes/proxy`.

use super::{ProxyKind, Strategy, Subresource};

/// The strategy of core/v1 nodes.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeStrategy;

impl Strategy for NodeStrategy {
    fn field_selectors(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }

    fn resets_status_on_create(&self) -> bool {
        false
    }

    fn subresource(&self, name: &str) -> Option<Subresource> {
        (name == "proxy").then_some(Subresource::Proxy(ProxyKind::Node))
    }
}
