//! `/healthz`, `/livez` and `/readyz` as upstream serves them: named checks, `?verbose` for
//! the list, `?exclude=NAME` to skip one, `/readyz/NAME` for one check, and on failure a 500
//! that lists every check.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use kybernetes_core::ApiError;

use crate::Inner;
use crate::response::{self, ApiResponse};

/// How long the store may take to answer the `etcd` check.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The checks of an endpoint, in upstream's order: liveness does not include `shutdown`, so a
/// server draining for shutdown stays live while it stops being ready.
fn checks(endpoint: &str) -> &'static [&'static str] {
    match endpoint {
        "readyz" => &["ping", "log", "etcd", "shutdown"],
        _ => &["ping", "log", "etcd"],
    }
}

async fn run(inner: &Arc<Inner>, name: &str) -> bool {
    match name {
        "etcd" => matches!(
            tokio::time::timeout(STORE_CHECK_TIMEOUT, inner.store.current_revision()).await,
            Ok(Ok(_))
        ),
        "shutdown" => !*inner.shutdown_signal().borrow(),
        _ => true,
    }
}

/// Serves one health request.
pub async fn check(
    inner: &Arc<Inner>,
    endpoint: &str,
    only: Option<&str>,
    verbose: bool,
    excluded: &[String],
) -> Result<ApiResponse, ApiError> {
    let all = checks(endpoint);
    if let Some(name) = only {
        if !all.contains(&name) {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
        return Ok(if run(inner, name).await {
            response::text_owned(StatusCode::OK, "text/plain; charset=utf-8", "ok".into())
        } else {
            response::text_owned(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                "internal server error: reason withheld\n".into(),
            )
        });
    }
    let mut lines = String::new();
    let mut failed = false;
    for name in all {
        if excluded.iter().any(|e| e == name) {
            lines.push_str(&format!("[+]{name} excluded: ok\n"));
            continue;
        }
        if run(inner, name).await {
            lines.push_str(&format!("[+]{name} ok\n"));
        } else {
            failed = true;
            lines.push_str(&format!("[-]{name} failed: reason withheld\n"));
        }
    }
    let (code, body) = if failed {
        lines.push_str(&format!("{endpoint} check failed\n"));
        (StatusCode::INTERNAL_SERVER_ERROR, lines)
    } else if verbose {
        lines.push_str(&format!("{endpoint} check passed\n"));
        (StatusCode::OK, lines)
    } else {
        (StatusCode::OK, "ok".to_string())
    };
    Ok(response::text_owned(
        code,
        "text/plain; charset=utf-8",
        body,
    ))
}
