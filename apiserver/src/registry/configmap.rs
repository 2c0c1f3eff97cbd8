//! ConfigMaps: valid data keys.

use kybernetes_core::status::StatusCause;
use serde_json::Value;

use super::{Strategy, invalid};

/// The strategy of core/v1 configmaps.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConfigMapStrategy;

impl Strategy for ConfigMapStrategy {
    fn validate(&self, obj: &Value) -> Vec<StatusCause> {
        validate_data_keys(obj)
    }
}

/// Every key of `data`, `binaryData` and `stringData` must be a valid config key.
pub(crate) fn validate_data_keys(obj: &Value) -> Vec<StatusCause> {
    let mut out = Vec::new();
    for field in ["data", "binaryData", "stringData"] {
        if let Some(m) = obj.get(field).and_then(Value::as_object) {
            for k in m.keys() {
                let ok = !k.is_empty()
                    && k.len() <= 253
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    && k != "."
                    && k != ".."
                    && !k.starts_with("..");
                if !ok {
                    out.push(invalid(
                        &format!("{field}[{k}]"),
                        format!("Invalid value: {k:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name')"),
                    ));
                }
            }
        }
    }
    out
}
