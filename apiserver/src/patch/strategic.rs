//! Strategic merge patch (`application/strategic-merge-patch+json`), as upstream's
//! `strategicpatch` applies it on the server: maps merge key by key and `null` deletes a key;
//! lists with a merge key merge item by item, primitive lists with the merge strategy merge as
//! sets, and every other list is replaced. The directives:
//!
//! - `$patch: replace` (the map or list replaces the original), `$patch: delete` (the map, or
//!   the list item with this key, is deleted), `$patch: merge` (the default);
//! - `$retainKeys: [...]`: keys of the original map not listed are cleared;
//! - `$deleteFromPrimitiveList/<field>: [...]`: values removed from a primitive list;
//! - `$setElementOrder/<field>: [...]`: the order of the merged list.

use kybernetes_core::ApiError;
use serde_json::{Map, Value};

use super::schema::{ListType, Schema};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

/// Applies a strategic merge patch to `original`, with the merge rules of `schema`.
///
/// ```
/// use kybernetes_apiserver::patch::{schema::Schema, strategic};
/// use serde_json::json;
/// let pod = json!({"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}});
/// let patch = json!({"spec": {"containers": [{"name": "b", "image": "b:2"}]}});
/// let out = strategic::apply(&pod, &patch, Schema::for_kind("", "Pod")).unwrap();
/// assert_eq!(out["spec"]["containers"][0]["image"], "a:1");
/// assert_eq!(out["spec"]["containers"][1]["image"], "b:2");
/// ```
pub fn apply(original: &Value, patch: &Value, schema: Schema<'_>) -> Result<Value, ApiError> {
    let Value::Object(patch) = patch else {
        return Err(bad("the strategic merge patch must be a JSON object"));
    };
    let original = match original {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    Ok(merge_map(original, patch, schema)?.map_or(Value::Object(Map::new()), Value::Object))
}

/// Merges `patch` into `original`; `None` when the patch deletes the whole map.
fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    schema: Schema<'_>,
) -> Result<Option<Map<String, Value>>, ApiError> {
    match patch.get(PATCH) {
        None => {}
        Some(Value::String(d)) if d == "merge" => {}
        Some(Value::String(d)) if d == "replace" => {
            let mut rest = patch.clone();
            rest.remove(PATCH);
            return Ok(Some(strip_directives(rest, schema)?));
        }
        Some(Value::String(d)) if d == "delete" => return Ok(None),
        Some(other) => {
            return Err(bad(format!(
                "invalid $patch directive {other}: must be replace, delete or merge"
            )));
        }
    }
    if let Some(keys) = patch.get(RETAIN_KEYS) {
        let keys = string_list(keys, RETAIN_KEYS)?;
        original.retain(|k, _| keys.iter().any(|r| r == k));
    }
    // Deletions from primitive lists happen before the merge, as upstream does.
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let Value::Array(remove) = v else {
                return Err(bad(format!("{k} must be a list")));
            };
            if let Some(Value::Array(items)) = original.get_mut(field) {
                items.retain(|i| !remove.contains(i));
            }
        }
    }
    for (k, pv) in patch {
        if k == PATCH || k == RETAIN_KEYS || k.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            original.remove(k);
            continue;
        }
        let field = schema.field(k);
        let merged = match (original.remove(k), pv) {
            (Some(Value::Object(o)), Value::Object(p)) if !field.atomic => {
                merge_map(o, p, field.schema)?.map(Value::Object)
            }
            (None, Value::Object(p)) => merge_map(Map::new(), p, field.schema)?.map(Value::Object),
            (Some(Value::Array(o)), Value::Array(p)) => {
                Some(Value::Array(merge_list(o, p, &field.list, field.schema)?))
            }
            (None, Value::Array(p)) => Some(Value::Array(merge_list(
                Vec::new(),
                p,
                &field.list,
                field.schema,
            )?)),
            (_, p) => Some(p.clone()),
        };
        if let Some(v) = merged {
            original.insert(k.clone(), v);
        }
    }
    for (k, order) in patch {
        if let Some(field) = k.strip_prefix(SET_ELEMENT_ORDER) {
            let Value::Array(order) = order else {
                return Err(bad(format!("{k} must be a list")));
            };
            let list = schema.field(field).list;
            if let Some(Value::Array(items)) = original.get_mut(field) {
                let before = std::mem::take(items);
                *items = set_element_order(before, order, &list);
            }
        }
    }
    Ok(Some(original))
}

fn string_list(v: &Value, what: &str) -> Result<Vec<String>, ApiError> {
    v.as_array()
        .and_then(|a| a.iter().map(|s| s.as_str().map(String::from)).collect())
        .ok_or_else(|| bad(format!("{what} must be a list of strings")))
}

/// A patch value with its directives applied against nothing: what a new field or list item
/// becomes.
fn strip_directives(
    patch: Map<String, Value>,
    schema: Schema<'_>,
) -> Result<Map<String, Value>, ApiError> {
    let mut clean = patch;
    clean.remove(PATCH);
    Ok(merge_map(Map::new(), &clean, schema)?.unwrap_or_default())
}

fn directive(item: &Value) -> Option<&str> {
    item.get(PATCH).and_then(Value::as_str)
}

fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    list: &ListType,
    schema: Schema<'_>,
) -> Result<Vec<Value>, ApiError> {
    // `{"$patch": "replace"}` among the items: the rest of the patch list is the new list.
    if patch.iter().any(|i| directive(i) == Some("replace")) {
        let rest: Vec<Value> = patch
            .iter()
            .filter(|i| directive(i) != Some("replace"))
            .cloned()
            .collect();
        return merge_list(Vec::new(), &rest, list, schema);
    }
    match list {
        ListType::Set => {
            let mut out = original;
            for item in patch {
                if item.is_object() {
                    return Err(bad(
                        "a primitive list may only carry the $patch: replace directive",
                    ));
                }
                if !out.contains(item) {
                    out.push(item.clone());
                }
            }
            Ok(out)
        }
        ListType::Map(keys) if !keys.is_empty() => {
            merge_keyed_list(original, patch, &keys[0], schema)
        }
        _ => patch
            .iter()
            .filter(|i| directive(i) != Some("delete"))
            .map(|i| match i {
                Value::Object(m) => strip_directives(m.clone(), schema).map(Value::Object),
                other => Ok(other.clone()),
            })
            .collect(),
    }
}

fn merge_keyed_list(
    mut original: Vec<Value>,
    patch: &[Value],
    key: &str,
    schema: Schema<'_>,
) -> Result<Vec<Value>, ApiError> {
    for item in patch {
        let Value::Object(p) = item else {
            return Err(bad(format!(
                "list items merged by {key:?} must be objects, found {item}"
            )));
        };
        let Some(k) = p.get(key) else {
            return Err(bad(format!(
                "map: {item} does not contain declared merge key: {key}"
            )));
        };
        let pos = original.iter().position(|o| o.get(key) == Some(k));
        if directive(item) == Some("delete") {
            if let Some(i) = pos {
                original.remove(i);
            }
            continue;
        }
        match pos {
            Some(i) => {
                let current = match original.remove(i) {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                if let Some(m) = merge_map(current, p, schema)? {
                    original.insert(i, Value::Object(m));
                }
            }
            None => {
                if let Some(m) = merge_map(Map::new(), p, schema)? {
                    original.push(Value::Object(m));
                }
            }
        }
    }
    Ok(original)
}

/// Orders a merged list as `$setElementOrder` says. Items the patch names come in its order;
/// items only the server has keep their place relative to them, as upstream's
/// `normalizeElementOrder` does.
fn set_element_order(items: Vec<Value>, order: &[Value], list: &ListType) -> Vec<Value> {
    let key = match list {
        ListType::Map(keys) if !keys.is_empty() => Some(keys[0].as_str()),
        _ => None,
    };
    let identity = |v: &Value| -> Value {
        match key {
            Some(k) => v.get(k).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        }
    };
    let wanted: Vec<Value> = order
        .iter()
        .map(|o| match key {
            Some(k) => o.get(k).cloned().unwrap_or(Value::Null),
            None => o.clone(),
        })
        .collect();
    let server_index = |v: &Value| items.iter().position(|i| identity(i) == identity(v));
    let mut named: Vec<&Value> = wanted
        .iter()
        .filter_map(|w| items.iter().find(|i| identity(i) == *w))
        .collect();
    let server_only: Vec<&Value> = items
        .iter()
        .filter(|i| !wanted.contains(&identity(i)))
        .collect();
    let mut out = Vec::with_capacity(items.len());
    let mut server_only = server_only.into_iter().peekable();
    named.reverse();
    while let Some(next) = named.pop() {
        let at = server_index(next);
        // As upstream's `mergeSortedSlice`: a named item goes first only when both have a
        // place in the server's list and it comes before the server-only item there.
        while let Some(s) = server_only.peek() {
            match (server_index(s), at) {
                (Some(si), Some(ni)) if ni < si => break,
                _ => {
                    out.push((*s).clone());
                    server_only.next();
                }
            }
        }
        out.push(next.clone());
    }
    out.extend(server_only.cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(original: Value, patch: Value) -> Value {
        apply(&original, &patch, Schema::for_kind("", "Pod")).unwrap()
    }

    fn deployment(original: Value, patch: Value) -> Value {
        apply(&original, &patch, Schema::for_kind("apps", "Deployment")).unwrap()
    }

    #[test]
    fn containers_merge_by_name_and_keep_the_others() {
        let out = pod(
            json!({"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}}),
            json!({"spec": {"containers": [{"name": "a", "image": "a:2"}, {"name": "c", "image": "c:1"}]}}),
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "a", "image": "a:2"}, {"name": "b", "image": "b:1"}, {"name": "c", "image": "c:1"}])
        );
    }

    #[test]
    fn null_deletes_a_map_key() {
        let out = pod(
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
            json!({"metadata": {"labels": {"a": null}}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
    }

    #[test]
    fn lists_without_a_merge_key_are_replaced() {
        let out = pod(
            json!({"spec": {"containers": [{"name": "a", "args": ["x", "y"]}], "tolerations": [{"key": "k"}]}}),
            json!({"spec": {"containers": [{"name": "a", "args": ["z"]}], "tolerations": [{"key": "j"}]}}),
        );
        assert_eq!(out["spec"]["containers"][0]["args"], json!(["z"]));
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "j"}]));
    }

    #[test]
    fn patch_delete_removes_the_keyed_item() {
        let out = pod(
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
        );
        assert_eq!(out["spec"]["containers"], json!([{"name": "b"}]));
    }

    #[test]
    fn patch_replace_in_a_list_replaces_it() {
        let out = pod(
            json!({"spec": {"containers": [{"name": "a", "image": "a"}, {"name": "b"}]}}),
            json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "c"}]}}),
        );
        assert_eq!(out["spec"]["containers"], json!([{"name": "c"}]));
    }

    #[test]
    fn patch_replace_on_a_map_replaces_it() {
        let out = pod(
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
            json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"c": "3"}));
    }

    #[test]
    fn patch_delete_on_a_map_removes_it() {
        let out = pod(
            json!({"metadata": {"labels": {"a": "1"}, "name": "p"}}),
            json!({"metadata": {"labels": {"$patch": "delete"}}}),
        );
        assert_eq!(out["metadata"], json!({"name": "p"}));
    }

    #[test]
    fn finalizers_merge_as_a_set_and_delete_from_primitive_list_removes_values() {
        let out = pod(
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"finalizers": ["b", "c"], "$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
    }

    #[test]
    fn set_element_order_reorders_merged_containers() {
        let out = pod(
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}}),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}],
                "containers": [{"name": "c", "image": "c:2"}]
            }}),
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "c", "image": "c:2"}, {"name": "a"}, {"name": "b"}])
        );
    }

    #[test]
    fn set_element_order_places_server_only_items_by_their_server_position() {
        // `server` sat before `b` on the server, and `b` leads the patch's order.
        let out = pod(
            json!({"spec": {"containers": [{"name": "a"}, {"name": "server"}, {"name": "b"}]}}),
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}),
        );
        let names: Vec<&str> = out["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["server", "b", "a"]);
    }

    #[test]
    fn set_element_order_orders_a_primitive_merge_list() {
        let out = pod(
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"$setElementOrder/finalizers": ["c", "b", "a"], "finalizers": ["c"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "b", "a"]));
    }

    #[test]
    fn null_inside_a_merged_item_deletes_that_field() {
        let out = pod(
            json!({"spec": {"containers": [{"name": "a", "image": "a:1", "workingDir": "/w"}]}}),
            json!({"spec": {"containers": [{"name": "a", "workingDir": null}]}}),
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "a", "image": "a:1"}])
        );
    }

    #[test]
    fn retain_keys_on_a_volume_switches_its_source() {
        let out = pod(
            json!({"spec": {"volumes": [{"name": "v", "hostPath": {"path": "/x"}}, {"name": "w", "emptyDir": {}}]}}),
            json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["emptyDir", "name"], "emptyDir": {}}]}}),
        );
        assert_eq!(
            out["spec"]["volumes"],
            json!([{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}])
        );
    }

    #[test]
    fn an_explicit_merge_directive_merges() {
        let out = pod(
            json!({"metadata": {"labels": {"a": "1"}}}),
            json!({"metadata": {"labels": {"$patch": "merge", "b": "2"}}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"a": "1", "b": "2"}));
    }

    #[test]
    fn an_unknown_directive_is_a_bad_request() {
        let err = apply(
            &json!({}),
            &json!({"metadata": {"$patch": "explode"}}),
            Schema::for_kind("", "Pod"),
        )
        .unwrap_err();
        assert_eq!(err.code, 400);
    }

    #[test]
    fn retain_keys_clears_the_other_union_members() {
        let out = deployment(
            json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn env_merges_by_name_inside_a_merged_container() {
        let out = deployment(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "3"}]}]}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"name": "X", "value": "1"}, {"name": "Y", "value": "3"}])
        );
    }

    #[test]
    fn new_items_lose_their_directives() {
        let out = pod(
            json!({"spec": {}}),
            json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}], "$setElementOrder/env": [{"name": "X"}]}]}}),
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "a", "env": [{"name": "X", "value": "1"}]}])
        );
    }

    #[test]
    fn an_item_without_its_merge_key_is_rejected() {
        let err = apply(
            &json!({"spec": {"containers": []}}),
            &json!({"spec": {"containers": [{"image": "x"}]}}),
            Schema::for_kind("", "Pod"),
        )
        .unwrap_err();
        assert_eq!(err.code, 400);
        assert!(err.message.contains("merge key"), "{}", err.message);
    }

    #[test]
    fn service_ports_merge_by_port() {
        let out = apply(
            &json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}}),
            &json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}),
            Schema::for_kind("", "Service"),
        )
        .unwrap();
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "name": "http", "targetPort": 8080}, {"port": 443, "name": "https"}])
        );
    }
}
