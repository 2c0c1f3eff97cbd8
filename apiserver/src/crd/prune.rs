//! Pruning and defaulting of custom objects by their structural schema, as upstream's
//! apiextensions does on every write and on every read from storage:
//!
//! - pruning drops every field the schema does not specify, except under
//!   `x-kubernetes-preserve-unknown-fields: true`; `apiVersion`, `kind` and `metadata` stay at
//!   the root and in embedded resources;
//! - defaulting fills each missing property that has a `default`, and replaces a `null` with
//!   it; a `null` in a property that is not `nullable` and has no default is dropped.

use serde_json::{Map, Value};

use super::schema::FieldPath;

fn flag(schema: &Map<String, Value>, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

/// Drops the fields `schema` does not specify; returns their paths (`spec.foo`), for
/// `fieldValidation`.
pub fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    prune_node(schema, obj, &FieldPath::default(), true, &mut pruned);
    pruned
}

/// Drops the fields `schema` does not specify from a value that is not a resource (a
/// `default`), returning their paths.
pub fn prune_value(schema: &Value, v: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    prune_node(schema, v, &FieldPath::default(), false, &mut pruned);
    pruned
}

fn prune_node(
    schema: &Value,
    v: &mut Value,
    path: &FieldPath,
    is_resource: bool,
    pruned: &mut Vec<String>,
) {
    let Some(s) = schema.as_object() else { return };
    let is_resource = is_resource || flag(s, "x-kubernetes-embedded-resource");
    match v {
        Value::Object(m) => {
            let properties = s.get("properties").and_then(Value::as_object);
            let additional = s.get("additionalProperties").filter(|a| a.is_object());
            let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if is_resource && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let child_path = path.child(&k);
                let child_schema = properties.and_then(|p| p.get(&k)).or(additional);
                match (child_schema, m.get_mut(&k)) {
                    (Some(cs), Some(child)) => prune_node(cs, child, &child_path, false, pruned),
                    // Unknown fields under x-kubernetes-preserve-unknown-fields stay whole.
                    (None, Some(_)) if preserve => {}
                    (None, _) => {
                        m.remove(&k);
                        pruned.push(child_path.as_str().to_string());
                    }
                    (Some(_), None) => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = s.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_node(item_schema, item, &path.index(i), false, pruned);
                }
            }
        }
        _ => {}
    }
}

/// Applies the schema's defaults to `obj`.
pub fn default(schema: &Value, obj: &mut Value) {
    let Some(s) = schema.as_object() else { return };
    match obj {
        Value::Object(m) => {
            if let Some(properties) = s.get("properties").and_then(Value::as_object) {
                for (k, prop) in properties {
                    let Some(p) = prop.as_object() else { continue };
                    let current = m.get(k);
                    let is_null = current.is_some_and(Value::is_null);
                    match (current, p.get("default")) {
                        (None, Some(d)) => {
                            m.insert(k.clone(), d.clone());
                        }
                        (Some(_), Some(d)) if is_null && !flag(p, "nullable") => {
                            m.insert(k.clone(), d.clone());
                        }
                        (Some(_), None) if is_null && !flag(p, "nullable") => {
                            m.remove(k);
                        }
                        _ => {}
                    }
                }
            }
            let properties = s.get("properties").and_then(Value::as_object);
            let additional = s.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in m.iter_mut() {
                if let Some(cs) = properties.and_then(|p| p.get(k)).or(additional) {
                    default(cs, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = s.get("items") {
                for item in items {
                    default(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "size": {"type": "integer", "default": 1},
                "mode": {"type": "string", "default": "fast"},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer", "default": 80}}}},
            }},
        }})
    }

    #[test]
    fn unknown_fields_are_pruned_with_their_paths_except_where_preserved() {
        let mut obj = json!({"apiVersion": "example.com/v1", "kind": "W", "metadata": {"name": "w", "labels": {"a": "b"}},
            "spec": {"size": 2, "foo": 1, "extra": {"anything": {"x": 1}}, "items": [{"name": "a", "bar": true}]}, "top": 1});
        let pruned = prune(&schema(), &mut obj);
        assert_eq!(pruned, ["spec.foo", "spec.items[0].bar", "top"]);
        assert_eq!(obj["spec"]["extra"]["anything"]["x"], 1);
        assert_eq!(obj["metadata"]["labels"]["a"], "b");
    }

    #[test]
    fn defaults_fill_missing_fields_and_replace_nulls() {
        let mut obj = json!({"spec": {"size": null, "items": [{"name": "a"}]}});
        default(&schema(), &mut obj);
        assert_eq!(obj["spec"]["size"], 1);
        assert_eq!(obj["spec"]["mode"], "fast");
        assert_eq!(obj["spec"]["items"][0]["port"], 80);
    }
}
