//! A cursor over an object's schema that answers one question per field: is it an object
//! merged field by field, an atomic value, or a list merged atomically, as a set, or by key?
//! Built-in kinds answer from the merge-key table; custom resources from their CRD's
//! `openAPIV3Schema` (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`,
//! `x-kubernetes-map-type`).

use serde_json::Value;

use super::merge_keys::{self, Rule};

/// Where in a schema a value sits.
#[derive(Clone, Copy, Debug)]
pub enum Schema<'a> {
    /// A built-in type, by its OpenAPI name.
    Type(&'static str),
    /// A map whose values are of a built-in type.
    MapOf(&'static str),
    /// A node of a CRD's structural schema.
    Json(&'a Value),
    /// Nothing known: objects merge field by field and lists are atomic.
    Unknown,
}

/// How a list merges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole.
    Atomic,
    /// Scalars, merged by value.
    Set,
    /// Objects, merged by these key fields (the first is the strategic-merge-patch key).
    Map(Vec<String>),
}

/// What the schema says about one field.
#[derive(Clone, Debug)]
pub struct Field<'a> {
    /// The schema of the field's value, or of its items when it is a list.
    pub schema: Schema<'a>,
    /// How the field merges when it is a list.
    pub list: ListType,
    /// True when the field is an object owned and replaced as one value.
    pub atomic: bool,
}

impl<'a> Schema<'a> {
    /// The schema of a built-in kind, or [`Schema::Unknown`].
    pub fn for_kind(group: &str, kind: &str) -> Schema<'static> {
        merge_keys::root_type(group, kind).map_or(Schema::Unknown, Schema::Type)
    }

    /// What the schema says about `name`.
    pub fn field(&self, name: &str) -> Field<'a> {
        match *self {
            Schema::Type(ty) => builtin_field(ty, name),
            Schema::MapOf(ty) => Field {
                schema: Schema::Type(ty),
                list: ListType::Atomic,
                atomic: merge_keys::is_atomic_struct(ty),
            },
            Schema::Json(node) => json_field(node, name),
            Schema::Unknown => Field {
                schema: Schema::Unknown,
                list: ListType::Atomic,
                atomic: false,
            },
        }
    }
}

fn builtin_field(ty: &'static str, name: &str) -> Field<'static> {
    let (rule, child) = merge_keys::field_rule(ty, name).unwrap_or((Rule::AtomicList, ""));
    let schema = if child.is_empty() {
        Schema::Unknown
    } else if rule == Rule::GranularMap {
        Schema::MapOf(child)
    } else {
        Schema::Type(child)
    };
    let list = match rule {
        Rule::Set => ListType::Set,
        Rule::Map(keys) => ListType::Map(keys.iter().map(|k| k.to_string()).collect()),
        _ => ListType::Atomic,
    };
    let atomic =
        rule == Rule::AtomicMap || (rule == Rule::Struct && merge_keys::is_atomic_struct(child));
    Field {
        schema,
        list,
        atomic,
    }
}

fn json_field<'a>(node: &'a Value, name: &str) -> Field<'a> {
    let prop = node
        .get("properties")
        .and_then(|p| p.get(name))
        .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()));
    let Some(prop) = prop else {
        return Field {
            schema: Schema::Unknown,
            list: ListType::Atomic,
            atomic: false,
        };
    };
    let list = match prop.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => ListType::Set,
        Some("map") => ListType::Map(
            prop.get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|keys| {
                    keys.iter()
                        .filter_map(|k| k.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        _ => ListType::Atomic,
    };
    let schema = match prop.get("items") {
        Some(items) if prop.get("type").and_then(Value::as_str) == Some("array") => {
            Schema::Json(items)
        }
        _ => Schema::Json(prop),
    };
    let atomic = prop.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic");
    Field {
        schema,
        list,
        atomic,
    }
}

impl Schema<'static> {
    /// The schema of a built-in object, found from its own `apiVersion` and `kind`.
    pub fn of_object(obj: &Value) -> Schema<'static> {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        Schema::for_kind(group, kind)
    }
}
