//! Custom resources: the columns of a CRD version's `additionalPrinterColumns` (upstream's
//! apiextensions `tableconvertor`), NAME first; NAME and AGE when it has none.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::jsonpath::JsonPath;
use super::{
    CREATION_TIMESTAMP_DESCRIPTION, TableColumn, TableConvertor, TableRow, human_duration, name,
};

/// The table of one version of a custom resource.
#[derive(Clone, Debug)]
pub struct CustomColumns {
    columns: Vec<TableColumn>,
    paths: Vec<JsonPath>,
}

impl CustomColumns {
    /// The columns of a CRD version's `additionalPrinterColumns` (a JSON array, or null).
    /// A column whose path does not parse ends the list, as upstream's convertor stops there.
    pub fn new(printer_columns: Option<&Value>) -> Self {
        let mut columns = vec![TableColumn::NAME];
        let mut paths = Vec::new();
        let defined = printer_columns
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .cloned()
            // Upstream serves an Age column when a version defines none.
            .unwrap_or_else(|| {
                vec![json!({"name": "Age", "type": "date", "description": CREATION_TIMESTAMP_DESCRIPTION, "jsonPath": ".metadata.creationTimestamp"})]
            });
        for col in &defined {
            let field = |f: &str| col.get(f).and_then(Value::as_str).unwrap_or("").to_string();
            let path = field("jsonPath");
            match JsonPath::parse(&path) {
                Ok(p) => paths.push(p),
                Err(e) => {
                    tracing::debug!(path, error = %e, "unrecognized printer column; later columns are not shown");
                    break;
                }
            }
            let description = match field("description") {
                d if d.is_empty() => {
                    format!("Custom resource definition column (in JSONPath format): {path}")
                }
                d => d,
            };
            columns.push(TableColumn {
                name: Cow::Owned(field("name")),
                type_: Cow::Owned(field("type")),
                format: Cow::Owned(field("format")),
                description: Cow::Owned(description),
                priority: col
                    .get("priority")
                    .and_then(Value::as_i64)
                    .and_then(|p| i32::try_from(p).ok())
                    .unwrap_or(0),
            });
        }
        CustomColumns { columns, paths }
    }
}

impl TableConvertor for CustomColumns {
    fn columns(&self) -> &[TableColumn] {
        &self.columns
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> TableRow {
        let mut cells = Vec::with_capacity(self.columns.len());
        cells.push(json!(name(obj)));
        for (path, col) in self.paths.iter().zip(&self.columns[1..]) {
            let cell = match path.first(obj) {
                None | Some(Value::Null) => Value::Null,
                Some(v) if col.type_ == "string" => printed(v).map_or(Value::Null, Value::String),
                Some(v) => typed_cell(&col.type_, v, now),
            };
            cells.push(cell);
        }
        TableRow::new(cells)
    }
}

/// A value of a `string` column as client-go's jsonpath prints it: strings as they are,
/// numbers and booleans in Go's form, objects and arrays as JSON.
fn printed(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (None, None, Some(f)) => go_float(f),
            _ => n.to_string(),
        },
        Value::Array(_) | Value::Object(_) => serde_json::to_string(v).ok()?,
    })
}

/// A float as Go's `%v` prints it (`strconv.FormatFloat(f, 'g', -1, 64)`): the shortest
/// digits, in exponent form below 1e-4 and from 1e6.
fn go_float(f: f64) -> String {
    if f == 0.0 || !f.is_finite() {
        return f.to_string();
    }
    let exp = f.abs().log10().floor();
    if !(-4.0..6.0).contains(&exp) {
        let s = format!("{f:e}");
        return match s.split_once('e') {
            Some((mantissa, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', e),
                };
                format!("{mantissa}e{sign}{digits:0>2}")
            }
            None => s,
        };
    }
    f.to_string()
}

/// A cell of an integer, number, boolean or date column (`cellForJSONValue`); null when the
/// value has another type.
fn typed_cell(type_: &str, v: &Value, now: DateTime<Utc>) -> Value {
    match (type_, v) {
        ("integer", Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, Value::from),
        ("boolean", Value::Bool(b)) => json!(b),
        ("date", Value::String(s)) => match kybernetes_core::clock::parse_time(s) {
            Some(t) => json!(human_duration(now.signed_duration_since(t))),
            None => json!("<invalid>"),
        },
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        kybernetes_core::clock::parse_time("2024-05-01T12:00:00Z").expect("time")
    }

    #[test]
    fn printer_columns_follow_their_types() {
        let table = CustomColumns::new(Some(&json!([
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Image", "type": "string", "jsonPath": ".spec.images[0]", "priority": 1},
            {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio"},
            {"name": "On", "type": "boolean", "jsonPath": ".spec.on"},
            {"name": "Size", "type": "string", "jsonPath": ".spec.size"},
            {"name": "Started", "type": "date", "jsonPath": ".status.started"},
            {"name": "Missing", "type": "string", "jsonPath": ".status.nothing"},
        ])));
        let names: Vec<_> = table.columns().iter().map(|c| c.name.as_ref()).collect();
        assert_eq!(
            names,
            [
                "Name", "Replicas", "Image", "Ratio", "On", "Size", "Started", "Missing"
            ]
        );
        assert_eq!(table.columns()[2].priority, 1);
        assert_eq!(
            table.columns()[1].description,
            "Custom resource definition column (in JSONPath format): .spec.replicas"
        );
        let obj = json!({"metadata": {"name": "w"},
            "spec": {"replicas": 2.0, "images": ["a", "b"], "ratio": 1, "on": true, "size": 1.5},
            "status": {"started": "2024-05-01T11:59:00Z"}});
        assert_eq!(
            table.row(&obj, now()).cells,
            vec![
                json!("w"),
                json!(2),
                json!("a"),
                json!(1.0),
                json!(true),
                json!("1.5"),
                json!("60s"),
                Value::Null
            ]
        );
    }

    #[test]
    fn versions_without_columns_show_name_and_age() {
        let table = CustomColumns::new(None);
        let names: Vec<_> = table.columns().iter().map(|c| c.name.as_ref()).collect();
        assert_eq!(names, ["Name", "Age"]);
        let obj = json!({"metadata": {"name": "w", "creationTimestamp": "2024-05-01T11:57:00Z"}});
        assert_eq!(table.row(&obj, now()).cells, vec![json!("w"), json!("3m")]);
    }

    #[test]
    fn floats_print_as_go_does() {
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(1_234_567.5), "1.2345675e+06");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(123456.5), "123456.5");
    }
}
