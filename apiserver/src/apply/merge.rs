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
        (Some(Value::Array(mut l)), Value::Array(a)) => match &field.list {
            ListType::Set => {
                for item in a {
                    if !l.contains(item) {
                        l.push(item.clone());
                    }
                }
                Value::Array(l)
            }
            ListType::Map(keys)
                if !keys.is_empty()
                    && a.iter()
                        .chain(l.iter())
                        .all(|i| fieldpath::key_of(i, keys).is_some()) =>
            {
                for item in a {
                    let key = fieldpath::key_of(item, keys);
                    match l.iter().position(|i| fieldpath::key_of(i, keys) == key) {
                        Some(pos) => {
                            let current = std::mem::take(&mut l[pos]);
                            l[pos] = merge_value(Some(current), item, &item_field(field));
                        }
                        None => l.push(item.clone()),
                    }
                }
                Value::Array(l)
            }
            _ => applied.clone(),
        },
        _ => applied.clone(),
    }
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
