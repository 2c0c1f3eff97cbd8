//! `GET pods/NAME/log` (upstream's `LogREST`): the options checked as upstream's
//! `ValidatePodLogOptions`, the container defaulted as upstream's `LogLocation`, and the log
//! streamed from the pod's node agent as `text/plain`.
//!
//! The API server never reads a log itself: it asks the node agent of the pod's node through
//! its [`KubeletConnection`](crate::kubelet::KubeletConnection), which may be in process or,
//! later, on another machine.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use http::{HeaderValue, Response, StatusCode, header};
use kybernetes_core::ApiError;
use kybernetes_core::status::StatusCause;
use serde_json::Value;

use super::read;
use crate::Inner;
use crate::kubelet::{ContainerRef, LogQuery};
use crate::object::meta_str;
use crate::registry::RequestScope;
use crate::registry::pod::{ContainerDefault, choose_container};
use crate::response::ApiResponse;

/// Serves one `pods/log` request.
#[tracing::instrument(skip_all, fields(namespace = scope.ns(), pod = scope.name()))]
pub async fn get(inner: &Arc<Inner>, scope: &RequestScope) -> Result<ApiResponse, ApiError> {
    let name = scope.name();
    let (query, container) = parse_query(&scope.query, name)?;
    let pod = read::get(inner, &scope.resource, scope.ns(), name).await?;
    let container = default_container(&pod, name, container)?;
    let Some(node) = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        // Upstream answers an unscheduled pod with an empty log.
        return Ok(text_response(Body::empty()));
    };
    if !query.previous {
        refuse_waiting_container(&pod, name, &container)?;
    }
    let connection = inner.kubelets.connection(node)?;
    let target = ContainerRef {
        namespace: scope.ns().unwrap_or_default().to_string(),
        pod: name.to_string(),
        pod_uid: meta_str(&pod, "uid").unwrap_or_default().to_string(),
        container,
    };
    let lines = connection.container_logs(&target, &query).await?;
    // An error mid-stream can no longer change the status code: it ends the body and is
    // logged, as upstream's stream copy does.
    let body = lines
        .take_while(|chunk| {
            let go = match chunk {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(error = %e.message, "log stream from the node agent failed");
                    false
                }
            };
            futures::future::ready(go)
        })
        .filter_map(|chunk| futures::future::ready(chunk.ok()))
        .map(Ok::<_, std::io::Error>);
    Ok(text_response(Body::from_stream(body)))
}

fn text_response(body: Body) -> ApiResponse {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// Reads and checks the query (upstream's `PodLogOptions` conversion, then
/// `ValidatePodLogOptions`); returns the options and the container asked for.
fn parse_query(
    q: &HashMap<String, String>,
    pod: &str,
) -> Result<(LogQuery, Option<String>), ApiError> {
    let flag = |k: &str| -> Result<bool, ApiError> {
        match q.get(k).map(String::as_str) {
            None | Some("") | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid value {other:?} for {k}: want true or false"
            ))),
        }
    };
    let int = |k: &str| -> Result<Option<i64>, ApiError> {
        match q.get(k).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value {v:?} for {k}: want an integer"))
            }),
        }
    };
    let since_time = match q.get("sinceTime").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::bad_request(format!(
                        "invalid value {v:?} for sinceTime: want an RFC 3339 time"
                    ))
                })?,
        ),
    };
    let query = LogQuery {
        follow: flag("follow")?,
        tail_lines: int("tailLines")?,
        since_seconds: int("sinceSeconds")?,
        since_time,
        timestamps: flag("timestamps")?,
        previous: flag("previous")?,
        limit_bytes: int("limitBytes")?,
    };
    let mut causes = Vec::new();
    let mut invalid = |field: &str, value: i64, message: &str| {
        causes.push(StatusCause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {value}: {message}"),
            field: field.into(),
        });
    };
    if let Some(n) = query.tail_lines.filter(|n| *n < 0) {
        invalid("tailLines", n, "must be greater than or equal to 0");
    }
    if let Some(n) = query.limit_bytes.filter(|n| *n < 1) {
        invalid("limitBytes", n, "must be greater than 0");
    }
    if let Some(n) = query.since_seconds.filter(|n| *n < 1) {
        invalid("sinceSeconds", n, "must be greater than 0");
    }
    if query.since_seconds.is_some() && query.since_time.is_some() {
        causes.push(StatusCause {
            reason: "FieldValueForbidden".into(),
            message: "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"
                .into(),
            field: String::new(),
        });
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("", "PodLogOptions", pod, causes));
    }
    let container = q.get("container").filter(|c| !c.is_empty()).cloned();
    Ok((query, container))
}

/// The container to read: the one named, which must be in the pod, or the pod's only
/// container (upstream's rule; kubectl itself applies the default-container annotation).
fn default_container(pod: &Value, name: &str, asked: Option<String>) -> Result<String, ApiError> {
    choose_container(pod, name, asked.as_deref(), ContainerDefault::OnlyContainer)
}

/// A container that has not started yet has no log (upstream's kubelet
/// `validateContainerLogStatus`).
fn refuse_waiting_container(pod: &Value, name: &str, container: &str) -> Result<(), ApiError> {
    let statuses = [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .filter_map(|k| {
        pod.pointer(&format!("/status/{k}"))
            .and_then(Value::as_array)
    })
    .flatten();
    for s in statuses {
        if s.get("name").and_then(Value::as_str) != Some(container) {
            continue;
        }
        let waiting = s.pointer("/state/waiting");
        let ever_ran = s.pointer("/lastState/terminated").is_some();
        if let Some(w) = waiting
            && !ever_ran
        {
            let reason = w.get("reason").and_then(Value::as_str).unwrap_or("");
            return Err(ApiError::bad_request(format!(
                "container {container:?} in pod {name:?} is waiting to start: {reason}"
            )));
        }
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "container {container:?} in pod {name:?} is waiting to start: ContainerCreating"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn bad_options_are_invalid_pod_log_options() {
        let err = parse_query(
            &query(&[
                ("tailLines", "-1"),
                ("sinceSeconds", "5"),
                ("sinceTime", "2024-01-01T00:00:00Z"),
            ]),
            "web",
        )
        .expect_err("invalid");
        assert_eq!(err.code, 422);
        assert!(
            err.message.starts_with("PodLogOptions \"web\" is invalid"),
            "{}",
            err.message
        );
        assert!(err.message.contains("tailLines"), "{}", err.message);
        assert!(err.message.contains("at most one of"), "{}", err.message);
        let err = parse_query(&query(&[("follow", "maybe")]), "web").expect_err("bad");
        assert_eq!(err.code, 400);
    }

    #[test]
    fn the_only_container_is_the_default_and_several_need_a_name() {
        let one = json!({"spec": {"containers": [{"name": "main"}]}});
        assert_eq!(default_container(&one, "p", None).expect("default"), "main");
        let two = json!({"spec": {
            "containers": [{"name": "a"}, {"name": "b"}],
            "initContainers": [{"name": "setup"}],
        }});
        let err = default_container(&two, "p", None).expect_err("ambiguous");
        assert_eq!(
            err.message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [setup]"
        );
        assert_eq!(
            default_container(&two, "p", Some("setup".into())).expect("init"),
            "setup"
        );
        let err = default_container(&two, "p", Some("c".into())).expect_err("unknown");
        assert_eq!(err.message, "container c is not valid for pod p");
    }

    #[test]
    fn a_container_that_never_started_has_no_log_yet() {
        let pod = json!({"status": {"containerStatuses": [
            {"name": "main", "state": {"waiting": {"reason": "ContainerCreating"}}}
        ]}});
        let err = refuse_waiting_container(&pod, "p", "main").expect_err("waiting");
        assert_eq!(err.code, 400);
        assert!(
            err.message
                .contains("is waiting to start: ContainerCreating")
        );
        let restarted = json!({"status": {"containerStatuses": [{
            "name": "main",
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1}},
        }]}});
        assert!(refuse_waiting_container(&restarted, "p", "main").is_ok());
    }
}
