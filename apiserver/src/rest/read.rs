//! get and list.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use kybernetes_core::fields::FieldSelector;
use kybernetes_core::selector::LabelSelector;
use kybernetes_core::{ApiError, ResourceInfo};
use kybernetes_store::ListOptions;
use serde_json::{Value, json};

use super::{allowed_fields, store_err};
use crate::Inner;
use crate::object;
use crate::registry::RequestScope;
use crate::request::{ListQuery, RvMatch};

/// How long a read waits for the watch cache to reach a requested revision.
pub const FRESHNESS_TIMEOUT: Duration = Duration::from_secs(3);

/// Label and field selectors of a list or watch.
#[derive(Clone, Debug)]
pub struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    /// Parses and checks the selectors of a query.
    pub fn new(scope: &RequestScope, q: &ListQuery) -> Result<Self, ApiError> {
        let labels = LabelSelector::parse(&q.label_selector)
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let fields = FieldSelector::parse(&q.field_selector)
            .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
        fields
            .validate_fields(&allowed_fields(&*scope.strategy))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Filter { labels, fields })
    }

    /// The `spec.nodeName` a pod watch selects on, for the watch cache's index.
    pub fn trigger(&self) -> Option<&str> {
        self.fields.single_value("spec.nodeName")
    }

    /// True if the object passes both selectors.
    pub fn matches(&self, obj: &Value) -> bool {
        (self.labels.is_empty() || self.labels.matches(&object::labels(obj)))
            && self.fields.matches(obj)
    }
}

/// GET of one object (always a consistent read from the store).
pub async fn get(
    inner: &Arc<Inner>,
    r: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    let key = r.key(ns, name);
    match inner
        .store
        .get(&key)
        .await
        .map_err(|e| store_err(r, name, e))?
    {
        Some(kv) => {
            let stored = object::decode(&kv)?;
            let strategy = inner.strategies.lookup(r);
            Ok(strategy.served_form(r, &stored).unwrap_or(stored))
        }
        None => Err(ApiError::not_found(&r.group, &r.plural, name)),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, start: &str) -> String {
    let raw = serde_json::to_vec(&ContinueToken {
        rv,
        start: start.to_string(),
    })
    .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> Result<ContinueToken, ApiError> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| ApiError::bad_request("continue key is not valid: illegal base64 data"))?;
    serde_json::from_slice(&raw)
        .map_err(|_| ApiError::bad_request("continue key is not valid: not a continue token"))
}

fn list_object(r: &ResourceInfo, items: Vec<Value>, rv: i64, cont: Option<String>) -> Value {
    let mut meta = json!({ "resourceVersion": rv.to_string() });
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({ "kind": r.list_kind(), "apiVersion": r.api_version(), "metadata": meta, "items": items })
}

/// LIST, served from the watch cache unless the request needs an exact revision or paging.
pub async fn list(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    q: &ListQuery,
) -> Result<Value, ApiError> {
    let r = &*scope.resource;
    let filter = Filter::new(scope, q)?;
    let rv = q.rv()?;
    let prefix = r.namespace_prefix(scope.ns());
    if q.continue_token.is_some() && rv.is_some_and(|v| v != 0) {
        return Err(ApiError::bad_request(
            "specifying resource version is not allowed when using continue",
        ));
    }
    if q.rv_match != RvMatch::Unset && rv.is_none() {
        return Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }
    let paged = q.limit.is_some() && rv != Some(0) && q.rv_match != RvMatch::NotOlderThan;
    let exact = q.rv_match == RvMatch::Exact;
    if q.continue_token.is_some() || paged || exact {
        return list_from_store(inner, scope, &prefix, q, rv, &filter).await;
    }
    let cacher = inner.cacher(r).await?;
    let min = match rv {
        Some(0) => 0,
        Some(n) => n,
        None => inner
            .store
            .current_revision()
            .await
            .map_err(|e| store_err(r, "", e))?,
    };
    cacher.wait_until(min, FRESHNESS_TIMEOUT).await?;
    let snap = cacher.snapshot(&prefix, filter.trigger());
    let items: Vec<Value> = snap
        .objects
        .iter()
        .filter_map(|o| {
            // Decoded once here: the cache keeps only recently changed objects decoded.
            let value = o.value();
            filter.matches(&value).then(|| served(scope, &value))
        })
        .collect();
    Ok(list_object(r, items, snap.revision.max(min), None))
}

/// A stored object as the scope's version serves it.
fn served(scope: &RequestScope, stored: &Value) -> Value {
    scope
        .strategy
        .served_form(&scope.resource, stored)
        .unwrap_or_else(|| stored.clone())
}

async fn list_from_store(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    prefix: &str,
    q: &ListQuery,
    rv: Option<i64>,
    filter: &Filter,
) -> Result<Value, ApiError> {
    let (revision, mut start_after) = match &q.continue_token {
        Some(t) => {
            let tok = decode_continue(t)?;
            if !tok.start.starts_with(prefix) {
                return Err(ApiError::bad_request(
                    "continue key is not valid: it belongs to another list",
                ));
            }
            (Some(tok.rv), Some(tok.start))
        }
        None => (
            if q.rv_match == RvMatch::Exact {
                rv
            } else {
                None
            },
            None,
        ),
    };
    let r = &*scope.resource;
    let limit = q.limit.unwrap_or(0);
    let mut items = Vec::new();
    let mut list_rev = revision;
    let mut more;
    loop {
        let want = if limit == 0 {
            None
        } else {
            Some((limit - items.len()).max(1))
        };
        let page = inner
            .store
            .list(prefix, ListOptions { revision: list_rev, limit: want, start_after: start_after.clone() })
            .await
            .map_err(|e| match e {
                kybernetes_store::Error::Gone { .. } if q.continue_token.is_some() => ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ),
                other => store_err(r, "", other),
            })?;
        list_rev = Some(page.revision);
        more = page.more;
        for kv in &page.items {
            start_after = Some(kv.key.clone());
            let obj = object::decode(kv)?;
            if filter.matches(&obj) {
                items.push(served(scope, &obj));
            }
        }
        if !more || (limit > 0 && items.len() >= limit) {
            break;
        }
    }
    let revision = list_rev.unwrap_or(0);
    let cont = if more {
        start_after.map(|s| encode_continue(revision, &s))
    } else {
        None
    };
    Ok(list_object(r, items, revision, cont))
}
