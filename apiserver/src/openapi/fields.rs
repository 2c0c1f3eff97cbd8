//! Unknown fields of built-in objects, found against the kinds' OpenAPI definitions: what
//! upstream's strict JSON decoding into the Go types reports (`unknown field "spec.foo"`) and
//! what decoding drops. Paths are written as upstream writes them: fields and map keys joined
//! by `.`, list items as `[i]` (`spec.template.spec.containers[0].foo`).
//!
//! A definition with neither `properties` nor `additionalProperties` (`RawExtension`,
//! `FieldsV1`, apiextensions' `JSON`) holds any value, as its Go type does.

use serde_json::Value;

use super::Definitions;

/// Drops the fields of `obj` that the definition `type_name` (and the definitions it refers
/// to) do not declare, and returns their paths.
///
/// ```
/// use kybernetes_apiserver::openapi::{Definitions, fields};
/// let mut d = serde_json::json!({
///     "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "web" },
///     "spec": { "foo": 1, "template": { "spec": { "containers": [{ "name": "a", "bar": true }] } } },
/// });
/// let unknown = fields::prune_unknown(Definitions::builtin(), "io.k8s.api.apps.v1.Deployment", &mut d);
/// assert_eq!(unknown, ["spec.foo", "spec.template.spec.containers[0].bar"]);
/// assert!(d["spec"].get("foo").is_none());
/// ```
pub fn prune_unknown(defs: &Definitions, type_name: &str, obj: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(schema) = defs.get(type_name) {
        let mut path = String::new();
        walk(defs, schema, obj, &mut path, &mut out);
    }
    out
}

fn walk(
    defs: &Definitions,
    schema: &Value,
    value: &mut Value,
    path: &mut String,
    out: &mut Vec<String>,
) {
    // A dangling reference would be our bug, not the client's: accept the value.
    let Some(schema) = defs.resolve(schema) else {
        return;
    };
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = schema.get("properties") {
                let mut unknown = Vec::new();
                for (key, v) in map.iter_mut() {
                    let len = path.len();
                    push_key(path, key);
                    match props.get(key) {
                        Some(p) => walk(defs, p, v, path, out),
                        None => {
                            out.push(path.clone());
                            unknown.push(key.clone());
                        }
                    }
                    path.truncate(len);
                }
                for key in unknown {
                    map.remove(&key);
                }
            } else if let Some(values) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for (key, v) in map.iter_mut() {
                    let len = path.len();
                    push_key(path, key);
                    walk(defs, values, v, path, out);
                    path.truncate(len);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(defs, item, v, path, out);
                    path.truncate(len);
                }
            }
        }
        _ => {}
    }
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn prune(type_name: &str, mut v: Value) -> (Vec<String>, Value) {
        let unknown = prune_unknown(Definitions::builtin(), type_name, &mut v);
        (unknown, v)
    }

    #[test]
    fn known_fields_of_a_full_pod_pass() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "p", "labels": { "app": "web" }, "annotations": { "a": "b" },
                "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "uid": "u" }],
                "managedFields": [{ "manager": "m", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": { "f:spec": {} } }],
            },
            "spec": {
                "containers": [{
                    "name": "c", "image": "i",
                    "ports": [{ "containerPort": 80 }],
                    "resources": { "limits": { "cpu": "1" } },
                    "env": [{ "name": "A", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }],
                    "readinessProbe": { "httpGet": { "port": "http", "path": "/" } },
                }],
                "volumes": [{ "name": "v", "emptyDir": {} }],
            },
            "status": { "phase": "Running", "conditions": [{ "type": "Ready", "status": "True" }] },
        });
        let (unknown, after) = prune("io.k8s.api.core.v1.Pod", pod.clone());
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(after, pod);
    }

    #[test]
    fn unknown_fields_are_dropped_with_their_paths() {
        let (unknown, after) = prune(
            "io.k8s.api.core.v1.ConfigMap",
            json!({ "metadata": { "name": "c", "bogus": 1 }, "data": { "k": "v" }, "extra": {} }),
        );
        assert_eq!(unknown, ["extra", "metadata.bogus"]);
        assert_eq!(
            after,
            json!({ "metadata": { "name": "c" }, "data": { "k": "v" } })
        );
    }

    #[test]
    fn free_form_values_hold_anything() {
        let crd = json!({
            "spec": { "group": "g", "names": { "kind": "K", "plural": "ks" }, "scope": "Namespaced",
                "versions": [{ "name": "v1", "served": true, "storage": true, "schema": { "openAPIV3Schema": {
                    "type": "object", "x-kubernetes-preserve-unknown-fields": true,
                    "properties": { "spec": { "type": "object", "default": { "anything": [1, { "x": 2 }] } } },
                } } }] },
        });
        let (unknown, _) = prune(
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
            crd,
        );
        assert!(unknown.is_empty(), "{unknown:?}");
    }
}
