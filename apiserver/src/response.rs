//! Building HTTP responses: JSON objects and `Status` errors.

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use kybernetes_core::ApiError;
use serde_json::Value;

/// The HTTP response type of the API server.
pub type ApiResponse = Response<Body>;

/// A JSON response with a status code.
pub fn json(code: StatusCode, value: &Value) -> ApiResponse {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    json_bytes(code, Bytes::from(bytes))
}

/// A response from already-encoded JSON.
pub fn json_bytes(code: StatusCode, bytes: Bytes) -> ApiResponse {
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A `Status` error response.
pub fn error(err: &ApiError) -> ApiResponse {
    let code = StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json(code, &err.to_status());
    if let Some(secs) = err.retry_after_seconds
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// A plain-text response.
pub fn text(code: StatusCode, body: &'static str) -> ApiResponse {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A text response of any content type, from an owned body.
pub fn text_owned(code: StatusCode, content_type: &'static str, body: String) -> ApiResponse {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
