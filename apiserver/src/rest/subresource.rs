//! Subresources: the generic `status` and `scale`, and the handlers a kind's strategy names
//! ([`Subresource`]): `pods/binding`, `pods/eviction`, `pods/log`, `namespaces/finalize` and
//! `serviceaccounts/token`.

use std::sync::Arc;

use http::{Method, StatusCode};
use kybernetes_core::status::success_status;
use kybernetes_core::{ApiError, ResourceInfo};
use serde_json::{Value, json};

use super::decode::{decode_object, parse_json};
use super::{read, write};
use crate::Inner;
use crate::object::{meta_str, path_get, path_set};
use crate::registry::{RequestScope, Subresource, before};
use crate::request::parse_rv;
use crate::response::{self, ApiResponse};

fn not_found() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// Routes a subresource request: the generic `status` and `scale`, then the kind's own
/// (from its strategy).
pub async fn handle(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    method: &Method,
    body: &bytes::Bytes,
) -> Result<ApiResponse, ApiError> {
    let r = &*scope.resource;
    let name = scope.name();
    let sub = scope.subresource.as_deref().unwrap_or("");
    let ok = |v: Value| response::json(StatusCode::OK, &v);
    match (sub, method) {
        ("status", &Method::GET) if r.status_subresource => {
            read::get(inner, r, scope.ns(), name).await.map(ok)
        }
        ("status", &Method::PUT) if r.status_subresource => {
            write::update_status(inner, scope, decode_object(scope, body)?)
                .await
                .map(ok)
        }
        ("status", &Method::PATCH) if r.status_subresource => {
            write::patch(inner, scope, body).await.map(ok)
        }
        ("scale", _) if r.scale.is_some() => scale(inner, scope, method, body).await.map(ok),
        _ => match (scope.strategy.subresource(sub), method) {
            (Some(Subresource::Binding), &Method::POST) => {
                bind(inner, scope, parse_json(body)?).await?;
                Ok(response::json(
                    StatusCode::CREATED,
                    &success_status("", "pods", name, None),
                ))
            }
            (Some(Subresource::Log), &Method::GET) => super::log::get(inner, scope).await,
            (Some(Subresource::Token), &Method::POST) => {
                crate::serviceaccount::token_request::create(inner, scope, body).await
            }
            (Some(Subresource::Eviction), &Method::POST) => {
                super::eviction::evict(inner, scope, body).await
            }
            (Some(Subresource::Finalize), &Method::PUT) => {
                let new = parse_json(body)?;
                let finalizers = new
                    .pointer("/spec/finalizers")
                    .cloned()
                    .unwrap_or(json!([]));
                let precondition = parse_rv(meta_str(&new, "resourceVersion"))?;
                write::guaranteed_update(inner, scope, precondition, |old| {
                    let mut o = old.clone();
                    o["spec"]["finalizers"] = finalizers.clone();
                    Ok(o)
                })
                .await
                .map(ok)
            }
            (Some(_), _) => Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method} {}/{sub})",
                r.plural
            ))),
            (None, _) => Err(not_found()),
        },
    }
}

fn scale_of(r: &ResourceInfo, obj: &Value) -> Value {
    let Some(s) = &r.scale else {
        return Value::Null;
    };
    let spec = path_get(obj, &s.spec_replicas_path)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let status = path_get(obj, &s.status_replicas_path)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut st = json!({ "replicas": status });
    if let Some(sel) = s
        .label_selector_path
        .as_deref()
        .and_then(|p| path_get(obj, p))
        .and_then(Value::as_str)
    {
        st["selector"] = json!(sel);
    } else if let Some(sel) = obj.pointer("/spec/selector")
        && let Ok(s) = scale_selector(sel)
    {
        st["selector"] = json!(s.to_string());
    }
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    let mut m = json!({});
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(f) {
            m[f] = v.clone();
        }
    }
    json!({ "kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": m, "spec": { "replicas": spec }, "status": st })
}

/// A kind's `spec.selector` as the scale's selector: a `LabelSelector`, or a plain map of
/// labels (a ReplicationController's, which upstream's scale writes as `key=value,...`). The
/// two shapes cannot be confused: a map selector's values are strings, and a `LabelSelector`'s
/// fields never are.
fn scale_selector(
    sel: &Value,
) -> Result<kybernetes_core::selector::LabelSelector, kybernetes_core::selector::SelectorError> {
    use kybernetes_core::selector::LabelSelector;
    let labels: Option<std::collections::BTreeMap<String, String>> =
        sel.as_object().filter(|m| !m.is_empty()).and_then(|m| {
            m.iter()
                .map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        });
    match labels {
        Some(labels) => LabelSelector::from_labels(&labels),
        None => LabelSelector::from_json(sel),
    }
}

async fn scale(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    method: &Method,
    body: &bytes::Bytes,
) -> Result<Value, ApiError> {
    let (r, name) = (&*scope.resource, scope.name());
    let Some(spec_path) = r.scale.as_ref().map(|s| s.spec_replicas_path.clone()) else {
        return Err(not_found());
    };
    let fm = crate::apply::FieldManager::for_scope(inner, scope).await?;
    if *method == Method::PATCH {
        if crate::apply::is_apply(&scope.content_type) {
            let parent = crate::apply::apply(inner, scope, body, &fm).await?;
            return Ok(scale_of(r, &parent));
        }
        fm.check_not_forced()?;
    }
    let now = inner.clock.now_rfc3339();
    match *method {
        Method::GET => Ok(scale_of(r, &read::get(inner, r, scope.ns(), name).await?)),
        Method::PUT | Method::PATCH => {
            let put = if *method == Method::PUT {
                Some(parse_json(body)?)
            } else {
                None
            };
            let precondition = match &put {
                Some(p) => parse_rv(meta_str(p, "resourceVersion"))?,
                None => None,
            };
            let patch = match &put {
                Some(_) => None,
                None => Some(write::PatchDocument::parse(&scope.content_type, body)?),
            };
            let updated = write::guaranteed_update(inner, scope, precondition, |old| {
                let current = scale_of(r, old);
                let desired = match (&put, &patch) {
                    (Some(p), _) => p.clone(),
                    (None, Some(patch)) => patch.apply(&current)?,
                    (None, None) => current,
                };
                let replicas = desired
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| {
                        ApiError::invalid_field(
                            "autoscaling",
                            "Scale",
                            name,
                            "spec.replicas",
                            "Required value",
                        )
                    })?;
                if replicas < 0 {
                    return Err(ApiError::invalid_field(
                        "autoscaling",
                        "Scale",
                        name,
                        "spec.replicas",
                        format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                    ));
                }
                let mut new = old.clone();
                path_set(&mut new, &spec_path, json!(replicas));
                before::prepare_for_update(r, &*scope.strategy, old, &mut new);
                fm.record_update(r, old, &mut new, "scale", &now);
                Ok(new)
            })
            .await?;
            Ok(scale_of(r, &updated))
        }
        _ => Err(ApiError::method_not_allowed(
            "scale supports get, update and patch",
        )),
    }
}

/// Binds a pod to a node: sets `spec.nodeName` once and the PodScheduled condition.
async fn bind(inner: &Arc<Inner>, scope: &RequestScope, binding: Value) -> Result<Value, ApiError> {
    let name = scope.name();
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if node.is_empty() {
        return Err(ApiError::invalid_field(
            "",
            "Binding",
            name,
            "target.name",
            "Required value",
        ));
    }
    let uid_precondition = binding
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .map(String::from);
    let now = inner.clock.now_rfc3339();
    write::guaranteed_update(inner, scope, None, |old| {
        if let Some(uid) = &uid_precondition
            && meta_str(old, "uid") != Some(uid.as_str())
        {
            return Err(ApiError::conflict("", "pods", name, "the UID in the binding does not match the pod"));
        }
        if meta_str(old, "deletionTimestamp").is_some() {
            return Err(ApiError::conflict("", "pods", name, "pod is being deleted, cannot be assigned to a host"));
        }
        if let Some(existing) = old.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            return Err(ApiError::conflict("", "pods", name, &format!("pod {name} is already assigned to node {existing:?}")));
        }
        let mut new = old.clone();
        new["spec"]["nodeName"] = json!(node);
        if !new.get("status").is_some_and(Value::is_object) {
            new["status"] = json!({});
        }
        let conds = new["status"].as_object_mut().map(|s| s.entry("conditions").or_insert_with(|| json!([])));
        if let Some(Value::Array(conds)) = conds {
            conds.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
            conds.push(json!({ "type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now }));
        }
        Ok(new)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scale_selector_comes_from_a_label_selector_or_a_map_of_labels() {
        let rc = json!({"app": "db", "tier": "backend"});
        assert_eq!(
            scale_selector(&rc).map(|s| s.to_string()).ok().as_deref(),
            Some("app=db,tier=backend")
        );
        let deploy = json!({"matchLabels": {"app": "web"}});
        assert_eq!(
            scale_selector(&deploy)
                .map(|s| s.to_string())
                .ok()
                .as_deref(),
            Some("app=web")
        );
    }
}
