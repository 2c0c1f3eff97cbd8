//! The encoding read back with a minimal reader that knows gnostic's field numbers on its
//! own (written from `OpenAPIv2.proto`, not from the encoder's tables).

use std::sync::Arc;

use serde_json::{Value, json};

use super::encode;
use crate::protobuf::wire::{Records, WireValue};

/// Every length-delimited value of field `number`.
fn all(buf: &[u8], number: u32) -> Vec<&[u8]> {
    Records::new(buf)
        .filter_map(|r| match r.expect("well-formed protobuf") {
            (n, WireValue::Bytes(b)) if n == number => Some(b),
            _ => None,
        })
        .collect()
}

/// The one length-delimited value of field `number`.
fn one(buf: &[u8], number: u32) -> &[u8] {
    let values = all(buf, number);
    assert_eq!(values.len(), 1, "field {number} once");
    values[0]
}

fn string(buf: &[u8], number: u32) -> &str {
    std::str::from_utf8(one(buf, number)).expect("UTF-8")
}

fn strings(buf: &[u8], number: u32) -> Vec<&str> {
    all(buf, number)
        .into_iter()
        .map(|b| std::str::from_utf8(b).expect("UTF-8"))
        .collect()
}

fn varint(buf: &[u8], number: u32) -> Option<u64> {
    Records::new(buf).find_map(|r| match r.expect("well-formed protobuf") {
        (n, WireValue::Varint(v)) if n == number => Some(v),
        _ => None,
    })
}

/// The value (field 2) of the `Named...` entry at `number` whose name (field 1) is `name`.
fn named<'a>(buf: &'a [u8], number: u32, name: &str) -> &'a [u8] {
    all(buf, number)
        .into_iter()
        .find(|entry| string(entry, 1) == name)
        .map(|entry| one(entry, 2))
        .unwrap_or_else(|| panic!("no entry {name:?} at field {number}"))
}

/// A vendor extension (`NamedAny` at `number`): its `Any.yaml`, read as JSON.
fn extension(buf: &[u8], number: u32, name: &str) -> Value {
    let any = named(buf, number, name);
    serde_json::from_str(string(any, 2)).expect("the YAML we write is JSON")
}

// Document: paths 8, definitions 9. Definitions/Properties: NamedSchema 1.
// Schema: _ref 1, description 4, required 19, additional_properties 21, type 22, items 23,
// properties 25, vendor_extension 31.
fn definition<'a>(doc: &'a [u8], name: &str) -> &'a [u8] {
    named(one(doc, 9), 1, name)
}

fn property<'a>(schema: &'a [u8], name: &str) -> &'a [u8] {
    named(one(schema, 25), 1, name)
}

#[test]
fn a_small_document_takes_gnostics_field_numbers() {
    let doc = json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": {
            "/api/v1/namespaces/{namespace}/configmaps": {
                "parameters": [{"name": "namespace", "in": "path", "required": true, "type": "string", "uniqueItems": true}],
                "post": {
                    "operationId": "createCoreV1NamespacedConfigMap",
                    "consumes": ["*/*"],
                    "schemes": ["https"],
                    "parameters": [
                        {"name": "body", "in": "body", "required": true, "schema": {"$ref": "#/definitions/io.k8s.api.core.v1.ConfigMap"}},
                        {"name": "dryRun", "in": "query", "type": "string", "uniqueItems": true},
                    ],
                    "responses": {"201": {"description": "Created", "schema": {"$ref": "#/definitions/io.k8s.api.core.v1.ConfigMap"}}},
                    "x-kubernetes-action": "post",
                },
            },
        },
        "definitions": {
            "io.k8s.api.core.v1.ConfigMap": {
                "type": "object",
                "required": ["metadata"],
                "properties": {
                    "data": {"type": "object", "additionalProperties": {"type": "string"}},
                    "immutable": {"type": "boolean", "default": false},
                    "keys": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
                    "ratio": {"type": "number", "minimum": 0.5},
                    "any": {"type": "object", "additionalProperties": true},
                },
                "x-kubernetes-group-version-kind": [{"group": "", "kind": "ConfigMap", "version": "v1"}],
            },
        },
        "securityDefinitions": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}},
        "security": [{"BearerToken": []}],
    });
    let (bytes, dropped) = encode(&doc);
    assert!(dropped.is_empty(), "{dropped:?}");

    assert_eq!(string(&bytes, 1), "2.0");
    let info = one(&bytes, 2);
    assert_eq!(
        (string(info, 1), string(info, 2)),
        ("Kubernetes", "v1.33.0")
    );

    // Paths: path 2 (NamedPathItem). PathItem: post 4, parameters 9.
    let item = named(
        one(&bytes, 8),
        2,
        "/api/v1/namespaces/{namespace}/configmaps",
    );
    // ParametersItem.parameter 1 → Parameter.non_body_parameter 2 → path 4.
    let path_param = one(one(one(one(item, 9), 1), 2), 4);
    assert_eq!(string(path_param, 4), "namespace");
    assert_eq!(varint(path_param, 1), Some(1), "required");
    assert_eq!(string(path_param, 5), "string", "type");
    assert_eq!(varint(path_param, 19), Some(1), "uniqueItems");

    // Operation: operation_id 5, consumes 7, parameters 8, responses 9, schemes 10,
    // vendor_extension 13.
    let post = one(item, 4);
    assert_eq!(string(post, 5), "createCoreV1NamespacedConfigMap");
    assert_eq!(strings(post, 7), ["*/*"]);
    assert_eq!(strings(post, 10), ["https"]);
    assert_eq!(extension(post, 13, "x-kubernetes-action"), "post");
    let params = all(post, 8);
    // Parameter.body_parameter 1: name 2, in 3, required 4, schema 5.
    let body = one(one(params[0], 1), 1);
    assert_eq!((string(body, 2), string(body, 3)), ("body", "body"));
    assert_eq!(varint(body, 4), Some(1));
    assert_eq!(
        string(one(body, 5), 1),
        "#/definitions/io.k8s.api.core.v1.ConfigMap"
    );
    // NonBodyParameter.query_parameter_sub_schema 3: name 4, type 6, unique_items 20.
    let query = one(one(one(params[1], 1), 2), 3);
    assert_eq!((string(query, 4), string(query, 6)), ("dryRun", "string"));
    assert_eq!(varint(query, 20), Some(1));
    // Responses.response_code 1 → ResponseValue.response 1: description 1, schema 2
    // (SchemaItem.schema 1).
    let created = one(named(one(post, 9), 1, "201"), 1);
    assert_eq!(string(created, 1), "Created");
    assert_eq!(
        string(one(one(created, 2), 1), 1),
        "#/definitions/io.k8s.api.core.v1.ConfigMap"
    );

    let cm = definition(&bytes, "io.k8s.api.core.v1.ConfigMap");
    assert_eq!(strings(one(cm, 22), 1), ["object"]);
    assert_eq!(strings(cm, 19), ["metadata"]);
    assert_eq!(
        extension(cm, 31, "x-kubernetes-group-version-kind"),
        json!([{"group": "", "kind": "ConfigMap", "version": "v1"}])
    );
    // AdditionalPropertiesItem: schema 1 | boolean 2.
    let data = property(cm, "data");
    assert_eq!(strings(one(one(one(data, 21), 1), 22), 1), ["string"]);
    assert_eq!(varint(one(property(cm, "any"), 21), 2), Some(1));
    // default 5 is an Any with its YAML.
    assert_eq!(string(one(property(cm, "immutable"), 5), 2), "false");
    // ItemsItem.schema 1 (repeated); max_items 14.
    let keys = property(cm, "keys");
    assert_eq!(strings(one(one(one(keys, 23), 1), 22), 1), ["string"]);
    assert_eq!(varint(keys, 14), Some(3));
    // minimum 9 is a double (wire type 1).
    let minimum = Records::new(property(cm, "ratio")).find_map(|r| match r.expect("record") {
        (9, WireValue::Fixed64(bits)) => Some(f64::from_bits(bits)),
        _ => None,
    });
    assert_eq!(minimum, Some(0.5));

    // SecurityDefinitions: NamedSecurityDefinitionsItem 1 → api_key_security 2: type 1,
    // name 2, in 3. Document.security 12: SecurityRequirement, NamedStringArray 1.
    let bearer = one(named(one(&bytes, 13), 1, "BearerToken"), 2);
    assert_eq!(
        (string(bearer, 1), string(bearer, 2), string(bearer, 3)),
        ("apiKey", "authorization", "header")
    );
    let requirement = one(&bytes, 12);
    assert!(named(requirement, 1, "BearerToken").is_empty());
}

#[test]
fn keys_swagger_2_has_no_field_for_are_reported() {
    let doc = json!({
        "definitions": {"com.example.v1.Widget": {
            "type": "object",
            "properties": {"size": {"anyOf": [{"type": "integer"}], "nullable": true}},
        }},
    });
    let (bytes, dropped) = encode(&doc);
    assert_eq!(
        dropped.into_iter().collect::<Vec<_>>(),
        ["Schema.anyOf", "Schema.nullable"]
    );
    let widget = definition(&bytes, "com.example.v1.Widget");
    assert!(property(widget, "size").is_empty());
}

#[tokio::test]
async fn the_served_document_encodes_whole_with_deployments_refs_and_extensions() {
    let store = Arc::new(kybernetes_store::MemoryStore::default());
    let server = crate::ApiServer::new(store, kybernetes_core::Clock::new())
        .await
        .expect("API server");
    let doc = super::super::v2_json(&super::super::served(&server.inner));
    let (bytes, dropped) = encode(&doc);
    // k8s-openapi describes JSONSchemaPropsOrBool and its siblings with `oneOf`, which
    // Swagger 2.0 lacks (upstream's v2 document gives them a description only); every other
    // key has a field.
    assert_eq!(
        dropped.into_iter().collect::<Vec<_>>(),
        ["Schema.oneOf"],
        "every key of our v2 document but oneOf has a field"
    );

    assert!(
        !bytes.windows(13).any(|w| w == b"#/components/"),
        "every reference points into #/definitions/"
    );

    let deployment = definition(&bytes, "io.k8s.api.apps.v1.Deployment");
    assert!(!string(deployment, 4).is_empty(), "description");
    assert_eq!(strings(one(deployment, 22), 1), ["object"]);
    assert_eq!(
        extension(deployment, 31, "x-kubernetes-group-version-kind"),
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    let spec = property(deployment, "spec");
    assert_eq!(
        string(spec, 1),
        "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
    );
    assert_eq!(
        string(property(deployment, "metadata"), 1),
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    let spec = definition(&bytes, "io.k8s.api.apps.v1.DeploymentSpec");
    assert!(strings(spec, 19).contains(&"selector"), "required");
    assert_eq!(
        extension(
            property(spec, "strategy"),
            31,
            "x-kubernetes-patch-strategy"
        ),
        "retainKeys"
    );
    let replicas = property(spec, "replicas");
    assert_eq!(strings(one(replicas, 22), 1), ["integer"]);
    assert_eq!(string(replicas, 2), "int32", "format");

    let conditions = property(
        definition(&bytes, "io.k8s.api.apps.v1.DeploymentStatus"),
        "conditions",
    );
    assert_eq!(strings(one(conditions, 22), 1), ["array"]);
    assert_eq!(
        string(one(one(conditions, 23), 1), 1),
        "#/definitions/io.k8s.api.apps.v1.DeploymentCondition"
    );
    assert_eq!(
        extension(conditions, 31, "x-kubernetes-patch-merge-key"),
        "type"
    );
    let labels = property(
        definition(&bytes, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
        "labels",
    );
    assert_eq!(strings(one(one(one(labels, 21), 1), 22), 1), ["string"]);

    // The PATCH of a deployment: PathItem.patch 8, its fieldValidation query parameter and
    // its GVK extension; the path's own `name` parameter (PathItem.parameters 9).
    let item = named(
        one(&bytes, 8),
        2,
        "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
    );
    let patch = one(item, 8);
    assert_eq!(
        extension(patch, 13, "x-kubernetes-group-version-kind"),
        json!({"group": "apps", "kind": "Deployment", "version": "v1"})
    );
    let query_names: Vec<&str> = all(patch, 8)
        .into_iter()
        .flat_map(|p| all(one(p, 1), 2))
        .flat_map(|non_body| all(non_body, 3))
        .map(|q| string(q, 4))
        .collect();
    assert!(query_names.contains(&"fieldValidation"), "{query_names:?}");
    let path_names: Vec<&str> = all(item, 9)
        .into_iter()
        .flat_map(|p| all(one(one(p, 1), 2), 4))
        .map(|p| string(p, 4))
        .collect();
    assert!(
        path_names.contains(&"name") && path_names.contains(&"namespace"),
        "{path_names:?}"
    );
}
