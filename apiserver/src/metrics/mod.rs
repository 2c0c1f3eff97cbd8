//! The API server's own metrics, served at `/metrics` in the Prometheus/OpenMetrics text
//! format with upstream's names, so dashboards and alerts written for kube-apiserver work:
//!
//! - `apiserver_request_total{verb,group,version,resource,subresource,scope,component,code}`;
//! - `apiserver_request_duration_seconds` (a histogram with upstream's buckets; long-running
//!   requests, watches and streams, are left out as upstream does);
//! - `apiserver_longrunning_requests{verb,group,version,resource,subresource,scope,component}`:
//!   watches and other streams open right now;
//! - `etcd_request_duration_seconds{operation,type}`: the store's latency by operation and
//!   resource, whichever store backs the cluster (upstream's name, so existing panels work).
//!
//! [`with_metrics`] is a layer of the handler chain; [`MeteredStore`] wraps the store.

mod store;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use futures::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use store::MeteredStore;

use crate::request::RequestInfo;
use crate::response::ApiResponse;

/// Upstream's request latency buckets (seconds).
const REQUEST_BUCKETS: [f64; 21] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0,
];

/// Upstream's storage latency buckets (seconds).
const STORAGE_BUCKETS: [f64; 17] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 10.0, 15.0,
];

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

fn storage_histogram() -> Histogram {
    Histogram::new(STORAGE_BUCKETS)
}

/// What a request is, as the request metrics label it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: String,
    group: String,
    version: String,
    resource: String,
    subresource: String,
    scope: String,
    component: String,
}

/// [`RequestLabels`] and the response code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestCodeLabels {
    #[prometheus(flatten)]
    request: RequestLabels,
    code: String,
}

/// A store call, as the storage metric labels it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StorageLabels {
    operation: String,
    r#type: String,
}

/// The API server's metrics. Cheap to clone; every clone records into the same families.
#[derive(Clone)]
pub struct ApiMetrics {
    registry: Arc<Mutex<Registry>>,
    requests: Family<RequestCodeLabels, Counter>,
    durations: Family<RequestLabels, Histogram, fn() -> Histogram>,
    long_running: Family<RequestLabels, Gauge>,
    storage: Family<StorageLabels, Histogram, fn() -> Histogram>,
}

impl std::fmt::Debug for ApiMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiMetrics").finish_non_exhaustive()
    }
}

impl Default for ApiMetrics {
    fn default() -> Self {
        let requests = Family::<RequestCodeLabels, Counter>::default();
        let durations = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            request_histogram,
        );
        let long_running = Family::<RequestLabels, Gauge>::default();
        let storage = Family::<StorageLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            storage_histogram,
        );
        let mut registry = Registry::default();
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, group, version, resource, scope, component, and HTTP response code",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, group, version, resource, subresource, scope and component",
            durations.clone(),
        );
        registry.register(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component",
            long_running.clone(),
        );
        registry.register(
            "etcd_request_duration_seconds",
            "Store request latency in seconds for each operation and object type",
            storage.clone(),
        );
        ApiMetrics {
            registry: Arc::new(Mutex::new(registry)),
            requests,
            durations,
            long_running,
            storage,
        }
    }
}

impl ApiMetrics {
    /// The metrics in the OpenMetrics text format (what Prometheus scrapes).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::warn!(error = %e, "encoding the metrics failed");
        }
        out
    }

    /// Records one store call.
    pub(crate) fn observe_storage(&self, operation: &str, type_: &str, seconds: f64) {
        self.storage
            .get_or_create(&StorageLabels {
                operation: operation.into(),
                r#type: type_.into(),
            })
            .observe(seconds);
    }
}

fn labels(info: &RequestInfo) -> RequestLabels {
    let scope = if !info.resource_request {
        ""
    } else if info.name.is_some() {
        "resource"
    } else if info.namespace.is_some() {
        "namespace"
    } else {
        "cluster"
    };
    RequestLabels {
        verb: upstream_verb(info).into(),
        group: info.group.clone(),
        version: info.version.clone(),
        resource: info.resource.clone(),
        subresource: info.subresource.clone().unwrap_or_default(),
        scope: scope.into(),
        component: "apiserver".into(),
    }
}

/// The verb as upstream's metrics spell it: upper case, and LIST with `watch=true` is WATCH.
fn upstream_verb(info: &RequestInfo) -> &'static str {
    match info.verb.as_str() {
        "get" => "GET",
        "list" => "LIST",
        "watch" => "WATCH",
        "create" => "POST",
        "update" => "PUT",
        "patch" => "PATCH",
        "delete" => "DELETE",
        "deletecollection" => "DELETE",
        "connect" => "CONNECT",
        _ => "GET",
    }
}

/// Whether a request keeps its connection open (watches and streams), as upstream's
/// long-running request check.
fn long_running(info: &RequestInfo) -> bool {
    info.verb == "watch"
        || matches!(
            info.subresource.as_deref(),
            Some("log" | "exec" | "attach" | "portforward" | "proxy")
        )
}

/// The metrics layer of the handler chain: counts every request by its code, times the short
/// ones, and keeps long-running ones in the gauge for as long as their body streams.
pub(crate) async fn with_metrics(
    State(metrics): State<ApiMetrics>,
    req: Request,
    next: Next,
) -> ApiResponse {
    let info = match req.extensions().get::<RequestInfo>() {
        Some(info) => info.clone(),
        None => RequestInfo::parse(req.method(), req.uri()),
    };
    let labels = labels(&info);
    let start = Instant::now();
    let response = next.run(req).await;
    let code = response.status().as_u16().to_string();
    metrics
        .requests
        .get_or_create(&RequestCodeLabels {
            request: labels.clone(),
            code,
        })
        .inc();
    if !long_running(&info) {
        metrics
            .durations
            .get_or_create(&labels)
            .observe(start.elapsed().as_secs_f64());
        return response;
    }
    if !response.status().is_success() {
        return response;
    }
    let gauge = metrics.long_running.get_or_create(&labels).clone();
    let guard = LongRunning::new(gauge);
    let (parts, body) = response.into_parts();
    // The guard lives as long as the body: the gauge drops when the stream ends or the client
    // goes away.
    let body = body.into_data_stream().map(move |chunk| {
        let _open = &guard;
        chunk
    });
    ApiResponse::from_parts(parts, Body::from_stream(body))
}

/// One open long-running request in the gauge.
struct LongRunning(Gauge);

impl LongRunning {
    fn new(gauge: Gauge) -> Self {
        gauge.inc();
        LongRunning(gauge)
    }
}

impl Drop for LongRunning {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_has_upstreams_names_and_labels() {
        let m = ApiMetrics::default();
        let info = RequestInfo::parse(
            &http::Method::GET,
            &"/api/v1/namespaces/default/pods".parse().expect("uri"),
        );
        m.requests
            .get_or_create(&RequestCodeLabels {
                request: labels(&info),
                code: "200".into(),
            })
            .inc();
        m.observe_storage("get", "pods", 0.001);
        let text = m.encode();
        assert!(
            text.contains(r#"apiserver_request_total{verb="LIST",group="",version="v1",resource="pods",subresource="",scope="namespace",component="apiserver",code="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"etcd_request_duration_seconds_bucket{le="0.005",operation="get",type="pods"} 1"#
            ),
            "{text}"
        );
    }
}
