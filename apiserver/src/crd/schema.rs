//! Validation of a custom object against its version's `openAPIV3Schema`, with the causes
//! upstream's schema validator (kube-openapi, mapped to field errors by apiextensions) gives:
//! `spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10`.
//!
//! The schema is the CRD's JSON, walked as is. Patterns use the `regex` crate, whose syntax is
//! RE2's like upstream's Go `regexp` (so, as upstream, no look-around or back-references of
//! ECMA-262).

use kybernetes_core::status::StatusCause;
use serde_json::{Map, Value};

use super::format;

/// A field path as upstream prints it: `spec.items[0].name`.
#[derive(Clone, Debug, Default)]
pub struct FieldPath(String);

impl FieldPath {
    /// The path of a property.
    pub fn child(&self, name: &str) -> FieldPath {
        if self.0.is_empty() {
            FieldPath(name.to_string())
        } else {
            FieldPath(format!("{}.{name}", self.0))
        }
    }

    /// The path of an array item.
    pub fn index(&self, i: usize) -> FieldPath {
        FieldPath(format!("{}[{i}]", self.0))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A value as upstream's field errors print it: strings quoted, numbers and booleans bare.
pub fn display_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => display_number(n),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

fn display_number(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => n.to_string(),
    }
}

/// The JSON type name of a value, as the validator reports a mismatch.
fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if is_integer(n) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Integers, and floats with no fraction (`3.0` decodes as an integer upstream).
fn is_integer(n: &serde_json::Number) -> bool {
    n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
}

fn flag(schema: &Map<String, Value>, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

/// Collects the causes of one object's validation.
struct Validator {
    causes: Vec<StatusCause>,
}

impl Validator {
    fn push(&mut self, reason: &str, path: &FieldPath, message: String) {
        self.causes.push(StatusCause {
            reason: reason.into(),
            message,
            field: path.as_str().into(),
        });
    }

    /// `Invalid value: V: <path> in body <detail>`, upstream's default mapping.
    fn invalid(&mut self, path: &FieldPath, v: &Value, detail: &str) {
        let message = format!(
            "Invalid value: {}: {} in body {detail}",
            display_value(v),
            path.as_str()
        );
        self.push("FieldValueInvalid", path, message);
    }

    fn type_invalid(&mut self, path: &FieldPath, got: &str, want: &str) {
        let message = format!(
            "Invalid value: {got:?}: {} in body must be of type {want}: {got:?}",
            path.as_str()
        );
        self.push("FieldValueTypeInvalid", path, message);
    }

    fn node(&mut self, schema: &Value, v: &Value, path: &FieldPath) {
        let Some(s) = schema.as_object() else { return };
        let int_or_string = flag(s, "x-kubernetes-int-or-string");
        let ty = s.get("type").and_then(Value::as_str).unwrap_or("");
        if v.is_null() {
            if !flag(s, "nullable") && (!ty.is_empty() || int_or_string) {
                let want = if int_or_string { "integer,string" } else { ty };
                self.type_invalid(path, "null", want);
            }
            return;
        }
        if int_or_string {
            let ok = v.is_string() || v.as_number().is_some_and(is_integer);
            if !ok {
                self.type_invalid(path, type_of(v), "integer,string");
                return;
            }
        } else if !ty.is_empty() && !type_matches(ty, v) {
            self.type_invalid(path, type_of(v), ty);
            return;
        }
        self.enumeration(s, v, path);
        match v {
            Value::Number(n) => self.number(s, n, v, path),
            Value::String(text) => self.string(s, text, v, path),
            Value::Array(items) => self.array(s, items, v, path),
            Value::Object(m) => self.object(s, m, v, path),
            _ => {}
        }
        self.combinators(s, v, path);
    }

    fn enumeration(&mut self, s: &Map<String, Value>, v: &Value, path: &FieldPath) {
        let Some(allowed) = s.get("enum").and_then(Value::as_array) else {
            return;
        };
        if allowed.iter().any(|a| json_equal(a, v)) {
            return;
        }
        let values: Vec<String> = allowed
            .iter()
            .map(|a| match a {
                Value::String(s) => format!("{s:?}"),
                other => format!("{:?}", other.to_string()),
            })
            .collect();
        let message = format!(
            "Unsupported value: {}: supported values: {}",
            display_value(v),
            values.join(", ")
        );
        self.push("FieldValueNotSupported", path, message);
    }

    fn number(
        &mut self,
        s: &Map<String, Value>,
        n: &serde_json::Number,
        v: &Value,
        path: &FieldPath,
    ) {
        let Some(x) = n.as_f64() else { return };
        if let Some(max) = s.get("maximum").and_then(Value::as_number) {
            let m = max.as_f64().unwrap_or(f64::INFINITY);
            let shown = display_number(max);
            if flag(s, "exclusiveMaximum") && x >= m {
                self.invalid(path, v, &format!("should be less than {shown}"));
            } else if x > m {
                self.invalid(path, v, &format!("should be less than or equal to {shown}"));
            }
        }
        if let Some(min) = s.get("minimum").and_then(Value::as_number) {
            let m = min.as_f64().unwrap_or(f64::NEG_INFINITY);
            let shown = display_number(min);
            if flag(s, "exclusiveMinimum") && x <= m {
                self.invalid(path, v, &format!("should be greater than {shown}"));
            } else if x < m {
                self.invalid(
                    path,
                    v,
                    &format!("should be greater than or equal to {shown}"),
                );
            }
        }
        if let Some(of) = s.get("multipleOf").and_then(Value::as_number)
            && let Some(d) = of.as_f64()
            && d > 0.0
            && ((x / d) - (x / d).round()).abs() > 1e-9
        {
            self.invalid(
                path,
                v,
                &format!("should be a multiple of {}", display_number(of)),
            );
        }
    }

    fn string(&mut self, s: &Map<String, Value>, text: &str, v: &Value, path: &FieldPath) {
        let len = text.chars().count() as u64;
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            let unit = if max == 1 { "byte" } else { "bytes" };
            self.push(
                "FieldValueTooLong",
                path,
                format!("Too long: may not be more than {max} {unit}"),
            );
        }
        if let Some(min) = s.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            self.invalid(path, v, &format!("should be at least {min} chars long"));
        }
        if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
            match regex::Regex::new(pattern) {
                Ok(re) if !re.is_match(text) => {
                    self.invalid(path, v, &format!("should match '{pattern}'"));
                }
                Ok(_) => {}
                // The CRD's validation rejects such patterns; one stored before still fails
                // closed, naming the pattern.
                Err(e) => self.invalid(
                    path,
                    v,
                    &format!("cannot be checked against '{pattern}': {e}"),
                ),
            }
        }
        if let Some(f) = s.get("format").and_then(Value::as_str)
            && !format::valid(f, text)
        {
            self.invalid(path, v, &format!("must be of type {f}: {text:?}"));
        }
    }

    fn array(&mut self, s: &Map<String, Value>, items: &[Value], v: &Value, path: &FieldPath) {
        let n = items.len() as u64;
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
            && n > max
        {
            self.push(
                "FieldValueTooMany",
                path,
                format!("Too many: {n}: must have at most {max} items"),
            );
        }
        if let Some(min) = s.get("minItems").and_then(Value::as_u64)
            && n < min
        {
            self.invalid(path, v, &format!("should have at least {min} items"));
        }
        if flag(s, "uniqueItems") {
            for (i, item) in items.iter().enumerate() {
                if items[..i].iter().any(|earlier| json_equal(earlier, item)) {
                    let message = format!("Duplicate value: {}", display_value(item));
                    self.push("FieldValueDuplicate", &path.index(i), message);
                }
            }
        }
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.node(item_schema, item, &path.index(i));
            }
        }
    }

    fn object(
        &mut self,
        s: &Map<String, Value>,
        m: &Map<String, Value>,
        v: &Value,
        path: &FieldPath,
    ) {
        for name in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !m.contains_key(name) {
                self.push(
                    "FieldValueRequired",
                    &path.child(name),
                    "Required value".into(),
                );
            }
        }
        let n = m.len() as u64;
        if let Some(max) = s.get("maxProperties").and_then(Value::as_u64)
            && n > max
        {
            self.push(
                "FieldValueTooMany",
                path,
                format!("Too many: {n}: must have at most {max} items"),
            );
        }
        if let Some(min) = s.get("minProperties").and_then(Value::as_u64)
            && n < min
        {
            self.invalid(path, v, &format!("should have at least {min} properties"));
        }
        let properties = s.get("properties").and_then(Value::as_object);
        let additional = s.get("additionalProperties").filter(|a| a.is_object());
        let embedded = flag(s, "x-kubernetes-embedded-resource");
        for (k, child) in m {
            // An object's (or an embedded resource's) metadata is validated as ObjectMeta,
            // not by the schema, as upstream.
            if k == "metadata" && (path.as_str().is_empty() || embedded) {
                continue;
            }
            match properties.and_then(|p| p.get(k)) {
                Some(prop) => self.node(prop, child, &path.child(k)),
                None => {
                    if let Some(a) = additional {
                        self.node(a, child, &path.child(k));
                    }
                }
            }
        }
        if embedded {
            for f in ["apiVersion", "kind"] {
                if m.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                    self.push(
                        "FieldValueRequired",
                        &path.child(f),
                        "Required value: must not be empty".into(),
                    );
                }
            }
        }
    }

    /// `allOf`, `anyOf`, `oneOf` and `not` (value validations only, in structural schemas).
    fn combinators(&mut self, s: &Map<String, Value>, v: &Value, path: &FieldPath) {
        for sub in s
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.node(sub, v, path);
        }
        let passes = |sub: &Value| validate_at(sub, v, path).is_empty();
        if let Some(any) = s.get("anyOf").and_then(Value::as_array)
            && !any.iter().any(passes)
        {
            self.invalid(path, v, "must validate at least one schema (anyOf)");
        }
        if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
            let n = one.iter().filter(|sub| passes(sub)).count();
            if n != 1 {
                self.invalid(path, v, "must validate one and only one schema (oneOf)");
            }
        }
        if let Some(not) = s.get("not")
            && passes(not)
        {
            self.invalid(path, v, "must not validate the schema (not)");
        }
    }
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.as_number().is_some_and(is_integer),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

/// Deep equality with numbers compared by value (`1` equals `1.0`), as the validator's.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_equal(a, b)))
        }
        _ => a == b,
    }
}

fn validate_at(schema: &Value, v: &Value, path: &FieldPath) -> Vec<StatusCause> {
    let mut validator = Validator { causes: Vec::new() };
    validator.node(schema, v, path);
    validator.causes
}

/// Validates a value found at `root` (a CRD's `default`, checked against its own schema).
pub fn validate_at_root(schema: &Value, v: &Value, root: &str) -> Vec<StatusCause> {
    validate_at(schema, v, &FieldPath(root.to_string()))
}

/// Validates a whole custom object against its version's schema.
pub fn validate(schema: &Value, obj: &Value) -> Vec<StatusCause> {
    validate_at(schema, obj, &FieldPath::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(schema: Value, obj: Value) -> Vec<String> {
        validate(&schema, &obj)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    fn spec(props: Value, spec: Value) -> Vec<String> {
        messages(
            json!({"type": "object", "properties": {"spec": {"type": "object", "properties": props}}}),
            json!({"apiVersion": "example.com/v1", "kind": "W", "metadata": {"name": "w"}, "spec": spec}),
        )
    }

    #[test]
    fn maximum_and_exclusive_minimum_are_worded_as_upstream() {
        let props = json!({"replicas": {"type": "integer", "maximum": 10, "minimum": 1, "exclusiveMinimum": true}});
        assert_eq!(
            spec(props.clone(), json!({"replicas": 11})),
            [
                "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"
            ]
        );
        assert_eq!(
            spec(props, json!({"replicas": 1})),
            ["spec.replicas: Invalid value: 1: spec.replicas in body should be greater than 1"]
        );
    }

    #[test]
    fn a_type_mismatch_names_both_types() {
        assert_eq!(
            spec(
                json!({"replicas": {"type": "integer"}}),
                json!({"replicas": "three"})
            ),
            [
                r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#
            ]
        );
        assert!(
            spec(
                json!({"replicas": {"type": "integer"}}),
                json!({"replicas": 3.0})
            )
            .is_empty()
        );
    }

    #[test]
    fn required_enum_and_null() {
        let props = json!({"mode": {"type": "string", "enum": ["a", "b"]}, "n": {"type": "string"}, "m": {"type": "string", "nullable": true}});
        assert_eq!(
            spec(props.clone(), json!({"mode": "x", "m": null})),
            [r#"spec.mode: Unsupported value: "x": supported values: "a", "b""#]
        );
        assert_eq!(
            spec(props, json!({"n": null})),
            [r#"spec.n: Invalid value: "null": spec.n in body must be of type string: "null""#]
        );
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["size"], "properties": {"size": {"type": "integer"}}}}});
        assert_eq!(
            messages(schema, json!({"spec": {}})),
            ["spec.size: Required value"]
        );
    }

    #[test]
    fn strings_lengths_patterns_and_formats() {
        let props = json!({
            "name": {"type": "string", "minLength": 2, "maxLength": 4, "pattern": "^[a-z]+$"},
            "at": {"type": "string", "format": "date-time"},
        });
        assert_eq!(
            spec(props.clone(), json!({"name": "toolong"})),
            ["spec.name: Too long: may not be more than 4 bytes"]
        );
        assert_eq!(
            spec(props.clone(), json!({"name": "A"})),
            [
                r#"spec.name: Invalid value: "A": spec.name in body should be at least 2 chars long"#,
                r#"spec.name: Invalid value: "A": spec.name in body should match '^[a-z]+$'"#
            ]
        );
        assert_eq!(
            spec(props.clone(), json!({"at": "yesterday"})),
            [
                r#"spec.at: Invalid value: "yesterday": spec.at in body must be of type date-time: "yesterday""#
            ]
        );
        assert!(spec(props, json!({"at": "2024-01-02T03:04:05Z", "name": "abc"})).is_empty());
    }

    #[test]
    fn arrays_and_maps() {
        let props = json!({
            "tags": {"type": "array", "minItems": 1, "maxItems": 2, "uniqueItems": true, "items": {"type": "string"}},
            "labels": {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "integer"}},
        });
        assert_eq!(
            spec(props.clone(), json!({"tags": ["a", "a", 3]})),
            [
                "spec.tags: Too many: 3: must have at most 2 items",
                r#"spec.tags[1]: Duplicate value: "a""#,
                r#"spec.tags[2]: Invalid value: "integer": spec.tags[2] in body must be of type string: "integer""#,
            ]
        );
        assert_eq!(
            spec(props, json!({"labels": {"a": 1, "b": "x"}})),
            [
                "spec.labels: Too many: 2: must have at most 1 items",
                r#"spec.labels.b: Invalid value: "string": spec.labels.b in body must be of type integer: "string""#,
            ]
        );
    }

    #[test]
    fn int_or_string_takes_both() {
        let props = json!({"port": {"x-kubernetes-int-or-string": true}});
        assert!(spec(props.clone(), json!({"port": 80})).is_empty());
        assert!(spec(props.clone(), json!({"port": "http"})).is_empty());
        assert_eq!(
            spec(props, json!({"port": true})),
            [
                r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#
            ]
        );
    }
}
