//! The CustomResourceDefinition object itself: its defaults, its validation (names, scope,
//! versions, subresources, conversion and the structural-schema rules) with upstream's field
//! paths and messages, and the status the server gives it (`acceptedNames`,
//! `storedVersions`, and the `NamesAccepted` and `Established` conditions).

use kybernetes_core::status::StatusCause;
use kybernetes_core::validation;
use serde_json::{Map, Value, json};

use crate::object;

fn cause(reason: &str, field: &str, message: impl Into<String>) -> StatusCause {
    StatusCause {
        reason: reason.into(),
        message: message.into(),
        field: field.into(),
    }
}

fn required(field: &str, detail: &str) -> StatusCause {
    let message = if detail.is_empty() {
        "Required value".to_string()
    } else {
        format!("Required value: {detail}")
    };
    cause("FieldValueRequired", field, message)
}

fn invalid(field: &str, value: &Value, detail: &str) -> StatusCause {
    cause(
        "FieldValueInvalid",
        field,
        format!(
            "Invalid value: {}: {detail}",
            super::schema::display_value(value)
        ),
    )
}

fn unsupported(field: &str, value: &str, supported: &[&str]) -> StatusCause {
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    cause(
        "FieldValueNotSupported",
        field,
        format!(
            "Unsupported value: {value:?}: supported values: {}",
            list.join(", ")
        ),
    )
}

fn forbidden(field: &str, detail: &str) -> StatusCause {
    cause("FieldValueForbidden", field, format!("Forbidden: {detail}"))
}

/// Upstream's `IsDNS1035Label`: a DNS-1123 label that starts with a letter.
fn dns1035_label(value: &str) -> Vec<String> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && value.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        return Vec::new();
    }
    vec![
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".into(),
    ]
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Upstream's `SetDefaults` of a CRD: `singular` and `listKind` from `kind`, conversion
/// `None`.
pub fn set_defaults(crd: &mut Value) {
    let kind = str_at(crd, "/spec/names/kind").to_string();
    if let Some(names) = crd
        .pointer_mut("/spec/names")
        .and_then(Value::as_object_mut)
        && !kind.is_empty()
    {
        for (field, value) in [
            ("singular", kind.to_lowercase()),
            ("listKind", format!("{kind}List")),
        ] {
            if names
                .get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                names.insert(field.into(), json!(value));
            }
        }
    }
    if let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) {
        let conversion = spec
            .entry("conversion")
            .or_insert_with(|| json!({"strategy": "None"}));
        if let Some(c) = conversion.as_object_mut() {
            c.entry("strategy").or_insert_with(|| json!("None"));
        }
    }
}

/// Every problem with a CRD, as upstream's `ValidateCustomResourceDefinition`.
pub fn validate(crd: &Value) -> Vec<StatusCause> {
    let mut causes = Vec::new();
    let name = object::meta_str(crd, "name").unwrap_or("");
    let group = str_at(crd, "/spec/group");
    let plural = str_at(crd, "/spec/names/plural");
    if group.is_empty() {
        causes.push(required("spec.group", ""));
    } else if !group.contains('.') {
        causes.push(invalid(
            "spec.group",
            &json!(group),
            "should be a domain with at least one dot",
        ));
    } else {
        for e in validation::is_dns1123_subdomain(group) {
            causes.push(invalid("spec.group", &json!(group), &e));
        }
    }
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        causes.push(invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match str_at(crd, "/spec/scope") {
        "" => causes.push(required("spec.scope", "")),
        "Cluster" | "Namespaced" => {}
        other => causes.push(unsupported("spec.scope", other, &["Cluster", "Namespaced"])),
    }
    validate_names(crd.pointer("/spec/names"), &mut causes);
    validate_versions(crd, &mut causes);
    match str_at(crd, "/spec/conversion/strategy") {
        "" | "None" => {}
        other => causes.push(unsupported("spec.conversion.strategy", other, &["None"])),
    }
    causes
}

fn validate_names(names: Option<&Value>, causes: &mut Vec<StatusCause>) {
    let empty = json!({});
    let names = names.unwrap_or(&empty);
    let s = |k: &str| names.get(k).and_then(Value::as_str).unwrap_or("");
    let label = |field: &str, value: &str, causes: &mut Vec<StatusCause>| {
        for e in dns1035_label(value) {
            causes.push(invalid(field, &json!(value), &e));
        }
    };
    match s("plural") {
        "" => causes.push(required("spec.names.plural", "")),
        p => label("spec.names.plural", p, causes),
    }
    match s("singular") {
        "" => {}
        v => label("spec.names.singular", v, causes),
    }
    match s("kind") {
        "" => causes.push(required("spec.names.kind", "")),
        k => label("spec.names.kind", &k.to_lowercase(), causes),
    }
    match s("listKind") {
        "" => {}
        k => {
            label("spec.names.listKind", &k.to_lowercase(), causes);
            if k == s("kind") {
                causes.push(invalid(
                    "spec.names.listKind",
                    &json!(k),
                    "kind and listKind may not be the same",
                ));
            }
        }
    }
    for (field, key) in [
        ("spec.names.shortNames", "shortNames"),
        ("spec.names.categories", "categories"),
    ] {
        for (i, v) in names
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let v = v.as_str().unwrap_or("");
            label(&format!("{field}[{i}]"), v, causes);
        }
    }
}

fn validate_versions(crd: &Value, causes: &mut Vec<StatusCause>) {
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(required("spec.versions", "must have exactly one version"));
        return;
    }
    let flag = |v: &Value, k: &str| v.get(k).and_then(Value::as_bool) == Some(true);
    let names: Vec<&str> = versions
        .iter()
        .map(|v| v.get("name").and_then(Value::as_str).unwrap_or(""))
        .collect();
    let shown = json!(names);
    if versions.iter().filter(|v| flag(v, "storage")).count() != 1 {
        causes.push(invalid(
            "spec.versions",
            &shown,
            "must have exactly one version marked as storage version",
        ));
    }
    if !versions.iter().any(|v| flag(v, "served")) {
        causes.push(invalid(
            "spec.versions",
            &shown,
            "must have at least one version marked as served",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        let path = format!("spec.versions[{i}]");
        let name = names[i];
        if name.is_empty() {
            causes.push(required(&format!("{path}.name"), ""));
        } else {
            for e in dns1035_label(name) {
                causes.push(invalid(&format!("{path}.name"), &json!(name), &e));
            }
        }
        if names[..i].contains(&name) {
            causes.push(cause(
                "FieldValueDuplicate",
                &format!("{path}.name"),
                format!("Duplicate value: {name:?}"),
            ));
        }
        match v.pointer("/schema/openAPIV3Schema") {
            Some(schema) => {
                structural::validate_root(schema, &format!("{path}.schema.openAPIV3Schema"), causes)
            }
            None => causes.push(required(
                &format!("{path}.schema.openAPIV3Schema"),
                "schemas are required",
            )),
        }
        if let Some(scale) = v.pointer("/subresources/scale") {
            validate_scale(scale, &format!("{path}.subresources.scale"), causes);
        }
    }
}

fn validate_scale(scale: &Value, path: &str, causes: &mut Vec<StatusCause>) {
    for (field, under) in [
        ("specReplicasPath", ".spec."),
        ("statusReplicasPath", ".status."),
    ] {
        let p = scale.get(field).and_then(Value::as_str).unwrap_or("");
        let at = format!("{path}.{field}");
        if p.is_empty() {
            causes.push(required(&at, ""));
        } else if !p.starts_with(under) || p.ends_with('.') {
            causes.push(invalid(
                &at,
                &json!(p),
                &format!(
                    "should be a json path under {}",
                    under.trim_end_matches('.')
                ),
            ));
        }
    }
    if let Some(p) = scale.get("labelSelectorPath").and_then(Value::as_str)
        && !(p.starts_with(".spec.") || p.starts_with(".status."))
    {
        causes.push(invalid(
            &format!("{path}.labelSelectorPath"),
            &json!(p),
            "should be a json path under either .spec or .status",
        ));
    }
}

/// The structural-schema rules (upstream's `ValidateStructural`), the main ones: a `type`
/// everywhere except under `x-kubernetes-preserve-unknown-fields` or
/// `x-kubernetes-int-or-string`, no `additionalProperties` beside `properties`, `items` on
/// arrays, an object at the root, `metadata` limited to `name` and `generateName`, patterns
/// that compile, and defaults that validate.
mod structural {
    use super::*;

    const TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

    pub fn validate_root(schema: &Value, path: &str, causes: &mut Vec<StatusCause>) {
        let Some(s) = schema.as_object() else {
            causes.push(invalid(path, schema, "must be a schema object"));
            return;
        };
        match s.get("type").and_then(Value::as_str) {
            Some("object") => {}
            None if flag(s, "x-kubernetes-preserve-unknown-fields") => {}
            None => causes.push(required(
                &format!("{path}.type"),
                "must not be empty at the root",
            )),
            Some(other) => causes.push(invalid(
                &format!("{path}.type"),
                &json!(other),
                "must be object at the root",
            )),
        }
        if let Some(meta) = s.get("properties").and_then(|p| p.get("metadata")) {
            validate_metadata(meta, &format!("{path}.properties[metadata]"), causes);
        }
        node(s, path, Context::Root, causes);
    }

    #[derive(Clone, Copy, PartialEq)]
    pub enum Context {
        Root,
        Property,
        Items,
        /// Inside allOf/anyOf/oneOf/not: value validations only, no type needed.
        Junctor,
    }

    fn flag(s: &Map<String, Value>, key: &str) -> bool {
        s.get(key).and_then(Value::as_bool) == Some(true)
    }

    fn validate_metadata(meta: &Value, path: &str, causes: &mut Vec<StatusCause>) {
        let Some(m) = meta.as_object() else { return };
        let allowed_keys = ["type", "properties", "description"];
        let props_ok = m
            .get("properties")
            .and_then(Value::as_object)
            .is_none_or(|p| {
                p.iter().all(|(k, v)| {
                    matches!(k.as_str(), "name" | "generateName")
                        && v.get("type").and_then(Value::as_str) == Some("string")
                })
            });
        if !props_ok || m.keys().any(|k| !allowed_keys.contains(&k.as_str())) {
            causes.push(forbidden(
                path,
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            ));
        }
    }

    fn node(s: &Map<String, Value>, path: &str, ctx: Context, causes: &mut Vec<StatusCause>) {
        let ty = s.get("type").and_then(Value::as_str);
        let preserve = s.get("x-kubernetes-preserve-unknown-fields");
        let int_or_string = flag(s, "x-kubernetes-int-or-string");
        if preserve.is_some_and(|p| p != &Value::Bool(true)) {
            causes.push(invalid(
                &format!("{path}.x-kubernetes-preserve-unknown-fields"),
                preserve.unwrap_or(&Value::Null),
                "must be true or undefined",
            ));
        }
        match ty {
            Some(t) if !TYPES.contains(&t) => {
                causes.push(unsupported(&format!("{path}.type"), t, &TYPES))
            }
            Some(t) if int_or_string => causes.push(invalid(
                &format!("{path}.type"),
                &json!(t),
                "must be empty if x-kubernetes-int-or-string is true",
            )),
            None if !int_or_string && preserve.is_none() && ctx != Context::Junctor => {
                let detail = match ctx {
                    Context::Items => "must not be empty for specified array items",
                    _ => "must not be empty for specified object fields",
                };
                if ctx != Context::Root {
                    causes.push(required(&format!("{path}.type"), detail));
                }
            }
            _ => {}
        }
        if flag(s, "x-kubernetes-embedded-resource") && ty != Some("object") {
            causes.push(required(
                &format!("{path}.type"),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        }
        let properties = s.get("properties").and_then(Value::as_object);
        if properties.is_some_and(|p| !p.is_empty()) && s.contains_key("additionalProperties") {
            causes.push(forbidden(
                &format!("{path}.additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if ty == Some("array") && ctx != Context::Junctor && !s.contains_key("items") {
            causes.push(required(&format!("{path}.items"), "must be specified"));
        }
        if let Some(p) = s.get("pattern").and_then(Value::as_str)
            && let Err(e) = regex::Regex::new(p)
        {
            causes.push(invalid(
                &format!("{path}.pattern"),
                &json!(p),
                &format!("must be a valid regular expression, but isn't: {e}"),
            ));
        }
        for (k, child) in properties.into_iter().flatten() {
            if let Some(c) = child.as_object() {
                node(
                    c,
                    &format!("{path}.properties[{k}]"),
                    Context::Property,
                    causes,
                );
            }
        }
        if let Some(items) = s.get("items") {
            match items.as_object() {
                Some(c) => node(c, &format!("{path}.items"), Context::Items, causes),
                None => causes.push(forbidden(
                    &format!("{path}.items"),
                    "items must be a schema object and not an array",
                )),
            }
        }
        if let Some(c) = s.get("additionalProperties").and_then(Value::as_object) {
            node(
                c,
                &format!("{path}.additionalProperties"),
                Context::Property,
                causes,
            );
        }
        for j in ["allOf", "anyOf", "oneOf"] {
            for (i, sub) in s
                .get(j)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                if let Some(c) = sub.as_object() {
                    node(c, &format!("{path}.{j}[{i}]"), Context::Junctor, causes);
                }
            }
        }
        if let Some(c) = s.get("not").and_then(Value::as_object) {
            node(c, &format!("{path}.not"), Context::Junctor, causes);
        }
        if let Some(d) = s.get("default") {
            let schema = Value::Object(s.clone());
            causes.extend(crate::crd::schema::validate_at_root(
                &schema,
                d,
                &format!("{path}.default"),
            ));
            let mut pruned = d.clone();
            let dropped = crate::crd::prune::prune_value(&schema, &mut pruned);
            if let Some(field) = dropped.first() {
                causes.push(invalid(
                    &format!("{path}.default"),
                    d,
                    &format!("must not have unknown fields, but {field:?} is not specified"),
                ));
            }
        }
    }
}

/// The status of an accepted CRD: `acceptedNames` from the spec, the storage version added
/// to `storedVersions` (upstream never removes one itself), and the conditions.
pub fn accepted_status(crd: &Value, old_status: Option<&Value>, now: &str) -> Value {
    let mut names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    if let Some(m) = names.as_object_mut() {
        m.remove("categories")
            .map(|c| m.insert("categories".into(), c));
    }
    let mut stored: Vec<Value> = old_status
        .and_then(|s| s.get("storedVersions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for v in crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .filter_map(|v| v.get("name"))
    {
        if !stored.contains(v) {
            stored.push(v.clone());
        }
    }
    let old_conditions = old_status
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array);
    let cond = |t: &str, reason: &str, msg: &str| {
        // A condition that stays True keeps its transition time.
        let since = old_conditions
            .into_iter()
            .flatten()
            .find(|c| {
                c.get("type").and_then(Value::as_str) == Some(t)
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or(json!(now));
        json!({"type": t, "status": "True", "lastTransitionTime": since, "reason": reason, "message": msg})
    };
    json!({
        "acceptedNames": names,
        "storedVersions": stored,
        "conditions": [
            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(schema: Value) -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": schema}}]},
        })
    }

    fn fields(causes: Vec<StatusCause>) -> Vec<String> {
        causes
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn a_structural_schema_is_accepted() {
        let schema = json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "port": {"x-kubernetes-int-or-string": true},
            "extra": {"x-kubernetes-preserve-unknown-fields": true},
            "tags": {"type": "array", "items": {"type": "string"}},
            "size": {"type": "integer", "default": 3},
        }}}});
        assert_eq!(fields(validate(&crd(schema))), Vec::<String>::new());
    }

    #[test]
    fn a_field_without_type_is_not_structural() {
        let schema = json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}});
        assert_eq!(
            fields(validate(&crd(schema))),
            [
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields"
            ]
        );
    }

    #[test]
    fn properties_with_additional_properties_and_arrays_without_items_are_rejected() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"a": {"type": "array"}}, "additionalProperties": {"type": "string"}}}});
        assert_eq!(
            fields(validate(&crd(schema))),
            [
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[a].items: Required value: must be specified",
            ]
        );
    }

    #[test]
    fn names_and_versions_are_checked() {
        let mut c = crd(json!({"type": "object"}));
        c["metadata"]["name"] = json!("gadgets.example.com");
        c["spec"]["versions"][0]["storage"] = json!(false);
        c["spec"]["scope"] = json!("Global");
        assert_eq!(
            fields(validate(&c)),
            [
                r#"metadata.name: Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group"#,
                r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#,
                r#"spec.versions: Invalid value: ["v1"]: must have exactly one version marked as storage version"#,
            ]
        );
    }

    #[test]
    fn a_default_must_validate() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer", "default": "big"}}}}});
        assert_eq!(
            fields(validate(&crd(schema))),
            [
                r#"spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[size].default: Invalid value: "string": spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[size].default in body must be of type integer: "string""#
            ]
        );
    }
}
