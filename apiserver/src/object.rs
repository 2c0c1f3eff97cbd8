//! Helpers over objects as JSON: metadata access, and the store encoding (objects are stored
//! without `resourceVersion`; it is filled in from the store revision on every read, as
//! upstream does with etcd's `mod_revision`).

use std::collections::BTreeMap;

use bytes::Bytes;
use kybernetes_core::ApiError;
use kybernetes_store::KeyValue;
use serde_json::{Map, Value, json};

/// Reads `metadata.<field>` as a string.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// Mutable `metadata`, created if missing.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let map = match obj.as_object_mut() {
        Some(m) => m,
        None => unreachable!("object was just made an object"),
    };
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    match meta.as_object_mut() {
        Some(m) => m,
        None => unreachable!("metadata was just made an object"),
    }
}

/// `metadata.labels` as a map.
pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    string_map(obj.get("metadata").and_then(|m| m.get("labels")))
}

/// `metadata.annotations` as a map.
pub fn annotations(obj: &Value) -> BTreeMap<String, String> {
    string_map(obj.get("metadata").and_then(|m| m.get("annotations")))
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata.finalizers`.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Sets `metadata.finalizers`, removing the field when empty.
pub fn set_finalizers(obj: &mut Value, fins: &[String]) {
    let meta = meta_mut(obj);
    if fins.is_empty() {
        meta.remove("finalizers");
    } else {
        meta.insert("finalizers".into(), json!(fins));
    }
}

/// Decodes a stored value and sets `metadata.resourceVersion` from its revision.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    decode_at(&kv.value, kv.mod_revision)
}

/// Decodes stored bytes and sets `metadata.resourceVersion` to `rv`.
pub fn decode_at(bytes: &[u8], rv: i64) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::internal(format!("stored object is not valid JSON: {e}")))?;
    meta_mut(&mut v).insert("resourceVersion".into(), json!(rv.to_string()));
    Ok(v)
}

/// Encodes an object for the store (without `resourceVersion`).
pub fn encode(obj: &Value) -> Result<Bytes, ApiError> {
    let mut copy = obj.clone();
    meta_mut(&mut copy).remove("resourceVersion");
    serde_json::to_vec(&copy)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("cannot encode object: {e}")))
}

/// Everything but `metadata` and `status`: what a change of bumps `generation`.
pub fn spec_part(obj: &Value) -> Value {
    let mut m = obj.as_object().cloned().unwrap_or_default();
    m.remove("metadata");
    m.remove("status");
    m.remove("kind");
    m.remove("apiVersion");
    Value::Object(m)
}

/// Resolves a simple JSON path like `.spec.replicas`.
pub fn path_get<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.trim_start_matches('.')
        .split('.')
        .try_fold(obj, |v, seg| v.get(seg))
}

/// Sets a simple JSON path like `.spec.replicas`, creating objects on the way.
pub fn path_set(obj: &mut Value, path: &str, value: Value) {
    let segs: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    let mut cur = obj;
    for (i, seg) in segs.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        if i == segs.len() - 1 {
            map.insert(seg.to_string(), value);
            return;
        }
        cur = map.entry(seg.to_string()).or_insert_with(|| json!({}));
    }
}

/// The `PartialObjectMetadata` form of an object (metadata only), served when a client sends
/// `Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1`.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}
