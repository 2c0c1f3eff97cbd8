//! Events (core/v1 and events.k8s.io/v1): path-segment names and the field selectors that
//! `kubectl describe` uses.

use kybernetes_core::validation;

use super::Strategy;

/// The strategy of events in both API groups.
#[derive(Clone, Copy, Debug, Default)]
pub struct EventStrategy;

impl Strategy for EventStrategy {
    fn validate_name(&self, name: &str) -> Vec<String> {
        validation::validate_name(validation::NameRule::PathSegment, name)
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "regarding.kind",
            "regarding.name",
            "regarding.namespace",
            "regarding.uid",
        ]
    }
}
