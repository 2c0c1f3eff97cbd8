//! What a kind shows in `kubectl get` (upstream's `TableConvertor`): column definitions and
//! the cells of one row, served as a `meta.k8s.io` `Table` when a client asks for one.
//!
//! Built-in kinds print as upstream's `pkg/printers/internalversion` does, one module per API
//! group ([`core`], [`pod`], [`apps`], [`batch`], [`networking`], [`other`]), found by group and resource in
//! [`builtin`]. Like upstream's server, every row carries all columns, the `-o wide` ones
//! (priority 1) included: kubectl picks what to show. Kinds without a printer get upstream's
//! default table, NAME and CREATED AT; custom resources their `additionalPrinterColumns`
//! ([`custom`]).
//!
//! # How to implement your own
//!
//! A [`TableConvertor`] gives the columns and one row per object; return it from
//! [`Strategy::table_convertor`](super::Strategy::table_convertor):
//!
//! ```
//! use kybernetes_apiserver::registry::table::{TableColumn, TableConvertor, TableRow, age};
//! use serde_json::{Value, json};
//!
//! /// Widgets show their size.
//! struct WidgetTable;
//!
//! static COLUMNS: &[TableColumn] = &[
//!     TableColumn::NAME,
//!     TableColumn::new("Size", "integer", "The widget's size."),
//!     TableColumn::AGE,
//! ];
//!
//! impl TableConvertor for WidgetTable {
//!     fn columns(&self) -> &[TableColumn] {
//!         COLUMNS
//!     }
//!     fn row(&self, obj: &Value, now: chrono::DateTime<chrono::Utc>) -> TableRow {
//!         TableRow::new(vec![obj["metadata"]["name"].clone(), obj["spec"]["size"].clone(), json!(age(obj, now))])
//!     }
//! }
//! let row = WidgetTable.row(&json!({"metadata": {"name": "w"}, "spec": {"size": 3}}), chrono::Utc::now());
//! assert_eq!(row.cells, vec![json!("w"), json!(3), json!("<unknown>")]);
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::object::meta_str;

pub mod apps;
pub mod batch;
pub mod core;
pub mod custom;
mod duration;
pub mod jsonpath;
pub mod networking;
pub mod other;
pub mod pod;

pub use duration::human_duration;

/// `metav1.ObjectMeta`'s documentation of `name`, the description of every NAME column.
pub const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// `metav1.ObjectMeta`'s documentation of `creationTimestamp`, the description of every AGE
/// column.
pub const CREATION_TIMESTAMP_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// A column of a `meta.k8s.io/v1` `Table` (`TableColumnDefinition`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableColumn {
    /// The header (`Name`, `Ready`); kubectl prints it upper-cased.
    pub name: Cow<'static, str>,
    /// The OpenAPI type of the cells: string, integer, number, boolean, date.
    pub type_: Cow<'static, str>,
    /// The OpenAPI format (`name` for the name column), may be empty.
    pub format: Cow<'static, str>,
    /// What the column shows.
    pub description: Cow<'static, str>,
    /// 0 for the default view; higher only with `-o wide`.
    pub priority: i32,
}

impl TableColumn {
    /// The NAME column of every built-in kind.
    pub const NAME: TableColumn = TableColumn {
        name: Cow::Borrowed("Name"),
        type_: Cow::Borrowed("string"),
        format: Cow::Borrowed("name"),
        description: Cow::Borrowed(NAME_DESCRIPTION),
        priority: 0,
    };

    /// The AGE column of every built-in kind.
    pub const AGE: TableColumn = TableColumn::new("Age", "string", CREATION_TIMESTAMP_DESCRIPTION);

    /// A column of the default view.
    pub const fn new(name: &'static str, type_: &'static str, description: &'static str) -> Self {
        TableColumn {
            name: Cow::Borrowed(name),
            type_: Cow::Borrowed(type_),
            format: Cow::Borrowed(""),
            description: Cow::Borrowed(description),
            priority: 0,
        }
    }

    /// A column shown only with `-o wide` (priority 1).
    pub const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Self {
        TableColumn {
            name: Cow::Borrowed(name),
            type_: Cow::Borrowed(type_),
            format: Cow::Borrowed(""),
            description: Cow::Borrowed(description),
            priority: 1,
        }
    }

    /// The column as JSON, for a `Table`'s `columnDefinitions`.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// One row of a `Table`: its cells, in column order, and its conditions (a finished pod's
/// `Completed`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TableRow {
    /// The cells: strings, integers, numbers, booleans or null.
    pub cells: Vec<Value>,
    /// `TableRowCondition`s.
    pub conditions: Vec<Value>,
}

impl TableRow {
    /// A row without conditions.
    pub fn new(cells: Vec<Value>) -> Self {
        TableRow {
            cells,
            conditions: Vec::new(),
        }
    }
}

/// How a kind prints in `kubectl get` (upstream's `rest.TableConvertor`).
pub trait TableConvertor: Send + Sync {
    /// The column definitions, wide ones included.
    fn columns(&self) -> &[TableColumn];

    /// The row of one object, a cell for every column, at `now` (for ages).
    fn row(&self, obj: &Value, now: DateTime<Utc>) -> TableRow;
}

/// A built-in kind's printer: static columns and a function from an object to its cells.
pub struct Printer {
    columns: &'static [TableColumn],
    cells: fn(&Value, DateTime<Utc>) -> Vec<Value>,
    conditions: fn(&Value) -> Vec<Value>,
}

impl Printer {
    /// A printer whose rows have no conditions.
    pub const fn new(
        columns: &'static [TableColumn],
        cells: fn(&Value, DateTime<Utc>) -> Vec<Value>,
    ) -> Self {
        Printer {
            columns,
            cells,
            conditions: |_| Vec::new(),
        }
    }

    /// The same printer, with row conditions.
    pub const fn with_conditions(mut self, conditions: fn(&Value) -> Vec<Value>) -> Self {
        self.conditions = conditions;
        self
    }
}

impl TableConvertor for Printer {
    fn columns(&self) -> &[TableColumn] {
        self.columns
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> TableRow {
        TableRow {
            cells: (self.cells)(obj, now),
            conditions: (self.conditions)(obj),
        }
    }
}

static DEFAULT_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new("Created At", "date", CREATION_TIMESTAMP_DESCRIPTION),
];

/// Upstream's `DefaultTableConvertor`, for kinds without a printer: NAME and CREATED AT (the
/// creation time in RFC 3339, UTC).
pub static DEFAULT: Printer = Printer::new(DEFAULT_COLUMNS, |obj, _| {
    // Go's zero time when unset, as upstream prints it.
    let created = meta_str(obj, "creationTimestamp")
        .and_then(kybernetes_core::clock::parse_time)
        .map(kybernetes_core::clock::format_time)
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
    vec![json!(name(obj)), json!(created)]
});

/// The printers of the built-in kinds, by (group, resource).
static BUILTIN: LazyLock<HashMap<(&'static str, &'static str), &'static Printer>> =
    LazyLock::new(|| {
        let mut m: HashMap<(&'static str, &'static str), &'static Printer> = HashMap::new();
        for (group, resource, printer) in core::PRINTERS
            .iter()
            .chain(apps::PRINTERS)
            .chain(batch::PRINTERS)
            .chain(other::PRINTERS)
            .chain(networking::PRINTERS)
        {
            m.insert((group, resource), printer);
        }
        m.insert(("", "pods"), &pod::PODS);
        m
    });

/// The printer of a built-in resource, or [`DEFAULT`].
pub fn builtin(group: &str, resource: &str) -> Arc<dyn TableConvertor> {
    struct Static(&'static Printer);
    impl TableConvertor for Static {
        fn columns(&self) -> &[TableColumn] {
            self.0.columns()
        }
        fn row(&self, obj: &Value, now: DateTime<Utc>) -> TableRow {
            self.0.row(obj, now)
        }
    }
    let printer = BUILTIN.get(&(group, resource)).copied().unwrap_or(&DEFAULT);
    Arc::new(Static(printer))
}

// --- Reading objects, and formatting as upstream's printers do. ---

/// The object's name.
pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

/// How long ago `obj` was created, as kubectl prints it (`<unknown>` without a timestamp).
pub fn age(obj: &Value, now: DateTime<Utc>) -> String {
    since(meta_str(obj, "creationTimestamp"), now)
}

/// How long ago an RFC 3339 time was (upstream's `translateTimestampSince`): `<unknown>`
/// when absent or unreadable.
pub fn since(time: Option<&str>, now: DateTime<Utc>) -> String {
    time.and_then(kybernetes_core::clock::parse_time)
        .map(|t| human_duration(now.signed_duration_since(t)))
        .unwrap_or_else(|| "<unknown>".into())
}

/// The string at a JSON pointer, empty if absent.
pub fn text<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The integer at a JSON pointer, 0 if absent.
pub fn int(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// The array at a JSON pointer, empty if absent.
pub fn items<'a>(obj: &'a Value, pointer: &str) -> &'a [Value] {
    obj.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The number of entries of the map (or array) at a JSON pointer.
pub fn len(obj: &Value, pointer: &str) -> i64 {
    let n = match obj.pointer(pointer) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    };
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A string map (`labels.FormatLabels`): `a=1,b=2` sorted by key, `<none>` when empty.
pub fn format_labels(map: Option<&Value>) -> String {
    let sorted: BTreeMap<&str, &str> = map
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
        .collect();
    if sorted.is_empty() {
        return "<none>".into();
    }
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A `metav1.LabelSelector` as a selector string (`metav1.FormatLabelSelector`): `<none>`
/// for none or an empty one, `<error>` for an invalid one.
pub fn format_label_selector(selector: Option<&Value>) -> String {
    match selector_string(selector) {
        Ok(s) if s.is_empty() => "<none>".into(),
        Ok(s) => s,
        Err(_) => "<error>".into(),
    }
}

/// A `metav1.LabelSelector` as a selector string, empty for none.
pub fn selector_string(selector: Option<&Value>) -> Result<String, String> {
    kybernetes_core::selector::LabelSelector::from_json(selector.unwrap_or(&Value::Null))
        .map(|s| s.to_string())
        .map_err(|e| e.to_string())
}

/// The CONTAINERS and IMAGES cells of a pod spec (`layoutContainerCells`): names and images
/// joined by commas.
pub fn container_cells(pod_spec: Option<&Value>) -> (String, String) {
    let containers = pod_spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let pick = |field: &str| {
        containers
            .iter()
            .map(|c| c.get(field).and_then(Value::as_str).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(",")
    };
    (pick("name"), pick("image"))
}

/// An `IntOrString` as printed (`intstr.String()`), or `None` when absent.
pub fn int_or_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Joins a list, showing at most `max` entries and then ` + N more...`
/// (`listWithMoreString`); `<unset>` when empty.
pub fn list_with_more(list: &[String], max: usize) -> String {
    if list.is_empty() {
        return "<unset>".into();
    }
    let shown = list[..list.len().min(max)].join(",");
    if list.len() > max {
        format!("{shown} + {} more...", list.len() - max)
    } else {
        shown
    }
}

/// True if the condition of `type_` in the array at `pointer` has status `True` (the first of
/// that type decides, as upstream's helpers).
pub fn condition_true(obj: &Value, pointer: &str, type_: &str) -> bool {
    items(obj, pointer)
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
        .is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("True"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_without_a_printer_show_name_and_creation_time() {
        let table = builtin("", "limitranges");
        let names: Vec<_> = table.columns().iter().map(|c| c.name.as_ref()).collect();
        assert_eq!(names, ["Name", "Created At"]);
        let row = table.row(
            &json!({"metadata": {"name": "l", "creationTimestamp": "2024-05-01T10:00:00Z"}}),
            Utc::now(),
        );
        assert_eq!(row.cells, vec![json!("l"), json!("2024-05-01T10:00:00Z")]);
        let unset = table.row(&json!({"metadata": {"name": "l"}}), Utc::now());
        assert_eq!(unset.cells[1], json!("0001-01-01T00:00:00Z"));
    }

    #[test]
    fn selectors_and_labels_print_as_upstream() {
        assert_eq!(format_labels(Some(&json!({"b": "2", "a": "1"}))), "a=1,b=2");
        assert_eq!(format_labels(None), "<none>");
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        assert_eq!(
            format_label_selector(Some(&json!({"matchLabels": {"app": "web"}}))),
            "app=web"
        );
        let many: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(list_with_more(&many, 3), "a,b,c + 2 more...");
        assert_eq!(list_with_more(&[], 3), "<unset>");
    }
}
