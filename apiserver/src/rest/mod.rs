//! The generic registry: one implementation of every verb for every resource, driven by the
//! [`ResourceInfo`] table. This file routes a request to the verb.

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use kybernetes_core::{ApiError, ResourceInfo};
use serde_json::Value;

use crate::apply::FieldManager;
use crate::request::{self, DeleteOptions, ListQuery, Target};
use crate::response::{self, ApiResponse};
use crate::{Inner, discovery};

pub mod delete;
pub mod read;
pub mod subresource;
pub mod watch;
pub mod write;

fn not_found_path() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// Routes one request.
pub async fn dispatch(inner: &Arc<Inner>, req: Request<Body>) -> Result<ApiResponse, ApiError> {
    let (parts, body) = req.into_parts();
    let target = request::parse_path(parts.uri.path());
    let query = request::query_map(parts.uri.query());
    let reg = &inner.registry;
    let info = match target {
        Target::Version => return Ok(response::json(StatusCode::OK, &discovery::version())),
        Target::Health => return Ok(response::text(StatusCode::OK, "ok")),
        Target::CoreVersions => {
            return Ok(response::json(StatusCode::OK, &discovery::core_versions()));
        }
        Target::Groups => return Ok(response::json(StatusCode::OK, &discovery::groups(reg))),
        Target::Group(g) => {
            return discovery::group(reg, &g)
                .map(|v| response::json(StatusCode::OK, &v))
                .ok_or_else(not_found_path);
        }
        Target::ResourceList { group, version } => {
            return discovery::resource_list(reg, &group, &version)
                .map(|v| response::json(StatusCode::OK, &v))
                .ok_or_else(not_found_path);
        }
        Target::Unknown => return Err(not_found_path()),
        Target::Resource(info) => info,
    };
    let r = reg
        .lookup(&info.group, &info.version, &info.resource)
        .ok_or_else(not_found_path)?;
    if !r.namespaced && info.namespace.is_some() {
        return Err(not_found_path());
    }
    let body = axum::body::to_bytes(body, inner.config.max_request_bytes)
        .await
        .map_err(|e| {
            ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!("the request body could not be read: {e}"),
            )
        })?;
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let dry_run = query.get("dryRun").is_some_and(|v| v == "All");
    let metadata_only = parts
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
    let ns = info.namespace.as_deref();
    let fm = if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
        FieldManager::for_request(inner, &r, &query, &parts.headers).await?
    } else {
        FieldManager::default()
    };
    match (
        &parts.method,
        info.name.as_deref(),
        info.subresource.as_deref(),
    ) {
        (&Method::GET, None, None) => {
            let q = ListQuery::parse(&query)?;
            if q.watch || info.legacy_watch {
                watch::watch(inner, &r, ns, q, metadata_only).await
            } else {
                let list = read::list(inner, &r, ns, &q).await?;
                let list = if metadata_only {
                    partial_list(list)
                } else {
                    list
                };
                Ok(response::json(StatusCode::OK, &list))
            }
        }
        (&Method::GET, Some(name), None) if info.legacy_watch => {
            let mut q = ListQuery::parse(&query)?;
            q.field_selector = append_name_selector(&q.field_selector, name);
            watch::watch(inner, &r, ns, q, metadata_only).await
        }
        (&Method::POST, None, None) => {
            let obj = parse_json(&body)?;
            write::create(inner, &r, require_ns(&r, ns)?, obj, dry_run, &fm)
                .await
                .map(|v| response::json(StatusCode::CREATED, &v))
        }
        (&Method::DELETE, None, None) => {
            let q = ListQuery::parse(&query)?;
            let opts = DeleteOptions::parse(&query, &body)?;
            delete::delete_collection(inner, &r, ns, &q, &opts)
                .await
                .map(|v| response::json(StatusCode::OK, &v))
        }
        (&Method::GET, Some(name), None) => {
            let obj = read::get(inner, &r, ns, name).await?;
            let obj = if metadata_only {
                crate::object::partial_metadata(&obj)
            } else {
                obj
            };
            Ok(response::json(StatusCode::OK, &obj))
        }
        (&Method::PUT, Some(name), None) => {
            let obj = parse_json(&body)?;
            write::update(inner, &r, ns, name, obj, dry_run, &fm)
                .await
                .map(|v| response::json(StatusCode::OK, &v))
        }
        (&Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            if sub.is_some() && !r.status_subresource {
                return Err(not_found_path());
            }
            write::patch(inner, &r, ns, name, sub, &content_type, &body, dry_run, &fm)
                .await
                .map(|v| response::json(StatusCode::OK, &v))
        }
        (&Method::DELETE, Some(name), None) => {
            let opts = DeleteOptions::parse(&query, &body)?;
            delete::delete(inner, &r, ns, name, &opts)
                .await
                .map(|(code, v)| response::json(code, &v))
        }
        (method, Some(name), Some(sub)) => {
            subresource::handle(
                inner,
                &r,
                ns,
                name,
                sub,
                method,
                &content_type,
                &body,
                dry_run,
                &fm,
            )
            .await
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} {})",
            parts.method, r.plural
        ))),
    }
}

/// A list in the `PartialObjectMetadataList` form.
fn partial_list(mut list: Value) -> Value {
    let items: Vec<Value> = list
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(crate::object::partial_metadata)
        .collect();
    list["kind"] = serde_json::json!("PartialObjectMetadataList");
    list["apiVersion"] = serde_json::json!("meta.k8s.io/v1");
    list["items"] = Value::Array(items);
    list
}

fn append_name_selector(existing: &str, name: &str) -> String {
    if existing.is_empty() {
        format!("metadata.name={name}")
    } else {
        format!("{existing},metadata.name={name}")
    }
}

/// The namespace a namespaced write needs.
pub fn require_ns<'a>(r: &ResourceInfo, ns: Option<&'a str>) -> Result<Option<&'a str>, ApiError> {
    if r.namespaced && ns.is_none() {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    Ok(ns)
}

/// Parses a JSON request body into an object.
pub fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(v)
}

/// Maps a store error to a Status.
pub fn store_err(r: &ResourceInfo, name: &str, e: kybernetes_store::Error) -> ApiError {
    use kybernetes_store::Error as E;
    match e {
        E::AlreadyExists { .. } => ApiError::already_exists(&r.group, &r.plural, name),
        E::NotFound { .. } => ApiError::not_found(&r.group, &r.plural, name),
        E::Conflict { .. } => ApiError::stale(&r.group, &r.plural, name),
        E::Gone {
            requested,
            compacted,
        } => ApiError::too_old_resource_version(requested, compacted),
        E::FutureRevision { requested, current } => {
            ApiError::too_large_resource_version(requested, current)
        }
        other => ApiError::internal(format!("storage error on {} {name:?}: {other}", r.plural)),
    }
}

/// Fields a field selector may use on a resource, as upstream allows.
pub fn allowed_fields(r: &ResourceInfo) -> Vec<&'static str> {
    let mut f = vec!["metadata.name", "metadata.namespace"];
    match (r.group.as_str(), r.plural.as_str()) {
        ("", "pods") => f.extend([
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]),
        ("", "events") | ("events.k8s.io", "events") => f.extend([
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "regarding.kind",
            "regarding.name",
            "regarding.namespace",
            "regarding.uid",
        ]),
        ("", "nodes") => f.push("spec.unschedulable"),
        ("", "namespaces") => f.push("status.phase"),
        ("", "secrets") => f.push("type"),
        ("", "replicationcontrollers") | ("apps", "replicasets") => f.push("status.replicas"),
        ("batch", "jobs") => f.push("status.successful"),
        _ => {}
    }
    f
}
