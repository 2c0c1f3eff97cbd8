//! The response step of get, list and watch: the object in the form the client's `Accept`
//! negotiated ([`crate::negotiation`]) — itself, its `PartialObjectMetadata`, or a
//! `meta.k8s.io` `Table` from the kind's [`TableConvertor`] (upstream's `asTable`), whose
//! rows carry the object as `?includeObject=` says (`Metadata` by default).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::{HeaderValue, StatusCode, header};
use kybernetes_core::ApiError;
use serde_json::{Map, Value, json};

use crate::negotiation::{self, MetaVersion, Output};
use crate::object;
use crate::registry::{RequestScope, TableConvertor};
use crate::response::{self, ApiResponse};

/// What each row of a `Table` carries as its `object` (`metav1.IncludeObjectPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    /// `null`.
    None,
    /// The object's `PartialObjectMetadata` (the default).
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Reads `?includeObject=`, refused with upstream's 400 when unknown.
    pub fn from_query(value: Option<&str>) -> Result<Self, ApiError> {
        match value.unwrap_or("") {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "None" => Ok(IncludeObject::None),
            "Object" => Ok(IncludeObject::Object),
            other => Err(ApiError::bad_request(format!(
                "Unable to convert to Table as requested: includeObject: Unsupported value: {other:?}: supported values: \"Metadata\", \"None\", \"Object\""
            ))),
        }
    }
}

/// How a request's objects are turned into a `Table`.
#[derive(Clone)]
pub struct TableForm {
    version: MetaVersion,
    include: IncludeObject,
    convertor: Arc<dyn TableConvertor>,
}

impl TableForm {
    /// The `Table` of one object (a get, or one watch event); without `columnDefinitions`
    /// (`null`) when `headers` is false, as upstream's watch sends them only once.
    pub fn object_table(&self, obj: &Value, now: DateTime<Utc>, headers: bool) -> Value {
        let mut meta = Map::new();
        if let Some(rv) = object::meta_str(obj, "resourceVersion") {
            meta.insert("resourceVersion".into(), json!(rv));
        }
        self.table(Value::Object(meta), std::slice::from_ref(obj), now, headers)
    }

    /// The `Table` of a list: a row per item, the list's resourceVersion and continue token.
    pub fn list_table(&self, list: &Value, now: DateTime<Utc>) -> Value {
        let mut meta = Map::new();
        for field in ["resourceVersion", "continue", "remainingItemCount"] {
            if let Some(v) = list.pointer(&format!("/metadata/{field}")) {
                meta.insert(field.into(), v.clone());
            }
        }
        let items = list
            .get("items")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        self.table(Value::Object(meta), items, now, true)
    }

    fn table(&self, meta: Value, objects: &[Value], now: DateTime<Utc>, headers: bool) -> Value {
        let columns = if headers {
            Value::Array(
                self.convertor
                    .columns()
                    .iter()
                    .map(|c| c.to_json())
                    .collect(),
            )
        } else {
            Value::Null
        };
        let rows: Vec<Value> = objects.iter().map(|o| self.row(o, now)).collect();
        json!({
            "kind": "Table",
            "apiVersion": self.version.api_version(),
            "metadata": meta,
            "columnDefinitions": columns,
            "rows": rows,
        })
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Value {
        let row = self.convertor.row(obj, now);
        let object = match self.include {
            IncludeObject::None => Value::Null,
            IncludeObject::Metadata => {
                let mut partial = object::partial_metadata(obj);
                partial["apiVersion"] = json!(self.version.api_version());
                partial
            }
            IncludeObject::Object => obj.clone(),
        };
        let mut out = json!({ "cells": row.cells, "object": object });
        if !row.conditions.is_empty() {
            out["conditions"] = Value::Array(row.conditions);
        }
        out
    }
}

/// The form of a read's response.
#[derive(Clone)]
pub enum Form {
    /// The object or list itself.
    Object,
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    Metadata,
    /// A `Table`.
    Table(TableForm),
}

impl Form {
    /// The form a request negotiated: 406 for an `Accept` nothing can satisfy, 400 for an
    /// unknown `includeObject`.
    pub fn of(scope: &RequestScope) -> Result<Self, ApiError> {
        Ok(match negotiation::negotiate(&scope.accept)? {
            Output::Object => Form::Object,
            Output::PartialObjectMetadata(_) => Form::Metadata,
            Output::Table(version) => Form::Table(TableForm {
                version,
                include: IncludeObject::from_query(
                    scope.query.get("includeObject").map(String::as_str),
                )?,
                convertor: scope.strategy.table_convertor(&scope.resource),
            }),
        })
    }

    /// The response to a get.
    pub fn respond_object(&self, obj: Value, now: DateTime<Utc>) -> ApiResponse {
        match self {
            Form::Object => response::json(StatusCode::OK, &obj),
            Form::Metadata => response::json(StatusCode::OK, &object::partial_metadata(&obj)),
            Form::Table(t) => table_response(t, &t.object_table(&obj, now, true)),
        }
    }

    /// The response to a list.
    pub fn respond_list(&self, list: Value, now: DateTime<Utc>) -> ApiResponse {
        match self {
            Form::Object => response::json(StatusCode::OK, &list),
            Form::Metadata => response::json(StatusCode::OK, &partial_list(list)),
            Form::Table(t) => table_response(t, &t.list_table(&list, now)),
        }
    }
}

fn table_response(t: &TableForm, table: &Value) -> ApiResponse {
    let mut resp = response::json(StatusCode::OK, table);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(Output::Table(t.version).content_type()),
    );
    resp
}

/// A list in the `PartialObjectMetadataList` form.
fn partial_list(mut list: Value) -> Value {
    let items: Vec<Value> = list
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(object::partial_metadata)
        .collect();
    list["kind"] = json!("PartialObjectMetadataList");
    list["apiVersion"] = json!("meta.k8s.io/v1");
    list["items"] = Value::Array(items);
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(include: IncludeObject) -> TableForm {
        TableForm {
            version: MetaVersion::V1,
            include,
            convertor: crate::registry::table::builtin("", "configmaps"),
        }
    }

    #[test]
    fn a_list_table_has_a_row_per_item_and_the_list_metadata() {
        let list = json!({"kind": "ConfigMapList", "metadata": {"resourceVersion": "7", "continue": "abc"},
            "items": [{"kind": "ConfigMap", "metadata": {"name": "a", "resourceVersion": "5"}, "data": {"k": "v"}}]});
        let t = form(IncludeObject::Metadata).list_table(&list, Utc::now());
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(
            t["metadata"],
            json!({"resourceVersion": "7", "continue": "abc"})
        );
        assert_eq!(t["columnDefinitions"][1]["name"], "Data");
        assert_eq!(t["rows"][0]["cells"][1], 1);
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert!(t["rows"][0]["object"].get("data").is_none());
    }

    #[test]
    fn include_object_picks_what_rows_carry() {
        let obj = json!({"kind": "ConfigMap", "metadata": {"name": "a", "resourceVersion": "5"}, "data": {}});
        let none = form(IncludeObject::None).object_table(&obj, Utc::now(), false);
        assert_eq!(none["rows"][0]["object"], Value::Null);
        assert_eq!(none["columnDefinitions"], Value::Null);
        assert_eq!(none["metadata"]["resourceVersion"], "5");
        let full = form(IncludeObject::Object).object_table(&obj, Utc::now(), true);
        assert_eq!(full["rows"][0]["object"], obj);
        assert!(IncludeObject::from_query(Some("Everything")).is_err());
    }
}
