//! `StorageObjectInUseProtection`: new claims and volumes get the finalizer that the PVC and
//! PV protection controllers remove once nothing uses them, as upstream's plugin.

use kybernetes_core::ApiError;
use kybernetes_core::persistent_volume::{PV_PROTECTION_FINALIZER, PVC_PROTECTION_FINALIZER};
use serde_json::{Value, json};

use super::{Admission, AdmissionAttributes, Operation};

/// Upstream's `StorageObjectInUseProtection` admission plugin: adds
/// `kubernetes.io/pvc-protection` to every new PersistentVolumeClaim and
/// `kubernetes.io/pv-protection` to every new PersistentVolume.
#[derive(Clone, Copy, Debug, Default)]
pub struct StorageObjectInUseProtection;

#[async_trait::async_trait]
impl Admission for StorageObjectInUseProtection {
    fn name(&self) -> &str {
        "StorageObjectInUseProtection"
    }

    async fn admit(&self, a: &AdmissionAttributes<'_>, obj: &mut Value) -> Result<(), ApiError> {
        if a.operation != Operation::Create
            || a.subresource.is_some()
            || !a.resource.group.is_empty()
        {
            return Ok(());
        }
        let finalizer = match a.resource.plural.as_str() {
            "persistentvolumeclaims" => PVC_PROTECTION_FINALIZER,
            "persistentvolumes" => PV_PROTECTION_FINALIZER,
            _ => return Ok(()),
        };
        let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        let finalizers = meta.entry("finalizers").or_insert_with(|| json!([]));
        if !finalizers.is_array() {
            *finalizers = json!([]);
        }
        if let Some(list) = finalizers.as_array_mut()
            && !list.iter().any(|f| f.as_str() == Some(finalizer))
        {
            list.push(json!(finalizer));
        }
        Ok(())
    }
}
