//! OpenAPI v3 documents: one per group-version (`/openapi/v3/apis/apps/v1`), and the index
//! of them (`/openapi/v3`) with each document's hash in its URL.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::definitions::V3_REF_PREFIX;
use super::paths::{Operation, Param, PathItem, SchemaName};

/// The content types a response body is served in.
const RESPONSE_TYPES: &[&str] = &["application/json"];

fn schema_ref(name: &str) -> Value {
    if name.is_empty() {
        json!({ "type": "string" })
    } else {
        json!({ "$ref": format!("{V3_REF_PREFIX}{name}") })
    }
}

fn param(p: &Param) -> Value {
    let mut v = json!({
        "name": p.name,
        "in": p.location,
        "description": p.description,
        "schema": { "type": p.ty, "uniqueItems": true },
    });
    if p.location == "path" {
        v["required"] = json!(true);
    }
    v
}

fn content(types: &[&str], schema: &SchemaName) -> Value {
    let mut m = Map::new();
    for t in types {
        let mut entry = json!({});
        if let Some(s) = schema {
            entry["schema"] = schema_ref(s);
        }
        m.insert((*t).into(), entry);
    }
    Value::Object(m)
}

fn operation(op: &Operation) -> Value {
    let mut responses = Map::new();
    for r in &op.responses {
        let mut types = RESPONSE_TYPES.to_vec();
        if op.streams {
            types.push("application/json;stream=watch");
        }
        responses.insert(
            r.code.to_string(),
            json!({ "description": r.description, "content": content(&types, &r.schema) }),
        );
    }
    responses.insert("401".into(), json!({ "description": "Unauthorized" }));
    let mut v = json!({
        "tags": [op.tag],
        "description": op.description,
        "operationId": op.id,
        "responses": responses,
        "x-kubernetes-action": op.action,
    });
    if !op.params.is_empty() {
        v["parameters"] = op.params.iter().map(param).collect();
    }
    if let Some(body) = &op.body {
        v["requestBody"] =
            json!({ "content": content(body.content_types, &body.schema), "required": true });
    }
    if let Some(g) = &op.gvk {
        v["x-kubernetes-group-version-kind"] =
            json!({ "group": g.group, "kind": g.kind, "version": g.version });
    }
    v
}

/// The `paths` of a document.
pub fn paths(items: &[PathItem]) -> Value {
    let mut out = Map::new();
    for item in items {
        let mut v = Map::new();
        v.insert("parameters".into(), item.params.iter().map(param).collect());
        for op in &item.operations {
            v.insert(op.method.into(), operation(op));
        }
        out.insert(item.path.clone(), Value::Object(v));
    }
    Value::Object(out)
}

/// A group-version's document.
pub fn document(version: &str, items: &[PathItem], schemas: BTreeMap<String, Value>) -> Value {
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": version },
        "paths": paths(items),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "BearerToken": {
                    "type": "apiKey",
                    "description": "Bearer Token authentication",
                    "name": "authorization",
                    "in": "header",
                },
            },
        },
        "security": [{ "BearerToken": [] }],
    })
}

/// The index: each group-version's document path (`api/v1`, `apis/apps/v1`) and its URL with
/// the document's hash.
pub fn index<'a>(docs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    let mut paths = Map::new();
    for (gv_path, hash) in docs {
        paths.insert(
            gv_path.into(),
            json!({ "serverRelativeURL": format!("/openapi/v3/{gv_path}?hash={hash}") }),
        );
    }
    json!({ "paths": paths })
}
