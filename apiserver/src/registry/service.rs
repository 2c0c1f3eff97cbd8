//! Services: DNS-label names, upstream's defaults, port validation, and ClusterIP and
//! NodePort allocation around the store writes.

use std::sync::Arc;

use kybernetes_core::ApiError;
use kybernetes_core::status::StatusCause;
use kybernetes_core::validation;
use serde_json::{Value, json};

use super::{ProxyKind, Strategy, Subresource, default_field, invalid, object_field, required};
use crate::service_alloc::ServiceAllocator;

/// The strategy of core/v1 services.
#[derive(Clone, Debug)]
pub struct ServiceStrategy {
    allocator: Arc<ServiceAllocator>,
}

impl ServiceStrategy {
    /// A strategy allocating from `allocator`.
    pub fn new(allocator: Arc<ServiceAllocator>) -> Self {
        ServiceStrategy { allocator }
    }
}

#[async_trait::async_trait]
impl Strategy for ServiceStrategy {
    fn validate_name(&self, name: &str) -> Vec<String> {
        validation::is_dns1123_label(name)
    }

    fn subresource(&self, name: &str) -> Option<Subresource> {
        (name == "proxy").then_some(Subresource::Proxy(ProxyKind::Service))
    }

    fn default(&self, obj: &mut Value) {
        let Some(spec) = object_field(obj, "spec") else {
            return;
        };
        default_field(spec, "type", json!("ClusterIP"));
        default_field(spec, "sessionAffinity", json!("None"));
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                default_field(p, "protocol", json!("TCP"));
                if let Some(port) = p.get("port").cloned() {
                    default_field(p, "targetPort", port);
                }
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<StatusCause> {
        let mut out = Vec::new();
        let spec = obj.get("spec");
        let ty = spec
            .and_then(|s| s.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP");
        let headless = spec
            .and_then(|s| s.get("clusterIP"))
            .and_then(Value::as_str)
            == Some("None");
        let ports = spec.and_then(|s| s.get("ports")).and_then(Value::as_array);
        if ty != "ExternalName" && !headless && ports.is_none_or(|p| p.is_empty()) {
            out.push(required("spec.ports"));
        }
        for (i, p) in ports.into_iter().flatten().enumerate() {
            match p.get("port").and_then(Value::as_i64) {
                Some(n) if (1..=65535).contains(&n) => {}
                Some(n) => out.push(invalid(
                    &format!("spec.ports[{i}].port"),
                    format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
                )),
                None => out.push(required(&format!("spec.ports[{i}].port"))),
            }
        }
        out
    }

    fn delete_returns_object(&self) -> bool {
        true
    }

    fn before_store_create(&self, obj: &mut Value) -> Result<(), ApiError> {
        self.allocator.on_create(obj)
    }

    fn create_abandoned(&self, obj: &Value) {
        self.allocator.on_delete(obj);
    }

    fn before_store_update(&self, old: &Value, new: &mut Value) -> Result<(), ApiError> {
        self.allocator.on_update(old, new)
    }

    fn update_abandoned(&self, old: &Value, new: &Value) {
        self.allocator.release_added(old, new);
    }

    async fn after_store_delete(&self, obj: &Value) -> Result<(), ApiError> {
        self.allocator.on_delete(obj);
        Ok(())
    }
}
