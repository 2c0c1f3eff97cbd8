//! `POST serviceaccounts/NAME/token` (upstream's `TokenREST`): a `TokenRequest`
//! (`authentication.k8s.io/v1`) in, the same with `status.token` and
//! `status.expirationTimestamp` out.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use http::StatusCode;
use kybernetes_core::ApiError;
use serde_json::{Value, json};

use crate::Inner;
use crate::object::meta_str;
use crate::registry::RequestScope;
use crate::response::{self, ApiResponse};
use crate::rest::decode::parse_json;
use crate::rest::read;

/// `spec.expirationSeconds` when the request sets none (upstream's default).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest token upstream issues: ten minutes.
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The longest: 2^32 seconds.
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

fn invalid(name: &str, field: &str, message: String) -> ApiError {
    ApiError::invalid_field(
        "authentication.k8s.io",
        "TokenRequest",
        name,
        field,
        message,
    )
}

/// The object a token is bound to: its kind, name and UID as stored.
struct BoundObject {
    kind: &'static str,
    name: String,
    uid: String,
}

/// Reads `spec.boundObjectRef`: a Pod or Secret (upstream also allows a Node) in the service
/// account's namespace that exists, with the UID given if one is.
async fn bound_object(
    inner: &Arc<Inner>,
    namespace: &str,
    name: &str,
    reference: &Value,
) -> Result<Option<BoundObject>, ApiError> {
    if reference.is_null() {
        return Ok(None);
    }
    let kind = reference
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (kind, plural, namespaced) = match kind {
        "Pod" => ("Pod", "pods", true),
        "Secret" => ("Secret", "secrets", true),
        "Node" => ("Node", "nodes", false),
        other => {
            return Err(invalid(
                name,
                "spec.boundObjectRef.kind",
                format!(
                    "Unsupported value: {other:?}: supported values: \"Pod\", \"Secret\", \"Node\""
                ),
            ));
        }
    };
    let object_name = reference
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if object_name.is_empty() {
        return Err(invalid(
            name,
            "spec.boundObjectRef.name",
            "Required value".into(),
        ));
    }
    let r = inner
        .registry
        .lookup("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))?;
    let obj = read::get(inner, &r, namespaced.then_some(namespace), object_name).await?;
    let uid = meta_str(&obj, "uid").unwrap_or_default().to_string();
    if let Some(want) = reference
        .get("uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        && want != uid
    {
        return Err(ApiError::conflict(
            "",
            plural,
            object_name,
            &format!(
                "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        ));
    }
    Ok(Some(BoundObject {
        kind,
        name: object_name.to_string(),
        uid,
    }))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Issues a token for the service account the request names.
pub(crate) async fn create(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    body: &bytes::Bytes,
) -> Result<ApiResponse, ApiError> {
    let name = scope.name();
    let namespace = scope.ns().unwrap_or_default();
    let request = if body.is_empty() {
        json!({})
    } else {
        parse_json(body)?
    };
    if let Some(kind) = request.get("kind").and_then(Value::as_str)
        && kind != "TokenRequest"
    {
        return Err(ApiError::bad_request(format!(
            "expected a TokenRequest, got a {kind}"
        )));
    }
    let sa = read::get(inner, &scope.resource, Some(namespace), name).await?;
    let spec = request.get("spec").cloned().unwrap_or(json!({}));
    let expiration = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => v.as_i64().ok_or_else(|| {
            invalid(
                name,
                "spec.expirationSeconds",
                format!("Invalid value: {v}: must be an integer"),
            )
        })?,
    };
    if expiration < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            name,
            "spec.expirationSeconds",
            format!("Invalid value: {expiration}: may not specify a duration less than 10 minutes"),
        ));
    }
    if expiration > MAX_EXPIRATION_SECONDS {
        return Err(invalid(
            name,
            "spec.expirationSeconds",
            format!(
                "Invalid value: {expiration}: may not specify a duration larger than 2^32 seconds"
            ),
        ));
    }
    let issuer = inner.tokens.issuer().to_string();
    let audiences: Vec<String> = match spec.get("audiences").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => vec![issuer.clone()],
    };
    let bound = bound_object(
        inner,
        namespace,
        name,
        spec.get("boundObjectRef").unwrap_or(&Value::Null),
    )
    .await?;
    let now = inner.clock.now();
    let expires = now + chrono::Duration::seconds(expiration);
    let sa_uid = meta_str(&sa, "uid").unwrap_or_default();
    let mut private = json!({
        "namespace": namespace,
        "serviceaccount": { "name": name, "uid": sa_uid },
    });
    if let Some(b) = &bound {
        private[b.kind.to_ascii_lowercase()] = json!({ "name": b.name, "uid": b.uid });
    }
    let claims = json!({
        "aud": audiences,
        "exp": expires.timestamp(),
        "iat": now.timestamp(),
        "nbf": now.timestamp(),
        "iss": issuer,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": private,
        "sub": format!("{}{namespace}:{name}", super::USER_PREFIX),
    });
    let token = inner
        .tokens
        .sign(&claims)
        .map_err(|e| ApiError::internal(format!("signing the token: {e}")))?;
    let mut out_spec = spec;
    out_spec["audiences"] = json!(audiences);
    out_spec["expirationSeconds"] = json!(expiration);
    if out_spec.get("boundObjectRef").is_none() {
        out_spec["boundObjectRef"] = Value::Null;
    }
    let response = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": { "name": name, "namespace": namespace, "creationTimestamp": rfc3339(now) },
        "spec": out_spec,
        "status": { "token": token, "expirationTimestamp": rfc3339(expires) },
    });
    Ok(response::json(StatusCode::CREATED, &response))
}
