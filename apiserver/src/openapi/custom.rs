//! The definitions of custom resources, from their CRD's `openAPIV3Schema`: named as upstream
//! names them (the group reversed: `stable.example.com` `v1` `CronTab` is
//! `com.example.stable.v1.CronTab`), with `apiVersion`, `kind` and `metadata` (a reference to
//! `ObjectMeta`) filled in and `x-kubernetes-group-version-kind` added.

use serde_json::{Value, json};

use super::definitions::{V3_REF_PREFIX, gvk_extension, list_schema};

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// The definitions custom resources reference.
pub const REFERENCED: &[&str] = &[OBJECT_META, "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"];

/// A custom kind's definition name.
///
/// ```
/// use kybernetes_apiserver::openapi::custom::definition_name;
/// assert_eq!(definition_name("stable.example.com", "v1", "CronTab"), "com.example.stable.v1.CronTab");
/// ```
pub fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// A custom kind's definition, from its version's schema (none: anything goes).
pub fn definition(group: &str, version: &str, kind: &str, schema: Option<&Value>) -> Value {
    let mut s = schema.cloned().unwrap_or_else(
        || json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true }),
    );
    if !s.is_object() {
        s = json!({ "type": "object" });
    }
    if s.get("properties").is_none_or(|p| !p.is_object()) {
        s["properties"] = json!({});
    }
    let props = &mut s["properties"];
    props["apiVersion"] = json!({
        "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values.",
        "type": "string",
    });
    props["kind"] = json!({
        "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to.",
        "type": "string",
    });
    props["metadata"] = json!({
        "description": "Standard object's metadata.",
        "allOf": [{ "$ref": format!("{V3_REF_PREFIX}{OBJECT_META}") }],
    });
    s["x-kubernetes-group-version-kind"] = gvk_extension(group, version, kind);
    s
}

/// A custom kind's list definition.
pub fn list_definition(group: &str, version: &str, kind: &str) -> Value {
    let item = format!("{V3_REF_PREFIX}{}", definition_name(group, version, kind));
    list_schema(group, version, kind, &item)
}
