//! The Swagger 2.0 document (`/openapi/v2`): every served group-version's paths and every
//! definition they use, in one document, as upstream serves it.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::definitions::{V2_REF_PREFIX, to_v2};
use super::paths::{Operation, Param, PathItem};

fn schema_ref(name: &str) -> Value {
    if name.is_empty() {
        json!({ "type": "string" })
    } else {
        json!({ "$ref": format!("{V2_REF_PREFIX}{name}") })
    }
}

fn param(p: &Param) -> Value {
    let mut v = json!({
        "name": p.name,
        "in": p.location,
        "description": p.description,
        "type": p.ty,
        "uniqueItems": true,
    });
    if p.location == "path" {
        v["required"] = json!(true);
    }
    v
}

fn operation(op: &Operation) -> Value {
    let mut params: Vec<Value> = Vec::new();
    let mut consumes = vec!["*/*"];
    if let Some(body) = &op.body {
        consumes = body.content_types.to_vec();
        let mut p = json!({ "name": "body", "in": "body", "required": true });
        if let Some(s) = &body.schema {
            p["schema"] = schema_ref(s);
        }
        params.push(p);
    }
    params.extend(op.params.iter().map(param));
    let mut responses = Map::new();
    for r in &op.responses {
        let mut v = json!({ "description": r.description });
        if let Some(s) = &r.schema {
            v["schema"] = schema_ref(s);
        }
        responses.insert(r.code.to_string(), v);
    }
    responses.insert("401".into(), json!({ "description": "Unauthorized" }));
    let mut produces = vec!["application/json"];
    if op.streams {
        produces.push("application/json;stream=watch");
    }
    let mut v = json!({
        "tags": [op.tag],
        "description": op.description,
        "operationId": op.id,
        "consumes": consumes,
        "produces": produces,
        "schemes": ["https"],
        "parameters": params,
        "responses": responses,
        "x-kubernetes-action": op.action,
    });
    if let Some(g) = &op.gvk {
        v["x-kubernetes-group-version-kind"] =
            json!({ "group": g.group, "kind": g.kind, "version": g.version });
    }
    v
}

/// The whole document.
pub fn document(version: &str, items: &[PathItem], definitions: &BTreeMap<String, Value>) -> Value {
    let mut paths = Map::new();
    for item in items {
        let mut v = Map::new();
        v.insert("parameters".into(), item.params.iter().map(param).collect());
        for op in &item.operations {
            v.insert(op.method.into(), operation(op));
        }
        paths.insert(item.path.clone(), Value::Object(v));
    }
    let definitions: Map<String, Value> = definitions
        .iter()
        .map(|(k, v)| (k.clone(), to_v2(v)))
        .collect();
    json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": version },
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {
            "BearerToken": {
                "type": "apiKey",
                "description": "Bearer Token authentication",
                "name": "authorization",
                "in": "header",
            },
        },
        "security": [{ "BearerToken": [] }],
    })
}
