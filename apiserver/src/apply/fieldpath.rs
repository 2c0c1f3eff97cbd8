//! Field paths and field sets, as structured-merge-diff names the parts of an object that a
//! manager owns, and their `FieldsV1` encoding in `managedFields`:
//! `{"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{}}}}}`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use crate::patch::schema::{Field, ListType, Schema};

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A field of an object (`f:name`).
    Field(String),
    /// An item of a keyed list, by its key fields as a JSON object with sorted keys
    /// (`k:{"name":"nginx"}`).
    Key(String),
    /// An item of a set, by its JSON value (`v:"a"`).
    Value(String),
}

/// A path from the object's root.
pub type Path = Vec<PathElement>;

/// The fields a manager owns.
pub type FieldSet = BTreeSet<Path>;

/// Metadata the server owns: never part of anyone's field set (upstream's `stripMeta`).
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "selfLink",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Every leaf of `obj` (scalars, atomic values, empty objects, list items by key or value)
/// with its value, except `apiVersion`, `kind` and server-owned metadata. Keyed list items
/// and set items are leaves too (their value is `null`: only their presence counts).
pub fn leaves(obj: &Value, schema: Schema<'_>) -> BTreeMap<Path, Value> {
    let mut out = BTreeMap::new();
    let Value::Object(root) = obj else {
        return out;
    };
    let mut path = Vec::new();
    for (k, v) in root {
        if k == "apiVersion" || k == "kind" {
            continue;
        }
        path.push(PathElement::Field(k.clone()));
        root_entry(k, v, &schema.field(k), &mut path, &mut out);
        path.pop();
    }
    out
}

/// The leaves of the root field `k` (already on `path`), with metadata the server owns left
/// out.
fn root_entry(
    k: &str,
    v: &Value,
    field: &Field<'_>,
    path: &mut Path,
    out: &mut BTreeMap<Path, Value>,
) {
    if k == "metadata"
        && let Value::Object(meta) = v
    {
        for (mk, mv) in meta {
            if SERVER_METADATA.contains(&mk.as_str()) {
                continue;
            }
            path.push(PathElement::Field(mk.clone()));
            walk(mv, &field.schema.field(mk), path, out);
            path.pop();
        }
        return;
    }
    walk(v, field, path, out);
}

fn walk(v: &Value, field: &Field<'_>, path: &mut Path, out: &mut BTreeMap<Path, Value>) {
    match v {
        Value::Null => {}
        Value::Object(m) if !field.atomic && !m.is_empty() => {
            for (k, child) in m {
                path.push(PathElement::Field(k.clone()));
                walk(child, &field.schema.field(k), path, out);
                path.pop();
            }
        }
        Value::Array(items) => match &field.list {
            ListType::Set => {
                for item in items {
                    path.push(PathElement::Value(item.to_string()));
                    out.insert(path.clone(), Value::Null);
                    path.pop();
                }
            }
            ListType::Map(keys)
                if !keys.is_empty() && items.iter().all(|i| key_of(i, keys).is_some()) =>
            {
                for item in items {
                    if let Some(key) = key_of(item, keys) {
                        walk_keyed_item(item, key, field, path, out);
                    }
                }
            }
            _ => {
                out.insert(path.clone(), v.clone());
            }
        },
        _ => {
            out.insert(path.clone(), v.clone());
        }
    }
}

/// The leaves of one item of the keyed list `field` at `path`: the item itself, by `key`, and
/// its fields.
fn walk_keyed_item(
    item: &Value,
    key: String,
    field: &Field<'_>,
    path: &mut Path,
    out: &mut BTreeMap<Path, Value>,
) {
    path.push(PathElement::Key(key));
    out.insert(path.clone(), Value::Null);
    if let Value::Object(m) = item {
        for (k, child) in m {
            path.push(PathElement::Field(k.clone()));
            walk(child, &field.schema.field(k), path, out);
            path.pop();
        }
    }
    path.pop();
}

/// The leaves an update changed, as comparing every leaf of the old and the new object finds
/// them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangedLeaves {
    /// Leaves of the new object that the old one lacks or holds with another value.
    pub changed: FieldSet,
    /// Leaves of the old object that the new one lacks.
    pub removed: FieldSet,
}

impl ChangedLeaves {
    /// Adds what comparing the leaves `before` and `after` of one subtree finds.
    fn compare(&mut self, before: BTreeMap<Path, Value>, after: BTreeMap<Path, Value>) {
        for p in before.keys() {
            if !after.contains_key(p) {
                self.removed.insert(p.clone());
            }
        }
        for (p, v) in after {
            if before.get(&p) != Some(&v) {
                self.changed.insert(p);
            }
        }
    }
}

/// The leaves (as [`leaves`] names them) that turning `old` into `new` added, changed or
/// removed. It walks both objects side by side and passes over every subtree that is the same
/// in both, so a small change to a large object costs the path to it rather than two walks of
/// every leaf; where the shapes differ (a value changed type, a keyed list lost its keys or
/// repeats one) it compares that subtree's leaves.
pub fn changed_leaves(old: &Value, new: &Value, schema: Schema<'_>) -> ChangedLeaves {
    let mut out = ChangedLeaves::default();
    let empty = Map::new();
    let old_root = old.as_object().unwrap_or(&empty);
    let new_root = new.as_object().unwrap_or(&empty);
    let mut path = Vec::new();
    for k in union_keys(old_root, new_root) {
        if k == "apiVersion" || k == "kind" {
            continue;
        }
        let (o, n) = (old_root.get(k), new_root.get(k));
        if o == n {
            continue;
        }
        let field = schema.field(k);
        path.push(PathElement::Field(k.clone()));
        match (o, n) {
            (Some(Value::Object(om)), Some(Value::Object(nm))) if k == "metadata" => {
                for mk in union_keys(om, nm) {
                    if SERVER_METADATA.contains(&mk.as_str()) {
                        continue;
                    }
                    path.push(PathElement::Field(mk.clone()));
                    diff(
                        om.get(mk),
                        nm.get(mk),
                        &field.schema.field(mk),
                        &mut path,
                        &mut out,
                    );
                    path.pop();
                }
            }
            _ => compare_leaves(o, n, &mut path, &mut out, |v, path, leaves| {
                root_entry(k, v, &field, path, leaves)
            }),
        }
        path.pop();
    }
    out
}

/// The keys of `a`, then those of `b` that `a` lacks.
fn union_keys<'m>(
    a: &'m Map<String, Value>,
    b: &'m Map<String, Value>,
) -> impl Iterator<Item = &'m String> {
    a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)))
}

/// Adds to `out` the leaves at or below `path` that differ between `old` and `new` (absent
/// when the field is).
fn diff(
    old: Option<&Value>,
    new: Option<&Value>,
    field: &Field<'_>,
    path: &mut Path,
    out: &mut ChangedLeaves,
) {
    if old == new {
        return;
    }
    match (old, new) {
        (Some(Value::Object(o)), Some(Value::Object(n)))
            if !field.atomic && !o.is_empty() && !n.is_empty() =>
        {
            diff_fields(o, n, field, path, out);
        }
        (Some(Value::Array(o)), Some(Value::Array(n))) => {
            if let ListType::Map(keys) = &field.list
                && let (Some(o), Some(n)) = (by_key(o, keys), by_key(n, keys))
            {
                diff_keyed(&o, &n, field, path, out);
            } else {
                compare_subtree(old, new, field, path, out);
            }
        }
        _ => compare_subtree(old, new, field, path, out),
    }
}

/// [`diff`] for every field of two objects (fields of an object, or of a keyed list's item).
fn diff_fields(
    o: &Map<String, Value>,
    n: &Map<String, Value>,
    field: &Field<'_>,
    path: &mut Path,
    out: &mut ChangedLeaves,
) {
    for k in union_keys(o, n) {
        path.push(PathElement::Field(k.clone()));
        diff(o.get(k), n.get(k), &field.schema.field(k), path, out);
        path.pop();
    }
}

/// The items of a keyed list by key, in order; `None` when the list is not walked by key
/// (no key fields, or an item without its key: then the list is one atomic leaf).
fn by_key<'v>(items: &'v [Value], keys: &[String]) -> Option<BTreeMap<String, Vec<&'v Value>>> {
    if keys.is_empty() {
        return None;
    }
    let mut out: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for item in items {
        out.entry(key_of(item, keys)?).or_default().push(item);
    }
    Some(out)
}

/// [`diff`] for two keyed lists, item by item. Items that repeat a key share its paths (the
/// last one's values win), so such a key's items are compared leaf by leaf.
fn diff_keyed(
    o: &BTreeMap<String, Vec<&Value>>,
    n: &BTreeMap<String, Vec<&Value>>,
    field: &Field<'_>,
    path: &mut Path,
    out: &mut ChangedLeaves,
) {
    let keys = o.keys().chain(n.keys().filter(|k| !o.contains_key(*k)));
    for key in keys {
        let (oi, ni) = (o.get(key), n.get(key));
        match (oi.map(Vec::as_slice), ni.map(Vec::as_slice)) {
            (Some([a]), Some([b])) if a == b => {}
            (Some([Value::Object(a)]), Some([Value::Object(b)])) => {
                // Both hold the item itself (a `null` leaf); only its fields can differ.
                path.push(PathElement::Key(key.clone()));
                diff_fields(a, b, field, path, out);
                path.pop();
            }
            _ => {
                let olds = oi.into_iter().flatten().copied();
                let news = ni.into_iter().flatten().copied();
                compare_leaves(olds, news, path, out, |item, path, leaves| {
                    walk_keyed_item(item, key.clone(), field, path, leaves)
                });
            }
        }
    }
}

/// Compares the leaves of `old` and `new` at `path` one by one.
fn compare_subtree(
    old: Option<&Value>,
    new: Option<&Value>,
    field: &Field<'_>,
    path: &mut Path,
    out: &mut ChangedLeaves,
) {
    compare_leaves(old, new, path, out, |v, path, leaves| {
        walk(v, field, path, leaves)
    });
}

/// Adds to `out` what comparing the leaves that `leaves_of` finds in `olds` and in `news`
/// (values at `path`, or the items of one key there) finds.
fn compare_leaves<'v>(
    olds: impl IntoIterator<Item = &'v Value>,
    news: impl IntoIterator<Item = &'v Value>,
    path: &mut Path,
    out: &mut ChangedLeaves,
    mut leaves_of: impl FnMut(&Value, &mut Path, &mut BTreeMap<Path, Value>),
) {
    let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
    for v in olds {
        leaves_of(v, path, &mut before);
    }
    for v in news {
        leaves_of(v, path, &mut after);
    }
    out.compare(before, after);
}

/// The first keyed-list item of `obj` that lacks its key fields, as upstream words it:
/// `.spec.containers: element 0: associative list with keys has an element that omits key
/// field "name"`. An applied configuration must name every item it sets.
pub fn missing_key(obj: &Value, schema: Schema<'_>) -> Option<String> {
    let Value::Object(root) = obj else {
        return None;
    };
    root.iter().find_map(|(k, v)| {
        check_keys(
            v,
            &schema.field(k),
            &mut vec![PathElement::Field(k.clone())],
        )
    })
}

fn check_keys(v: &Value, field: &Field<'_>, path: &mut Path) -> Option<String> {
    match v {
        Value::Object(m) if !field.atomic => m.iter().find_map(|(k, child)| {
            path.push(PathElement::Field(k.clone()));
            let found = check_keys(child, &field.schema.field(k), path);
            path.pop();
            found
        }),
        Value::Array(items) => {
            let ListType::Map(keys) = &field.list else {
                return None;
            };
            if keys.is_empty() {
                return None;
            }
            items.iter().enumerate().find_map(|(i, item)| {
                let Some(key) = key_of(item, keys) else {
                    return Some(format!(
                        "{}: element {i}: associative list with keys has an element that omits key field {:?}",
                        Display(path),
                        keys[0]
                    ));
                };
                let Value::Object(m) = item else { return None };
                path.push(PathElement::Key(key));
                let found = m.iter().find_map(|(k, child)| {
                    path.push(PathElement::Field(k.clone()));
                    let found = check_keys(child, &field.schema.field(k), path);
                    path.pop();
                    found
                });
                path.pop();
                found
            })
        }
        _ => None,
    }
}

/// Key fields the server defaults, so an item that leaves them out still has its full key
/// (upstream's defaulting of `protocol` in port keys).
const KEY_DEFAULTS: &[(&str, &str)] = &[("protocol", "TCP")];

/// The key of a keyed list item: its key fields as a JSON object with sorted keys; `None`
/// when it has none of them but defaulted ones.
pub fn key_of(item: &Value, keys: &[String]) -> Option<String> {
    let mut present: Vec<(&str, Value)> = Vec::with_capacity(keys.len());
    let mut own = false;
    for k in keys {
        match item.get(k).filter(|v| !v.is_null()) {
            Some(v) => {
                own = true;
                present.push((k, v.clone()));
            }
            None => {
                if let Some((_, d)) = KEY_DEFAULTS.iter().find(|(d, _)| d == k) {
                    present.push((k, Value::String(d.to_string())));
                }
            }
        }
    }
    if !own {
        return None;
    }
    present.sort_by(|a, b| a.0.cmp(b.0));
    let body: Vec<String> = present
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::String(k.to_string())))
        .collect();
    Some(format!("{{{}}}", body.join(",")))
}

/// True when `item` is the keyed-list item that `key` (a [`PathElement::Key`]) names.
pub fn matches_key(item: &Value, key: &str) -> bool {
    match serde_json::from_str::<Map<String, Value>>(key) {
        Ok(fields) => {
            let names: Vec<String> = fields.keys().cloned().collect();
            key_of(item, &names).as_deref() == Some(key)
        }
        Err(_) => false,
    }
}

/// A path as upstream prints it in conflicts: `.spec.containers[name="nginx"].image`.
pub struct Display<'a>(pub &'a [PathElement]);

impl fmt::Display for Display<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for el in self.0 {
            match el {
                PathElement::Field(n) => write!(f, ".{n}")?,
                PathElement::Value(v) => write!(f, "[={v}]")?,
                PathElement::Key(k) => {
                    let fields: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                    let parts: Vec<String> =
                        fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    write!(f, "[{}]", parts.join(","))?;
                }
            }
        }
        Ok(())
    }
}

fn element_string(el: &PathElement) -> String {
    match el {
        PathElement::Field(n) => format!("f:{n}"),
        PathElement::Key(k) => format!("k:{k}"),
        PathElement::Value(v) => format!("v:{v}"),
    }
}

fn parse_element(s: &str) -> Option<PathElement> {
    let (kind, rest) = s.split_once(':')?;
    match kind {
        "f" => Some(PathElement::Field(rest.to_string())),
        "k" => {
            let fields: Map<String, Value> = serde_json::from_str(rest).ok()?;
            let keys: Vec<String> = fields.keys().cloned().collect();
            key_of(&Value::Object(fields), &keys).map(PathElement::Key)
        }
        "v" => {
            let v: Value = serde_json::from_str(rest).ok()?;
            Some(PathElement::Value(v.to_string()))
        }
        _ => None,
    }
}

/// Encodes a field set as `FieldsV1`.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        insert_member(&mut root, path);
    }
    collapse_members(&mut root);
    Value::Object(root)
}

/// Marks `path` below `node` as a member (`"."`), creating the nodes on the way.
fn insert_member(node: &mut Map<String, Value>, path: &[PathElement]) {
    let Some((first, rest)) = path.split_first() else {
        node.insert(".".into(), Value::Object(Map::new()));
        return;
    };
    let child = node
        .entry(element_string(first))
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(child) = child {
        insert_member(child, rest);
    }
}

/// A member with no children is written `{}`, not `{".":{}}`.
fn collapse_members(node: &mut Map<String, Value>) {
    for child in node.values_mut() {
        if let Value::Object(m) = child {
            if m.len() == 1 && m.contains_key(".") {
                m.clear();
            } else {
                collapse_members(m);
            }
        }
    }
}

/// Decodes `FieldsV1`; `None` when it is malformed.
pub fn from_fields_v1(v: &Value) -> Option<FieldSet> {
    let mut out = FieldSet::new();
    let Value::Object(root) = v else { return None };
    decode_node(root, &mut Vec::new(), &mut out)?;
    Some(out)
}

fn decode_node(node: &Map<String, Value>, path: &mut Path, out: &mut FieldSet) -> Option<()> {
    for (k, child) in node {
        if k == "." {
            out.insert(path.clone());
            continue;
        }
        let Value::Object(m) = child else { return None };
        path.push(parse_element(k)?);
        if m.is_empty() {
            out.insert(path.clone());
        } else {
            decode_node(m, path, out)?;
        }
        path.pop();
    }
    Some(())
}

#[cfg(test)]
mod changed_leaves_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_fields_are_keyed_by_name_in_fields_v1() {
        let obj = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}
        });
        let set: FieldSet = leaves(&obj, Schema::for_kind("apps", "Deployment"))
            .into_keys()
            .collect();
        let v1 = to_fields_v1(&set);
        assert_eq!(
            v1,
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:replicas": {}, "f:selector": {},
                    "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}
            })
        );
        assert_eq!(from_fields_v1(&v1), Some(set));
    }

    #[test]
    fn container_ports_are_keyed_by_number_and_defaulted_protocol() {
        let obj =
            json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}]}]}});
        let set: FieldSet = leaves(&obj, Schema::for_kind("", "Pod"))
            .into_keys()
            .collect();
        let v1 = to_fields_v1(&set);
        let ports = &v1["f:spec"]["f:containers"]["k:{\"name\":\"a\"}"]["f:ports"];
        assert_eq!(
            ports,
            &json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}})
        );
    }

    #[test]
    fn set_items_are_owned_by_value() {
        let obj = json!({"metadata": {"finalizers": ["a/b"]}});
        let set: FieldSet = leaves(&obj, Schema::for_kind("", "Pod"))
            .into_keys()
            .collect();
        assert_eq!(
            to_fields_v1(&set),
            json!({"f:metadata": {"f:finalizers": {"v:\"a/b\"": {}}}})
        );
    }

    #[test]
    fn paths_print_as_upstream_prints_them_in_conflicts() {
        let p = vec![
            PathElement::Field("spec".into()),
            PathElement::Field("containers".into()),
            PathElement::Key("{\"name\":\"nginx\"}".into()),
            PathElement::Field("image".into()),
        ];
        assert_eq!(
            Display(&p).to_string(),
            ".spec.containers[name=\"nginx\"].image"
        );
    }
}
