//! The generic registry: one implementation of every verb for every resource, driven by the
//! [`ResourceInfo`] table and each kind's [`Strategy`]. This file routes a request to the verb.

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, StatusCode};
use kybernetes_core::{ApiError, ResourceInfo};
use serde_json::Value;

use crate::authentication::UserInfo;
use crate::negotiation::DiscoveryOutput;
use crate::registry::{RequestScope, Strategy, Subresource};
use crate::request::{self, DeleteOptions, ListQuery, RequestInfo, Target};
use crate::response::{self, ApiResponse};
use crate::{Inner, discovery};
use decode::decode_object;
use output::Form;

pub mod computed;
pub mod decode;
pub mod delete;
mod duplicates;
pub mod eviction;
pub mod health;
pub mod log;
pub mod output;
pub mod read;
pub mod review;
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

/// Serves one request that the handler chain has parsed ([`RequestInfo`]), authenticated
/// ([`UserInfo`]) and authorized.
pub async fn dispatch(inner: &Arc<Inner>, req: Request<Body>) -> Result<ApiResponse, ApiError> {
    let (mut parts, body) = req.into_parts();
    let info = match parts.extensions.remove::<RequestInfo>() {
        Some(info) => info,
        None => RequestInfo::parse(&parts.method, &parts.uri),
    };
    if !info.resource_request {
        return non_resource(inner, &parts).await;
    }
    let user = parts
        .extensions
        .remove::<UserInfo>()
        .ok_or_else(crate::filters::unauthorized)?;
    let r = inner
        .registry
        .lookup(&info.group, &info.version, &info.resource)
        .ok_or_else(not_found_path)?;
    if !r.namespaced && info.namespace.is_some() {
        return Err(not_found_path());
    }
    let strategy = inner.strategies.lookup(&r);
    // A proxy request's query and body belong to the proxied server: route it before they
    // are parsed or read.
    if let Some(Subresource::Proxy(kind)) = info
        .subresource
        .as_deref()
        .and_then(|s| strategy.subresource(s))
    {
        return crate::proxy::serve(inner, &info, kind, parts, body).await;
    }
    let query = request::query_map(parts.uri.query());
    let scope = RequestScope::from_request(&info, user, &parts.headers, query, r, strategy)?;
    if let Some(w) = scope.strategy.version_warning(&scope.resource.version) {
        scope.warnings.add(w);
    }
    if let Some(kind) = streaming_subresource(&scope) {
        let request = crate::streaming::ConnectRequest {
            query: parts.uri.query(),
            headers: &parts.headers,
            on_upgrade: parts.extensions.remove::<hyper::upgrade::OnUpgrade>(),
        };
        return crate::streaming::serve(inner, &scope, kind, request).await;
    }
    let body = decode::json_body(&scope, read_body(inner, &parts.headers, body).await?)?;
    let mut response = serve_resource(inner, &scope, &parts.method, &body).await?;
    scope.warnings.write_headers(response.headers_mut());
    Ok(response)
}

/// The streaming subresource (exec, attach, port-forward) a GET or POST asks for, if any.
fn streaming_subresource(scope: &RequestScope) -> Option<Subresource> {
    let sub = scope.subresource.as_deref()?;
    let kind = scope.strategy.subresource(sub)?;
    let verb_ok = matches!(scope.verb.as_str(), "get" | "create");
    (kind.is_streaming() && verb_ok).then_some(kind)
}

/// Serves a request to a resource or one of its subresources, by verb.
async fn serve_resource(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    method: &http::Method,
    body: &Bytes,
) -> Result<ApiResponse, ApiError> {
    if scope.resource.computed {
        return computed::serve(inner, scope, method).await;
    }
    if scope.subresource.is_some() {
        return subresource::handle(inner, scope, method, body).await;
    }
    if scope.resource.create_only {
        return match scope.verb.as_str() {
            "create" if scope.name.is_none() => {
                review::create(inner, scope, decode_object(scope, body)?)
            }
            _ => Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({} {})",
                method, scope.resource.plural
            ))),
        };
    }
    let ok = |v: Value| response::json(StatusCode::OK, &v);
    match scope.verb.as_str() {
        "list" => {
            let q = ListQuery::parse(&scope.query)?;
            let form = Form::of(scope)?;
            let list = read::list(inner, scope, &q).await?;
            Ok(form.respond_list(list, inner.clock.now()))
        }
        "watch" => {
            let mut q = ListQuery::parse(&scope.query)?;
            if let Some(name) = &scope.name {
                q.field_selector = append_name_selector(&q.field_selector, name);
            }
            watch::watch(inner, scope, q).await
        }
        "get" => {
            let form = Form::of(scope)?;
            let obj = read::get(inner, &scope.resource, scope.ns(), scope.name()).await?;
            Ok(form.respond_object(obj, inner.clock.now()))
        }
        "create" if scope.name.is_none() => {
            let obj = decode_object(scope, body)?;
            require_ns(&scope.resource, scope.ns())?;
            write::create(inner, scope, obj)
                .await
                .map(|v| response::json(StatusCode::CREATED, &v))
        }
        "update" if scope.name.is_some() => {
            let obj = decode_object(scope, body)?;
            write::update(inner, scope, obj)
                .await
                .map(|(code, v)| response::json(code, &v))
        }
        "patch" if scope.name.is_some() => write::patch(inner, scope, body).await.map(ok),
        "delete" => {
            let opts = DeleteOptions::parse(&scope.query, body)?;
            delete::delete(inner, scope, &opts)
                .await
                .map(|(code, v)| response::json(code, &v))
        }
        "deletecollection" => {
            let q = ListQuery::parse(&scope.query)?;
            let opts = DeleteOptions::parse(&scope.query, body)?;
            delete::delete_collection(inner, scope, &q, &opts)
                .await
                .map(ok)
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} {})",
            method, scope.resource.plural
        ))),
    }
}

/// Discovery, version and health: the paths that are not resources.
async fn non_resource(
    inner: &Arc<Inner>,
    parts: &http::request::Parts,
) -> Result<ApiResponse, ApiError> {
    let reg = &inner.registry;
    match request::parse_path(parts.uri.path()) {
        Target::Version => Ok(response::json(StatusCode::OK, &discovery::version())),
        Target::Health { endpoint, check } => {
            let excluded: Vec<String> = request::query_pairs(parts.uri.query())
                .into_iter()
                .filter(|(k, _)| k == "exclude")
                .map(|(_, v)| v)
                .collect();
            let verbose = request::query_map(parts.uri.query()).contains_key("verbose");
            health::check(inner, &endpoint, check.as_deref(), verbose, &excluded).await
        }
        Target::Metrics => Ok(response::text_owned(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            inner.metrics.encode(),
        )),
        Target::OpenApi(path) => crate::openapi::serve(inner, &path, parts),
        Target::CoreVersions => Ok(discovery_root(reg, &parts.headers, true)),
        Target::Groups => Ok(discovery_root(reg, &parts.headers, false)),
        Target::Group(g) => discovery::group(reg, &g)
            .map(|v| response::json(StatusCode::OK, &v))
            .ok_or_else(not_found_path),
        Target::ResourceList { group, version } => discovery::resource_list(reg, &group, &version)
            .map(|v| response::json(StatusCode::OK, &v))
            .ok_or_else(not_found_path),
        Target::Unknown | Target::Resource(_) => Err(not_found_path()),
    }
}

/// `/api` (`core`) or `/apis`: aggregated if the client's `Accept` asks for it, with the
/// chosen form as the `Content-Type`; the legacy document otherwise.
fn discovery_root(
    reg: &kybernetes_core::Registry,
    headers: &http::HeaderMap,
    core: bool,
) -> ApiResponse {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match crate::negotiation::negotiate_discovery(accept) {
        DiscoveryOutput::Aggregated(version) => {
            let mut resp =
                response::json(StatusCode::OK, &discovery::aggregated(reg, core, version));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(version.content_type()),
            );
            resp
        }
        DiscoveryOutput::Legacy if core => {
            response::json(StatusCode::OK, &discovery::core_versions())
        }
        DiscoveryOutput::Legacy => response::json(StatusCode::OK, &discovery::groups(reg)),
    }
}

/// Reads the request body, refusing one over the server's limit with upstream's 413 (by its
/// `Content-Length` before reading, or while reading when it has none).
async fn read_body(
    inner: &Arc<Inner>,
    headers: &http::HeaderMap,
    body: Body,
) -> Result<Bytes, ApiError> {
    let limit = inner.config.max_request_bytes;
    let too_large = || {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let over_limit = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
            .any(|e| e.is::<http_body_util::LengthLimitError>());
        if over_limit {
            too_large()
        } else {
            ApiError::bad_request(format!("the request body could not be read: {e}"))
        }
    })
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

/// Fields a field selector may use on a resource: the metadata ones and the kind's own.
pub fn allowed_fields(strategy: &dyn Strategy) -> Vec<&'static str> {
    let mut f = vec!["metadata.name", "metadata.namespace"];
    f.extend(strategy.field_selectors());
    f
}
