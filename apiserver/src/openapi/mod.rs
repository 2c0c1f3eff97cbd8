//! The OpenAPI documents: `/openapi/v3` (an index of one document per group-version, each URL
//! carrying the document's hash), `/openapi/v3/api/v1` and `/openapi/v3/apis/<group>/<version>`,
//! and the Swagger 2.0 `/openapi/v2`, as upstream's kube-openapi handlers serve them.
//!
//! What they are for: kubectl (`create`, `apply`, `replace` with the default
//! `--validate=strict`) reads a kind's PATCH operation and, finding `fieldValidation` there,
//! sends `?fieldValidation=Strict` and leaves validation to the server; `kubectl apply` builds
//! its strategic merge patch from the documents' merge keys; `kubectl explain` prints the
//! definitions' descriptions.
//!
//! - [`definitions`]: the built-in kinds' definitions, from k8s-openapi's schemars impls;
//! - [`custom`]: custom resources' definitions, from their CRD's `openAPIV3Schema`;
//! - [`paths`]: the operations of each served resource;
//! - `v3` and `v2`: the two documents' shapes;
//! - [`v2_protobuf`]: the v2 document in gnostic's protobuf, which kubectl asks for;
//! - [`fields`]: unknown-field detection against the definitions (`fieldValidation`).
//!
//! Documents are built on first request and kept until what they are built from (the
//! registry's resources, the CRDs' schemas) changes.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use kybernetes_core::{ApiError, ResourceInfo};
use serde_json::Value;

use crate::Inner;
use crate::response::ApiResponse;

pub mod custom;
pub mod definitions;
pub mod fields;
pub mod paths;
mod v2;
pub mod v2_protobuf;
mod v3;

pub use definitions::Definitions;
use paths::{PathItem, ResourceSchemas};

/// The version the documents' `info` reports (as `/version`).
const INFO_VERSION: &str = "v1.33.0";
const JSON: &str = "application/json";
/// The v2 document in protobuf, as kubectl asks for it (upstream's deprecated name).
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The v2 document in protobuf: upstream's current name, and the `Content-Type` it answers
/// either name with.
pub const V2_PROTOBUF_CURRENT: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// What an `/openapi/...` path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenApiPath {
    /// `/openapi/v2`.
    V2,
    /// `/openapi/v3`.
    V3Index,
    /// `/openapi/v3/<api/v1 | apis/group/version>`.
    V3(String),
}

/// One built document.
#[derive(Debug)]
struct Document {
    /// What it was built from.
    fingerprint: u64,
    bytes: Bytes,
    /// Upstream's ETag: the SHA-512 of the JSON bytes, in upper-case hex (the protobuf form
    /// of the v2 document carries its JSON form's, as upstream's does).
    etag: String,
    content_type: &'static str,
}

impl Document {
    fn new(fingerprint: u64, doc: &Value) -> Result<Self, ApiError> {
        let bytes = serde_json::to_vec(doc)
            .map_err(|e| ApiError::internal(format!("encoding an OpenAPI document: {e}")))?;
        let digest = ring::digest::digest(&ring::digest::SHA512, &bytes);
        let etag = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        Ok(Document {
            fingerprint,
            bytes: Bytes::from(bytes),
            etag,
            content_type: JSON,
        })
    }

    /// The protobuf form of the v2 document, from its JSON form (as upstream derives it, so
    /// the two always say the same).
    fn v2_protobuf(json: &Document) -> Result<Self, ApiError> {
        let doc: Value = serde_json::from_slice(&json.bytes)
            .map_err(|e| ApiError::internal(format!("reading the OpenAPI v2 document: {e}")))?;
        let (bytes, dropped) = v2_protobuf::encode(&doc);
        if !dropped.is_empty() {
            // Swagger 2.0 has no field for these (a CRD schema's `nullable`, `anyOf`):
            // upstream's v2 document leaves them out too.
            tracing::debug!(
                ?dropped,
                "OpenAPI v2 protobuf: keys without a field left out"
            );
        }
        Ok(Document {
            fingerprint: json.fingerprint,
            bytes: Bytes::from(bytes),
            etag: json.etag.clone(),
            content_type: V2_PROTOBUF_CURRENT,
        })
    }
}

/// The documents of one API server, built on first request.
#[derive(Debug, Default)]
pub struct OpenApiCache {
    /// By group-version path (`apis/apps/v1`).
    v3: Mutex<HashMap<String, Arc<Document>>>,
    v2: Mutex<Option<Arc<Document>>>,
    /// The protobuf form of `v2`, built from it on first request.
    v2_protobuf: Mutex<Option<Arc<Document>>>,
}

/// One served resource and what its definitions are built from.
struct Served {
    info: Arc<ResourceInfo>,
    /// `Some` for custom resources: their version's `openAPIV3Schema`, if any.
    custom: Option<Option<Value>>,
}

/// A served group-version and its resources.
struct GroupVersion {
    /// `api/v1`, `apis/apps/v1`.
    path: String,
    resources: Vec<Served>,
}

impl GroupVersion {
    fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        for s in &self.resources {
            format!("{:?}", s.info).hash(&mut h);
            match &s.custom {
                None => 0u8.hash(&mut h),
                Some(schema) => {
                    1u8.hash(&mut h);
                    schema.as_ref().map(Value::to_string).hash(&mut h);
                }
            }
        }
        h.finish()
    }
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The served group-versions, by path.
fn served(inner: &Inner) -> BTreeMap<String, GroupVersion> {
    let mut out: BTreeMap<String, GroupVersion> = BTreeMap::new();
    let custom = inner.strategies.custom();
    for r in inner.registry.all() {
        let path = gv_path(&r.group, &r.version);
        let is_custom = custom.get(&r.group, &r.plural).is_some();
        let schema = is_custom.then(|| custom.schema(&r.group, &r.plural, &r.version));
        out.entry(path.clone())
            .or_insert_with(|| GroupVersion {
                path,
                resources: Vec::new(),
            })
            .resources
            .push(Served {
                info: r,
                custom: schema,
            });
    }
    for gv in out.values_mut() {
        gv.resources
            .sort_by(|a, b| a.info.plural.cmp(&b.info.plural));
    }
    out
}

/// The paths of a group-version's resources and the definitions they need.
fn build(gv: &GroupVersion) -> (Vec<PathItem>, BTreeMap<String, Value>) {
    let builtin = Definitions::builtin();
    let mut items = Vec::new();
    let mut roots: BTreeSet<String> = paths::COMMON_DEFINITIONS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut custom_defs = BTreeMap::new();
    for s in &gv.resources {
        let r = &s.info;
        let schemas = match &s.custom {
            Some(schema) => {
                let name = custom::definition_name(&r.group, &r.version, &r.kind);
                let list = format!("{name}List");
                custom_defs.insert(
                    name.clone(),
                    custom::definition(&r.group, &r.version, &r.kind, schema.as_ref()),
                );
                custom_defs.insert(
                    list.clone(),
                    custom::list_definition(&r.group, &r.version, &r.kind),
                );
                roots.extend(custom::REFERENCED.iter().map(|s| s.to_string()));
                ResourceSchemas {
                    kind: Some(name),
                    list: Some(list),
                    builtin: false,
                }
            }
            None => {
                let k = builtin.kind(&r.group, &r.version, &r.kind);
                ResourceSchemas {
                    kind: k.map(|k| k.name.clone()),
                    list: k.and_then(|k| k.list.clone()),
                    builtin: true,
                }
            }
        };
        for item in paths::resource_paths(r, &schemas) {
            for op in &item.operations {
                let body = op.body.iter().filter_map(|b| b.schema.clone());
                let resp = op.responses.iter().filter_map(|r| r.schema.clone());
                roots.extend(body.chain(resp).filter(|n| !custom_defs.contains_key(n)));
            }
            items.push(item);
        }
    }
    let mut defs = builtin.closure(roots.iter().map(String::as_str));
    defs.extend(custom_defs);
    (items, defs)
}

/// The v2 document of every served group-version.
fn v2_json(gvs: &BTreeMap<String, GroupVersion>) -> Value {
    let mut items = Vec::new();
    let mut defs = BTreeMap::new();
    for gv in gvs.values() {
        let (i, d) = build(gv);
        items.extend(i);
        defs.extend(d);
    }
    v2::document(INFO_VERSION, &items, &defs)
}

impl OpenApiCache {
    fn v3_document(&self, gv: &GroupVersion) -> Result<Arc<Document>, ApiError> {
        let fingerprint = gv.fingerprint();
        if let Some(d) = self.lock_v3().get(&gv.path)
            && d.fingerprint == fingerprint
        {
            return Ok(d.clone());
        }
        let (items, defs) = build(gv);
        let doc = Arc::new(Document::new(
            fingerprint,
            &v3::document(INFO_VERSION, &items, defs),
        )?);
        self.lock_v3().insert(gv.path.clone(), doc.clone());
        Ok(doc)
    }

    fn v2_document(&self, gvs: &BTreeMap<String, GroupVersion>) -> Result<Arc<Document>, ApiError> {
        let mut h = DefaultHasher::new();
        for gv in gvs.values() {
            gv.fingerprint().hash(&mut h);
        }
        let fingerprint = h.finish();
        let mut cached = self.v2.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = cached.as_ref()
            && d.fingerprint == fingerprint
        {
            return Ok(d.clone());
        }
        let doc = Arc::new(Document::new(fingerprint, &v2_json(gvs))?);
        *cached = Some(doc.clone());
        Ok(doc)
    }

    fn v2_protobuf_document(
        &self,
        gvs: &BTreeMap<String, GroupVersion>,
    ) -> Result<Arc<Document>, ApiError> {
        let json = self.v2_document(gvs)?;
        let mut cached = self.v2_protobuf.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = cached.as_ref()
            && d.fingerprint == json.fingerprint
            && d.etag == json.etag
        {
            return Ok(d.clone());
        }
        let doc = Arc::new(Document::v2_protobuf(&json)?);
        *cached = Some(doc.clone());
        Ok(doc)
    }

    fn lock_v3(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Document>>> {
        self.v3.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A form a document is served in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Json,
    /// gnostic's `openapi.v2.Document` (only `/openapi/v2` has it).
    V2Protobuf,
}

/// The form the `Accept` header asks for, as upstream's handler picks it: clauses by
/// preference, each trying JSON, then the protobuf forms `offered`; wildcards match; no
/// header is `*/*`.
fn format(headers: &http::HeaderMap, offered: &[(&str, Format)]) -> Option<Format> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.trim().is_empty() {
        return Some(Format::Json);
    }
    crate::negotiation::media_ranges(accept)
        .iter()
        .find_map(|(range, _)| {
            let (ty, sub) = range.split_once('/').unwrap_or((range, ""));
            std::iter::once((JSON, Format::Json))
                .chain(offered.iter().copied())
                .find(|(media, _)| {
                    let (mty, msub) = media.split_once('/').unwrap_or((media, ""));
                    (ty == "*" || ty.eq_ignore_ascii_case(mty))
                        && (sub == "*" || sub.eq_ignore_ascii_case(msub))
                })
                .map(|(_, f)| f)
        })
}

/// The protobuf forms `/openapi/v2` is served in.
const V2_FORMATS: [(&str, Format); 2] = [
    (V2_PROTOBUF, Format::V2Protobuf),
    (V2_PROTOBUF_CURRENT, Format::V2Protobuf),
];

fn not_acceptable(what: &str, types: &str) -> ApiError {
    ApiError::new(
        406,
        "NotAcceptable",
        format!("only {types} is served for {what}"),
    )
}

fn not_found() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// Serves an `/openapi/...` request.
pub(crate) fn serve(
    inner: &Inner,
    path: &OpenApiPath,
    parts: &http::request::Parts,
) -> Result<ApiResponse, ApiError> {
    let gvs = served(inner);
    match path {
        OpenApiPath::V3Index => {
            let mut docs = Vec::new();
            for gv in gvs.values() {
                docs.push((gv.path.clone(), inner.openapi.v3_document(gv)?.etag.clone()));
            }
            let index = v3::index(docs.iter().map(|(p, h)| (p.as_str(), h.as_str())));
            let doc = Document::new(0, &index)?;
            Ok(respond(parts, &doc, None))
        }
        OpenApiPath::V3(gv_path) => {
            let gv = gvs.get(gv_path.as_str()).ok_or_else(not_found)?;
            if format(&parts.headers, &[]).is_none() {
                return Err(not_acceptable("OpenAPI v3 documents", JSON));
            }
            let doc = inner.openapi.v3_document(gv)?;
            let hash = crate::request::query_map(parts.uri.query()).remove("hash");
            match hash {
                Some(h) if h != doc.etag => Ok(redirect(&format!(
                    "/openapi/v3/{gv_path}?hash={}",
                    doc.etag
                ))),
                Some(_) => Ok(respond(parts, &doc, Some(inner.clock.now()))),
                None => Ok(respond(parts, &doc, None)),
            }
        }
        OpenApiPath::V2 => {
            let doc = match format(&parts.headers, &V2_FORMATS) {
                Some(Format::Json) => inner.openapi.v2_document(&gvs)?,
                Some(Format::V2Protobuf) => inner.openapi.v2_protobuf_document(&gvs)?,
                None => {
                    return Err(not_acceptable(
                        "/openapi/v2",
                        &format!("{JSON}, {V2_PROTOBUF_CURRENT} or {V2_PROTOBUF}"),
                    ));
                }
            };
            Ok(respond(parts, &doc, None))
        }
    }
}

/// A document with its ETag (304 when the client has it); `immutable_from` (for a URL with
/// the document's hash) adds upstream's year-long caching.
fn respond(
    parts: &http::request::Parts,
    doc: &Document,
    immutable_from: Option<chrono::DateTime<chrono::Utc>>,
) -> ApiResponse {
    let etag = format!("\"{}\"", doc.etag);
    let matches = parts
        .headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if matches {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Body::from(doc.bytes.clone()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(doc.content_type),
        );
        r
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    if let Some(now) = immutable_from {
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, immutable"),
        );
        let expires = (now + chrono::Duration::days(365)).format("%a, %d %b %Y %H:%M:%S GMT");
        if let Ok(v) = HeaderValue::from_str(&expires.to_string()) {
            h.insert(header::EXPIRES, v);
        }
    }
    resp
}

fn redirect(location: &str) -> ApiResponse {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}
