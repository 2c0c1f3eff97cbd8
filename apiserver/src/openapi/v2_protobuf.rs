//! The Swagger 2.0 document in protobuf, in gnostic's `openapi.v2` schema
//! (`github.com/google/gnostic-models`, `openapiv2/OpenAPIv2.proto`), as upstream's
//! kube-openapi serves it to `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`.
//!
//! kubectl asks for `/openapi/v2` in this form only, when a manifest's group-version is not
//! in the v3 index (`apiVersion: v9`); a server that cannot answer makes it print "error
//! validating data" instead of the "no matches for kind" upstream gives.
//!
//! Upstream parses its JSON document with gnostic and marshals the result; this does the
//! same walk over the JSON [`Value`]: each JSON object becomes the message its position names,
//! each key the field of that name. Keys gnostic keeps as vendor extensions (`x-...`) become
//! `NamedAny` entries whose `Any` carries the value as YAML (we write JSON, which is YAML);
//! `$ref` becomes `_ref`; a schema's `type` a `TypeItem`, its `items` an `ItemsItem`.
//!
//! Keys that Swagger 2.0 has no field for (a custom resource's `nullable`, `anyOf`, `oneOf`,
//! which its `openAPIV3Schema` may carry) are left out, as upstream leaves them out of its v2
//! document; [`encode`] reports them so the caller can log them.
//!
//! ```
//! use kybernetes_apiserver::openapi::v2_protobuf::encode;
//! let doc = serde_json::json!({"swagger": "2.0", "info": {"title": "Kubernetes"}});
//! let (bytes, dropped) = encode(&doc);
//! // Document.swagger (1) = "2.0"; Document.info (2) = Info {title (1) = "Kubernetes"}.
//! assert_eq!(bytes, b"\x0a\x032.0\x12\x0c\x0a\x0aKubernetes");
//! assert!(dropped.is_empty());
//! ```

use std::collections::BTreeSet;

use serde_json::Value;

use crate::protobuf::writer::MessageWriter;

/// What one JSON key of a message becomes.
#[derive(Clone, Copy)]
enum Field {
    /// `string`.
    Str,
    /// `bool`.
    Bool,
    /// `int64`.
    Int,
    /// `double`.
    Double,
    /// `repeated string`.
    Strings,
    /// `Any`: the value as YAML.
    Any,
    /// `repeated Any`: one per element of a JSON array.
    Anys,
    /// An embedded message.
    Message(Encoder),
    /// A repeated embedded message: one per element of a JSON array.
    Messages(Encoder),
}

/// Encodes one JSON value as a message, noting the keys it has no field for.
type Encoder = fn(&Value, &mut Dropped) -> MessageWriter;

/// Keys left out, as `Message.key`.
type Dropped = BTreeSet<String>;

/// A message read from a JSON object key by key.
struct Shape {
    /// The message's name in the `.proto`, for what [`encode`] reports.
    name: &'static str,
    /// JSON key, field number, and what the field is.
    fields: &'static [(&'static str, u32, Field)],
    /// The `vendor_extension` field, which takes the `x-...` keys.
    vendor_extension: u32,
}

/// The document's protobuf bytes, and the keys (`Message.key`) it had no field for.
pub fn encode(document: &Value) -> (Vec<u8>, BTreeSet<String>) {
    let mut dropped = Dropped::new();
    let bytes = object(document, &DOCUMENT, &mut dropped).bytes().to_vec();
    (bytes, dropped)
}

fn object(v: &Value, shape: &Shape, dropped: &mut Dropped) -> MessageWriter {
    let mut w = MessageWriter::new();
    let Some(map) = v.as_object() else {
        dropped.insert(format!("{} (not an object)", shape.name));
        return w;
    };
    // In field-number order, as Go's protobuf writes a message (any order decodes the same).
    for (key, number, field) in shape.fields {
        if let Some(value) = map.get(*key) {
            w = put(w, *number, *field, value, dropped).unwrap_or_else(|w| {
                dropped.insert(format!("{}.{key}", shape.name));
                w
            });
        }
    }
    for (key, value) in map {
        if shape.fields.iter().any(|(k, ..)| k == key) {
            continue;
        } else if key.starts_with("x-") {
            w = w.message(shape.vendor_extension, named_any(key, value));
        } else {
            dropped.insert(format!("{}.{key}", shape.name));
        }
    }
    w
}

/// Writes one field; `Err` gives the writer back when the value's JSON type does not fit.
fn put(
    w: MessageWriter,
    number: u32,
    field: Field,
    v: &Value,
    dropped: &mut Dropped,
) -> Result<MessageWriter, MessageWriter> {
    Ok(match (field, v) {
        (Field::Str, Value::String(s)) => w.string(number, s),
        (Field::Bool, Value::Bool(b)) => w.varint(number, i64::from(*b)),
        (Field::Int, Value::Number(n)) => match n.as_i64() {
            Some(i) => w.varint(number, i),
            None => return Err(w),
        },
        (Field::Double, Value::Number(n)) => match n.as_f64() {
            Some(f) => w.double(number, f),
            None => return Err(w),
        },
        (Field::Strings, Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .fold(w, |w, s| w.string(number, s)),
        (Field::Any, v) => w.message(number, any(v)),
        (Field::Anys, Value::Array(items)) => {
            items.iter().fold(w, |w, item| w.message(number, any(item)))
        }
        (Field::Message(encoder), v) => w.message(number, encoder(v, dropped)),
        (Field::Messages(encoder), Value::Array(items)) => items
            .iter()
            .fold(w, |w, item| w.message(number, encoder(item, dropped))),
        _ => return Err(w),
    })
}

/// `Any {yaml = 2}`: gnostic keeps values it has no message for as their YAML text.
fn any(v: &Value) -> MessageWriter {
    MessageWriter::new().string(2, &v.to_string())
}

/// `NamedAny {name = 1, value = 2}`.
fn named_any(name: &str, v: &Value) -> MessageWriter {
    MessageWriter::new().string(1, name).message(2, any(v))
}

/// A JSON object of named values as repeated `Named<Value> {name = 1, value = 2}` at
/// `number`; `x-...` keys go to `vendor_extension` when the message has one.
fn named(
    v: &Value,
    what: &str,
    number: u32,
    vendor_extension: Option<u32>,
    value: Encoder,
    dropped: &mut Dropped,
) -> MessageWriter {
    let mut w = MessageWriter::new();
    let Some(map) = v.as_object() else {
        dropped.insert(format!("{what} (not an object)"));
        return w;
    };
    for (key, v) in map {
        match vendor_extension {
            Some(ext) if key.starts_with("x-") => w = w.message(ext, named_any(key, v)),
            _ => {
                let entry = MessageWriter::new()
                    .string(1, key)
                    .message(2, value(v, dropped));
                w = w.message(number, entry);
            }
        }
    }
    w
}

const DOCUMENT: Shape = Shape {
    name: "Document",
    fields: &[
        ("swagger", 1, Field::Str),
        ("info", 2, Field::Message(info)),
        ("host", 3, Field::Str),
        ("basePath", 4, Field::Str),
        ("schemes", 5, Field::Strings),
        ("consumes", 6, Field::Strings),
        ("produces", 7, Field::Strings),
        ("paths", 8, Field::Message(paths)),
        ("definitions", 9, Field::Message(definitions)),
        ("parameters", 10, Field::Message(parameter_definitions)),
        ("responses", 11, Field::Message(response_definitions)),
        ("security", 12, Field::Messages(security_requirement)),
        (
            "securityDefinitions",
            13,
            Field::Message(security_definitions),
        ),
    ],
    vendor_extension: 16,
};

fn info(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    const INFO: Shape = Shape {
        name: "Info",
        fields: &[
            ("title", 1, Field::Str),
            ("version", 2, Field::Str),
            ("description", 3, Field::Str),
            ("termsOfService", 4, Field::Str),
        ],
        vendor_extension: 7,
    };
    object(v, &INFO, dropped)
}

/// `Paths {vendor_extension = 1, path = 2}`.
fn paths(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    named(v, "Paths", 2, Some(1), path_item, dropped)
}

fn path_item(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    const PATH_ITEM: Shape = Shape {
        name: "PathItem",
        fields: &[
            ("$ref", 1, Field::Str),
            ("get", 2, Field::Message(operation)),
            ("put", 3, Field::Message(operation)),
            ("post", 4, Field::Message(operation)),
            ("delete", 5, Field::Message(operation)),
            ("options", 6, Field::Message(operation)),
            ("head", 7, Field::Message(operation)),
            ("patch", 8, Field::Message(operation)),
            ("parameters", 9, Field::Messages(parameters_item)),
        ],
        vendor_extension: 10,
    };
    object(v, &PATH_ITEM, dropped)
}

fn operation(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    const OPERATION: Shape = Shape {
        name: "Operation",
        fields: &[
            ("tags", 1, Field::Strings),
            ("summary", 2, Field::Str),
            ("description", 3, Field::Str),
            ("operationId", 5, Field::Str),
            ("produces", 6, Field::Strings),
            ("consumes", 7, Field::Strings),
            ("parameters", 8, Field::Messages(parameters_item)),
            ("responses", 9, Field::Message(responses)),
            ("schemes", 10, Field::Strings),
            ("deprecated", 11, Field::Bool),
            ("security", 12, Field::Messages(security_requirement)),
        ],
        vendor_extension: 13,
    };
    object(v, &OPERATION, dropped)
}

/// `JsonReference {_ref = 1, description = 2}`.
fn json_reference(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    let mut w = MessageWriter::new();
    for (key, value) in v.as_object().into_iter().flatten() {
        match (key.as_str(), value) {
            ("$ref", Value::String(s)) => w = w.string(1, s),
            ("description", Value::String(s)) => w = w.string(2, s),
            _ => {
                dropped.insert(format!("JsonReference.{key}"));
            }
        }
    }
    w
}

/// `ParametersItem {oneof parameter = 1 | json_reference = 2}`.
fn parameters_item(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    if v.get("$ref").is_some() {
        MessageWriter::new().message(2, json_reference(v, dropped))
    } else {
        MessageWriter::new().message(1, parameter(v, dropped))
    }
}

/// `Parameter {oneof body_parameter = 1 | non_body_parameter = 2}`, by `in`; a
/// `NonBodyParameter` is `{oneof header = 1 | form_data = 2 | query = 3 | path = 4}`.
fn parameter(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    let (shape, which) = match v.get("in").and_then(Value::as_str) {
        Some("body") => {
            return MessageWriter::new().message(1, object(v, &BODY_PARAMETER, dropped));
        }
        Some("header") => (&HEADER_PARAMETER, 1),
        Some("formData") => (&FORM_DATA_PARAMETER, 2),
        Some("path") => (&PATH_PARAMETER, 4),
        _ => (&QUERY_PARAMETER, 3),
    };
    let sub = MessageWriter::new().message(which, object(v, shape, dropped));
    MessageWriter::new().message(2, sub)
}

const BODY_PARAMETER: Shape = Shape {
    name: "BodyParameter",
    fields: &[
        ("description", 1, Field::Str),
        ("name", 2, Field::Str),
        ("in", 3, Field::Str),
        ("required", 4, Field::Bool),
        ("schema", 5, Field::Message(schema)),
    ],
    vendor_extension: 6,
};

/// The fields of `QueryParameterSubSchema` and `FormDataParameterSubSchema`, which number
/// them alike.
const QUERY_FIELDS: &[(&str, u32, Field)] = &[
    ("required", 1, Field::Bool),
    ("in", 2, Field::Str),
    ("description", 3, Field::Str),
    ("name", 4, Field::Str),
    ("allowEmptyValue", 5, Field::Bool),
    ("type", 6, Field::Str),
    ("format", 7, Field::Str),
    ("items", 8, Field::Message(primitives_items)),
    ("collectionFormat", 9, Field::Str),
    ("default", 10, Field::Any),
    ("maximum", 11, Field::Double),
    ("exclusiveMaximum", 12, Field::Bool),
    ("minimum", 13, Field::Double),
    ("exclusiveMinimum", 14, Field::Bool),
    ("maxLength", 15, Field::Int),
    ("minLength", 16, Field::Int),
    ("pattern", 17, Field::Str),
    ("maxItems", 18, Field::Int),
    ("minItems", 19, Field::Int),
    ("uniqueItems", 20, Field::Bool),
    ("enum", 21, Field::Anys),
    ("multipleOf", 22, Field::Double),
];

/// The fields of `PathParameterSubSchema` and `HeaderParameterSubSchema` (no
/// `allowEmptyValue`, so one less than [`QUERY_FIELDS`] from `type` on).
const PATH_FIELDS: &[(&str, u32, Field)] = &[
    ("required", 1, Field::Bool),
    ("in", 2, Field::Str),
    ("description", 3, Field::Str),
    ("name", 4, Field::Str),
    ("type", 5, Field::Str),
    ("format", 6, Field::Str),
    ("items", 7, Field::Message(primitives_items)),
    ("collectionFormat", 8, Field::Str),
    ("default", 9, Field::Any),
    ("maximum", 10, Field::Double),
    ("exclusiveMaximum", 11, Field::Bool),
    ("minimum", 12, Field::Double),
    ("exclusiveMinimum", 13, Field::Bool),
    ("maxLength", 14, Field::Int),
    ("minLength", 15, Field::Int),
    ("pattern", 16, Field::Str),
    ("maxItems", 17, Field::Int),
    ("minItems", 18, Field::Int),
    ("uniqueItems", 19, Field::Bool),
    ("enum", 20, Field::Anys),
    ("multipleOf", 21, Field::Double),
];

const QUERY_PARAMETER: Shape = Shape {
    name: "QueryParameterSubSchema",
    fields: QUERY_FIELDS,
    vendor_extension: 23,
};
const FORM_DATA_PARAMETER: Shape = Shape {
    name: "FormDataParameterSubSchema",
    fields: QUERY_FIELDS,
    vendor_extension: 23,
};
const PATH_PARAMETER: Shape = Shape {
    name: "PathParameterSubSchema",
    fields: PATH_FIELDS,
    vendor_extension: 22,
};
const HEADER_PARAMETER: Shape = Shape {
    name: "HeaderParameterSubSchema",
    fields: PATH_FIELDS,
    vendor_extension: 22,
};

fn primitives_items(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    const PRIMITIVES_ITEMS: Shape = Shape {
        name: "PrimitivesItems",
        fields: &[
            ("type", 1, Field::Str),
            ("format", 2, Field::Str),
            ("items", 3, Field::Message(primitives_items)),
            ("collectionFormat", 4, Field::Str),
            ("default", 5, Field::Any),
            ("maximum", 6, Field::Double),
            ("exclusiveMaximum", 7, Field::Bool),
            ("minimum", 8, Field::Double),
            ("exclusiveMinimum", 9, Field::Bool),
            ("maxLength", 10, Field::Int),
            ("minLength", 11, Field::Int),
            ("pattern", 12, Field::Str),
            ("maxItems", 13, Field::Int),
            ("minItems", 14, Field::Int),
            ("uniqueItems", 15, Field::Bool),
            ("enum", 16, Field::Anys),
            ("multipleOf", 17, Field::Double),
        ],
        vendor_extension: 18,
    };
    object(v, &PRIMITIVES_ITEMS, dropped)
}

/// `Responses {response_code = 1, vendor_extension = 2}`.
fn responses(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    named(v, "Responses", 1, Some(2), response_value, dropped)
}

/// `ResponseValue {oneof response = 1 | json_reference = 2}`.
fn response_value(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    if v.get("$ref").is_some() {
        MessageWriter::new().message(2, json_reference(v, dropped))
    } else {
        MessageWriter::new().message(1, response(v, dropped))
    }
}

fn response(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    const RESPONSE: Shape = Shape {
        name: "Response",
        fields: &[
            ("description", 1, Field::Str),
            ("schema", 2, Field::Message(schema_item)),
        ],
        vendor_extension: 5,
    };
    object(v, &RESPONSE, dropped)
}

/// `SchemaItem {oneof schema = 1 | file_schema = 2}`; no response of ours is a file.
fn schema_item(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    MessageWriter::new().message(1, schema(v, dropped))
}

/// `ParameterDefinitions {repeated NamedParameter additional_properties = 1}`.
fn parameter_definitions(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    named(v, "ParameterDefinitions", 1, None, parameter, dropped)
}

/// `ResponseDefinitions {repeated NamedResponse additional_properties = 1}`.
fn response_definitions(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    named(v, "ResponseDefinitions", 1, None, response, dropped)
}

/// `Definitions {repeated NamedSchema additional_properties = 1}`.
fn definitions(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    named(v, "Definitions", 1, None, schema, dropped)
}

/// `Properties {repeated NamedSchema additional_properties = 1}`.
fn properties(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    named(v, "Properties", 1, None, schema, dropped)
}

fn schema(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    const SCHEMA: Shape = Shape {
        name: "Schema",
        fields: &[
            ("$ref", 1, Field::Str),
            ("format", 2, Field::Str),
            ("title", 3, Field::Str),
            ("description", 4, Field::Str),
            ("default", 5, Field::Any),
            ("multipleOf", 6, Field::Double),
            ("maximum", 7, Field::Double),
            ("exclusiveMaximum", 8, Field::Bool),
            ("minimum", 9, Field::Double),
            ("exclusiveMinimum", 10, Field::Bool),
            ("maxLength", 11, Field::Int),
            ("minLength", 12, Field::Int),
            ("pattern", 13, Field::Str),
            ("maxItems", 14, Field::Int),
            ("minItems", 15, Field::Int),
            ("uniqueItems", 16, Field::Bool),
            ("maxProperties", 17, Field::Int),
            ("minProperties", 18, Field::Int),
            ("required", 19, Field::Strings),
            ("enum", 20, Field::Anys),
            (
                "additionalProperties",
                21,
                Field::Message(additional_properties),
            ),
            ("type", 22, Field::Message(type_item)),
            ("items", 23, Field::Message(items_item)),
            ("allOf", 24, Field::Messages(schema)),
            ("properties", 25, Field::Message(properties)),
            ("discriminator", 26, Field::Str),
            ("readOnly", 27, Field::Bool),
            ("example", 30, Field::Any),
        ],
        vendor_extension: 31,
    };
    object(v, &SCHEMA, dropped)
}

/// `AdditionalPropertiesItem {oneof schema = 1 | boolean = 2}`.
fn additional_properties(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    match v {
        Value::Bool(b) => MessageWriter::new().varint(2, i64::from(*b)),
        v => MessageWriter::new().message(1, schema(v, dropped)),
    }
}

/// `TypeItem {repeated string value = 1}`: `"type": "object"` or `"type": ["string", ...]`.
fn type_item(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    let mut w = MessageWriter::new();
    match v {
        Value::String(s) => w = w.string(1, s),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(s) => w = w.string(1, s),
                    _ => {
                        dropped.insert("TypeItem (not a string)".into());
                    }
                }
            }
        }
        _ => {
            dropped.insert("TypeItem (not a string)".into());
        }
    }
    w
}

/// `ItemsItem {repeated Schema schema = 1}`: one schema, or one per element of an array.
fn items_item(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    match v {
        Value::Array(items) => items.iter().fold(MessageWriter::new(), |w, item| {
            w.message(1, schema(item, dropped))
        }),
        v => MessageWriter::new().message(1, schema(v, dropped)),
    }
}

/// `SecurityRequirement {repeated NamedStringArray additional_properties = 1}`, each
/// `{name = 1, value = StringArray {repeated string value = 1}}`.
fn security_requirement(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    named(v, "SecurityRequirement", 1, None, string_array, dropped)
}

fn string_array(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    let w = MessageWriter::new();
    put(w, 1, Field::Strings, v, dropped).unwrap_or_else(|w| {
        dropped.insert("StringArray (not strings)".into());
        w
    })
}

/// `SecurityDefinitions {repeated NamedSecurityDefinitionsItem additional_properties = 1}`.
fn security_definitions(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    named(
        v,
        "SecurityDefinitions",
        1,
        None,
        security_definitions_item,
        dropped,
    )
}

/// `SecurityDefinitionsItem {oneof basic = 1 | api_key = 2 | oauth2 ... = 3..6}`, by
/// `type`; we define only bearer tokens (`apiKey`) and upstream's `basic`.
fn security_definitions_item(v: &Value, dropped: &mut Dropped) -> MessageWriter {
    const BASIC: Shape = Shape {
        name: "BasicAuthenticationSecurity",
        fields: &[("type", 1, Field::Str), ("description", 2, Field::Str)],
        vendor_extension: 3,
    };
    const API_KEY: Shape = Shape {
        name: "ApiKeySecurity",
        fields: &[
            ("type", 1, Field::Str),
            ("name", 2, Field::Str),
            ("in", 3, Field::Str),
            ("description", 4, Field::Str),
        ],
        vendor_extension: 5,
    };
    match v.get("type").and_then(Value::as_str) {
        Some("basic") => MessageWriter::new().message(1, object(v, &BASIC, dropped)),
        Some("apiKey") => MessageWriter::new().message(2, object(v, &API_KEY, dropped)),
        other => {
            dropped.insert(format!("SecurityDefinitionsItem (type {other:?})"));
            MessageWriter::new()
        }
    }
}

#[cfg(test)]
mod tests;
