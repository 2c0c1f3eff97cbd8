//! Secrets: `stringData` folded into `data`, the `Opaque` type, valid data keys and the `type`
//! field selector.

use kybernetes_core::status::StatusCause;
use serde_json::{Value, json};

use super::Strategy;
use super::configmap::validate_data_keys;

/// The strategy of core/v1 secrets.
#[derive(Clone, Copy, Debug, Default)]
pub struct SecretStrategy;

impl Strategy for SecretStrategy {
    fn default(&self, obj: &mut Value) {
        fold_string_data(obj);
        // Upstream's SetDefaults_Secret: an empty type is Opaque, with or without stringData
        // (kubectl's `create secret generic` sends none).
        if let Some(map) = obj.as_object_mut()
            && map
                .get("type")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            map.insert("type".into(), json!("Opaque"));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<StatusCause> {
        validate_data_keys(obj)
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &["type"]
    }
}

/// Upstream merges `stringData` into `data` (base64-encoded) and never stores `stringData`.
fn fold_string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let Some(Value::Object(string_data)) = map.remove("stringData") else {
        return;
    };
    let data = map.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    if let Some(data) = data.as_object_mut() {
        for (k, v) in string_data {
            if let Some(s) = v.as_str() {
                data.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(s)),
                );
            }
        }
    }
}
