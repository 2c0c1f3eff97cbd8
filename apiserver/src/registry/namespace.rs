//! Namespaces: DNS-label names, the `kubernetes` finalizer, the `Active` phase, and deletion
//! held by `spec.finalizers` until the namespace controller empties the namespace.

use kybernetes_core::Clock;
use kybernetes_core::validation;
use serde_json::{Value, json};

use super::{Strategy, Subresource, default_field, object_field};

/// The strategy of core/v1 namespaces.
#[derive(Clone, Copy, Debug, Default)]
pub struct NamespaceStrategy;

impl Strategy for NamespaceStrategy {
    fn validate_name(&self, name: &str) -> Vec<String> {
        validation::is_dns1123_label(name)
    }

    fn default(&self, obj: &mut Value) {
        if let Some(spec) = object_field(obj, "spec") {
            default_field(spec, "finalizers", json!(["kubernetes"]));
        }
    }

    fn initial_status(&self, obj: &mut Value, _clock: &Clock) {
        obj["status"] = json!({ "phase": "Active" });
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &["status.phase"]
    }

    fn deletion_pending(&self, obj: &Value) -> bool {
        obj.pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    }

    fn subresource(&self, name: &str) -> Option<Subresource> {
        (name == "finalize").then_some(Subresource::Finalize)
    }
}
