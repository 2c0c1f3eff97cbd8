//! The structured merge of an applied configuration into the live object, and the removal of
//! fields an applier stopped applying.

use serde_json::{Map, Value};

use super::fieldpath::{self, PathElement};
use crate::patch::schema::{Field, ListType, Schema};

/// `applied` merged into `live`: objects field by field, keyed lists item by item, sets by
/// value; atomic lists and values are replaced.
pub fn merge(live: &Value, applied: &Value, schema: Schema<'_>) -> Value {
    let (Value::Object(l), Value::Object(a)) = (live, applied) else {
        return applied.clone();
    };
    Value::Object(merge_object(l.clone(), a, schema))
}

fn merge_object(
    mut live: Map<String, Value>,
    applied: &Map<String, Value>,
    schema: Schema<'_>,
) -> Map<String, Value> {
    for (k, av) in applied {
        let field = schema.field(k);
        let merged = merge_value(live.remove(k), av, &field);
        live.insert(k.clone(), merged);
    }
    live
}

fn merge_value(live: Option<Value>, applied: &Value, field: &Field<'_>) -> Value {
    match (live, applied) {
        (Some(Value::Object(l)), Value::Object(a)) if !field.atomic => {
            Value::Object(merge_object(l, a, field.schema))
        }
        (Some(Value::Array(l)), Value::Array(a)) => match &field.list {
            ListType::Set => Value::Array(merge_ordered(
                l,
                a,
                |v| Some(v.to_string()),
                |_, r| r.clone(),
            )),
            ListType::Map(keys)
                if !keys.is_empty()
                    && a.iter()
                        .chain(l.iter())
                        .all(|i| fieldpath::key_of(i, keys).is_some()) =>
            {
                let item = item_field(field);
                Value::Array(merge_ordered(
                    l,
                    a,
                    |v| fieldpath::key_of(v, keys),
                    |live, applied| merge_value(Some(live), applied, &item),
                ))
            }
            _ => applied.clone(),
        },
        _ => applied.clone(),
    }
}

/// Merges the items of an associative list in structured-merge-diff's order: items both sides
/// have come in the applied order, items only the live object has keep their place among
/// them, and new items come where the applied list puts them.
fn merge_ordered(
    live: Vec<Value>,
    applied: &[Value],
    id: impl Fn(&Value) -> Option<String>,
    merge_item: impl Fn(Value, &Value) -> Value,
) -> Vec<Value> {
    let live_ids: Vec<Option<String>> = live.iter().map(&id).collect();
    let applied_ids: Vec<Option<String>> = applied.iter().map(&id).collect();
    let mut live: Vec<Option<Value>> = live.into_iter().map(Some).collect();
    let in_applied = |i: &Option<String>| applied_ids.contains(i);
    let mut shared: std::collections::VecDeque<&Option<String>> = applied_ids
        .iter()
        .filter(|i| live_ids.contains(i))
        .collect();
    let mut emitted: Vec<&Option<String>> = Vec::new();
    let mut out = Vec::with_capacity(live.len() + applied.len());
    let (mut li, mut ri) = (0, 0);
    while li < live.len() || ri < applied.len() {
        if li < live.len() && ri < applied.len() {
            if live_ids[li] == applied_ids[ri] {
                if let Some(v) = live[li].take() {
                    out.push(merge_item(v, &applied[ri]));
                }
                if shared.front() == Some(&&applied_ids[ri]) {
                    shared.pop_front();
                }
                emitted.push(&applied_ids[ri]);
                li += 1;
                ri += 1;
                continue;
            }
            if in_applied(&live_ids[li]) && shared.front().is_some_and(|s| **s != live_ids[li]) {
                li += 1;
                continue;
            }
        }
        if li < live.len() {
            if !in_applied(&live_ids[li]) {
                if let Some(v) = live[li].take() {
                    out.push(v);
                }
                li += 1;
                continue;
            }
            if emitted.contains(&&live_ids[li]) {
                li += 1;
                continue;
            }
        }
        if ri < applied.len() {
            let rid = &applied_ids[ri];
            let current = live_ids
                .iter()
                .position(|l| l == rid)
                .and_then(|j| live[j].take());
            out.push(match current {
                Some(v) => merge_item(v, &applied[ri]),
                None => applied[ri].clone(),
            });
            if shared.front() == Some(&rid) {
                shared.pop_front();
            }
            emitted.push(rid);
            ri += 1;
        }
    }
    out
}

/// A keyed list's item, as a field: an object of the list's item schema.
fn item_field<'a>(list: &Field<'a>) -> Field<'a> {
    Field {
        schema: list.schema,
        list: ListType::Atomic,
        atomic: false,
    }
}

/// Removes the field at `path` from `obj`, if it is there.
pub fn remove(obj: &mut Value, path: &[PathElement]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match (first, obj) {
        (PathElement::Field(name), Value::Object(m)) => {
            if rest.is_empty() {
                m.remove(name);
            } else if let Some(child) = m.get_mut(name) {
                remove(child, rest);
            }
        }
        (PathElement::Key(key), Value::Array(items)) => {
            if rest.is_empty() {
                items.retain(|i| !fieldpath::matches_key(i, key));
            } else if let Some(item) = items.iter_mut().find(|i| fieldpath::matches_key(i, key)) {
                remove(item, rest);
            }
        }
        (PathElement::Value(v), Value::Array(items)) => {
            if let Ok(v) = serde_json::from_str::<Value>(v) {
                items.retain(|i| *i != v);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn applied_containers_merge_into_live_ones_by_name() {
        let live = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:1", "imagePullPolicy": "Always"},
            {"name": "b", "image": "b:1"}
        ]}}}});
        let applied = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a:2"}]}}}});
        let out = merge(&live, &applied, Schema::for_kind("apps", "Deployment"));
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "a", "image": "a:2", "imagePullPolicy": "Always"}, {"name": "b", "image": "b:1"}])
        );
    }

    #[test]
    fn applied_order_wins_for_shared_items_and_live_only_items_keep_their_place() {
        let live = json!({"spec": {"containers": [
            {"name": "a"}, {"name": "server"}, {"name": "b"}
        ]}});
        let applied =
            json!({"spec": {"containers": [{"name": "b"}, {"name": "new"}, {"name": "a"}]}});
        let out = merge(&live, &applied, Schema::for_kind("", "Pod"));
        let names: Vec<&str> = out["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["server", "b", "new", "a"]);
    }

    #[test]
    fn removing_a_keyed_item_removes_it_whole() {
        let mut obj = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        remove(
            &mut obj,
            &[
                PathElement::Field("spec".into()),
                PathElement::Field("containers".into()),
                PathElement::Key("{\"name\":\"a\"}".into()),
            ],
        );
        assert_eq!(obj, json!({"spec": {"containers": [{"name": "b"}]}}));
    }
}
