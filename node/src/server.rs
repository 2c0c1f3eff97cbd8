//! The node agent's own HTTP endpoints (upstream's kubelet server, `pkg/kubelet/server`),
//! reached through the API server's `nodes/NAME/proxy/PATH`:
//!
//! - `/healthz`: `ok`;
//! - `/pods`: a `PodList` of the pods bound to this node;
//! - `/stats/summary`: the Summary API (`stats/v1alpha1`) of the node and its pods;
//! - `/metrics/resource`: the same usage as Prometheus text, with upstream's metric names.
//!
//! [`KubeletServer::serve`] takes and returns plain HTTP, so an in-process connection calls
//! it directly and an agent on another machine can put it behind its HTTPS listener.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http::{Method, Request, Response, StatusCode, header};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kybernetes_core::Clock;
use kybernetes_runtime::Runtime;
use serde_json::{Value, json};

use crate::resource_metrics::{ContainerUsage, ResourceAnalyzer, ResourceSample};

/// The HTTP endpoints of one node agent.
pub struct KubeletServer {
    node: String,
    client: kube::Client,
    resources: ResourceAnalyzer,
    started: DateTime<Utc>,
}

impl std::fmt::Debug for KubeletServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletServer")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
/// The Prometheus text format version upstream's kubelet serves.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

impl KubeletServer {
    /// The endpoints of node `node`'s agent: pods come from the API through `client`, usage
    /// from `runtime`.
    pub fn new(node: &str, client: kube::Client, runtime: Arc<dyn Runtime>, clock: Clock) -> Self {
        KubeletServer {
            node: node.to_string(),
            client,
            started: clock.now(),
            resources: ResourceAnalyzer::new(node, runtime, clock),
        }
    }

    /// The resource sampler behind `/stats/summary` and `/metrics/resource` (the metrics API
    /// reads it too; one sampler keeps one CPU-rate history).
    pub fn resources(&self) -> &ResourceAnalyzer {
        &self.resources
    }

    /// Serves one request; the URI is the path and query on the agent.
    pub async fn serve(&self, request: Request<Bytes>) -> Response<Bytes> {
        let path = request.uri().path();
        let known = matches!(
            path,
            "/healthz" | "/pods" | "/pods/" | "/stats/summary" | "/metrics/resource"
        );
        if !known {
            return respond(StatusCode::NOT_FOUND, TEXT, "404 page not found\n".into());
        }
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return respond(
                StatusCode::METHOD_NOT_ALLOWED,
                TEXT,
                "405: Method Not Allowed\n".into(),
            );
        }
        match path {
            "/healthz" => respond(StatusCode::OK, TEXT, "ok".into()),
            "/pods" | "/pods/" => self.pods().await,
            "/stats/summary" => match self.resources.sample().await {
                Ok(sample) => {
                    let summary = summary(&self.node, self.started, &sample);
                    respond(StatusCode::OK, JSON, summary.to_string())
                }
                Err(e) => internal_error(&e),
            },
            _ => match self.resources.sample().await {
                Ok(sample) => respond(StatusCode::OK, PROMETHEUS_TEXT, resource_metrics(&sample)),
                Err(e) => internal_error(&e),
            },
        }
    }

    async fn pods(&self) -> Response<Bytes> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let selector = format!("spec.nodeName={}", self.node);
        match pods.list(&ListParams::default().fields(&selector)).await {
            Ok(list) => {
                let list = json!({
                    "kind": "PodList",
                    "apiVersion": "v1",
                    "metadata": {},
                    "items": list.items,
                });
                respond(StatusCode::OK, JSON, list.to_string())
            }
            Err(e) => internal_error(&e),
        }
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

fn internal_error(e: &dyn std::error::Error) -> Response<Bytes> {
    tracing::warn!(error = %e, "node agent endpoint failed");
    respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        TEXT,
        format!("Internal Error: {e}\n"),
    )
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn usage_json(time: &str, cpu_nano_cores: u64, cpu_core_nanos: u64, memory: u64) -> (Value, Value) {
    (
        json!({ "time": time, "usageNanoCores": cpu_nano_cores, "usageCoreNanoSeconds": cpu_core_nanos }),
        json!({ "time": time, "workingSetBytes": memory, "usageBytes": memory }),
    )
}

/// The containers of a sample grouped by pod (they come sorted by pod).
fn by_pod(sample: &ResourceSample) -> Vec<&[ContainerUsage]> {
    sample
        .containers
        .chunk_by(|a, b| (&a.namespace, &a.pod, &a.pod_uid) == (&b.namespace, &b.pod, &b.pod_uid))
        .collect()
}

fn sums(containers: &[ContainerUsage]) -> (u64, u64, u64) {
    containers.iter().fold((0u64, 0u64, 0u64), |(r, t, m), c| {
        (
            r.saturating_add(c.cpu_nano_cores),
            t.saturating_add(c.cpu_usage_core_nanos),
            m.saturating_add(c.memory_bytes),
        )
    })
}

/// The Summary API document (`stats/v1alpha1` `Summary`): the node (the sum of its pods, as
/// no host figures are measured) and each pod with its containers.
fn summary(node: &str, started: DateTime<Utc>, sample: &ResourceSample) -> Value {
    let time = rfc3339(sample.timestamp);
    let pods: Vec<Value> = by_pod(sample)
        .into_iter()
        .map(|containers| {
            let first = &containers[0];
            let (rate, total, memory) = sums(containers);
            let (cpu, mem) = usage_json(&time, rate, total, memory);
            let start = containers.iter().map(|c| c.started_at).min().unwrap_or(sample.timestamp);
            let containers: Vec<Value> = containers
                .iter()
                .map(|c| {
                    let (cpu, mem) =
                        usage_json(&time, c.cpu_nano_cores, c.cpu_usage_core_nanos, c.memory_bytes);
                    json!({ "name": c.container, "startTime": rfc3339(c.started_at), "cpu": cpu, "memory": mem })
                })
                .collect();
            json!({
                "podRef": { "name": first.pod, "namespace": first.namespace, "uid": first.pod_uid },
                "startTime": rfc3339(start),
                "containers": containers,
                "cpu": cpu,
                "memory": mem,
            })
        })
        .collect();
    let (rate, total, memory) = sums(&sample.containers);
    let (cpu, mem) = usage_json(&time, rate, total, memory);
    json!({
        "node": {
            "nodeName": node,
            "systemContainers": [],
            "startTime": rfc3339(started),
            "cpu": cpu,
            "memory": mem,
        },
        "pods": pods,
    })
}

/// A Prometheus label value, escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn seconds(core_nanos: u64) -> f64 {
    core_nanos as f64 / 1e9
}

/// `/metrics/resource` in the Prometheus text format, with upstream's metric names.
fn resource_metrics(sample: &ResourceSample) -> String {
    let ms = sample.timestamp.timestamp_millis();
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
        out.push_str(&format!("# HELP {name} [STABLE] {help}\n"));
        out.push_str(&format!("# TYPE {name} {kind}\n"));
        for (labels, value) in rows {
            out.push_str(&format!("{name}{labels} {value} {ms}\n"));
        }
    };
    let container_labels = |c: &ContainerUsage| {
        format!(
            "{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}}",
            label(&c.container),
            label(&c.namespace),
            label(&c.pod)
        )
    };
    let pod_labels = |c: &ContainerUsage| {
        format!(
            "{{namespace=\"{}\",pod=\"{}\"}}",
            label(&c.namespace),
            label(&c.pod)
        )
    };
    let containers = &sample.containers;
    family(
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
        containers
            .iter()
            .map(|c| {
                (
                    container_labels(c),
                    seconds(c.cpu_usage_core_nanos).to_string(),
                )
            })
            .collect(),
    );
    family(
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set of the container in bytes",
        containers
            .iter()
            .map(|c| (container_labels(c), c.memory_bytes.to_string()))
            .collect(),
    );
    family(
        "container_start_time_seconds",
        "gauge",
        "Start time of the container since unix epoch in seconds",
        containers
            .iter()
            .map(|c| (container_labels(c), c.started_at.timestamp().to_string()))
            .collect(),
    );
    let (_, total, memory) = sums(containers);
    family(
        "node_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the node in core-seconds",
        vec![(String::new(), seconds(total).to_string())],
    );
    family(
        "node_memory_working_set_bytes",
        "gauge",
        "Current working set of the node in bytes",
        vec![(String::new(), memory.to_string())],
    );
    let pods = by_pod(sample);
    family(
        "pod_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
        pods.iter()
            .map(|p| (pod_labels(&p[0]), seconds(sums(p).1).to_string()))
            .collect(),
    );
    family(
        "pod_memory_working_set_bytes",
        "gauge",
        "Current working set of the pod in bytes",
        pods.iter()
            .map(|p| (pod_labels(&p[0]), sums(p).2.to_string()))
            .collect(),
    );
    out.push_str("# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise\n");
    out.push_str("# TYPE resource_scrape_error gauge\n");
    out.push_str("resource_scrape_error 0\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(pod: &str, container: &str, cpu: u64, mem: u64) -> ContainerUsage {
        ContainerUsage {
            namespace: "default".into(),
            pod: pod.into(),
            pod_uid: format!("uid-{pod}"),
            container: container.into(),
            cpu_nano_cores: cpu,
            memory_bytes: mem,
            cpu_usage_core_nanos: cpu * 10,
            started_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
        }
    }

    fn sample() -> ResourceSample {
        ResourceSample {
            timestamp: DateTime::from_timestamp(1_700_000_100, 0).unwrap_or_default(),
            window: std::time::Duration::from_secs(15),
            containers: vec![
                usage("a", "app", 100, 1000),
                usage("a", "sidecar", 50, 500),
                usage("b", "app", 10, 100),
            ],
        }
    }

    #[test]
    fn the_summary_sums_containers_into_pods_and_the_node() {
        let s = summary(
            "node-1",
            DateTime::from_timestamp(1_699_999_000, 0).unwrap_or_default(),
            &sample(),
        );
        assert_eq!(s["node"]["nodeName"], "node-1");
        assert_eq!(s["node"]["cpu"]["usageNanoCores"], 160);
        assert_eq!(s["node"]["memory"]["workingSetBytes"], 1600);
        assert_eq!(s["pods"].as_array().map(Vec::len), Some(2));
        assert_eq!(s["pods"][0]["podRef"]["name"], "a");
        assert_eq!(s["pods"][0]["cpu"]["usageNanoCores"], 150);
        assert_eq!(s["pods"][0]["containers"][1]["name"], "sidecar");
        assert_eq!(
            s["pods"][0]["containers"][1]["cpu"]["usageCoreNanoSeconds"],
            500
        );
    }

    #[test]
    fn resource_metrics_use_upstream_names() {
        let text = resource_metrics(&sample());
        assert!(text.contains(
            "container_memory_working_set_bytes{container=\"sidecar\",namespace=\"default\",pod=\"a\"} 500 1700000100000"
        ), "{text}");
        assert!(
            text.contains("pod_memory_working_set_bytes{namespace=\"default\",pod=\"a\"} 1500 "),
            "{text}"
        );
        assert!(
            text.contains("node_memory_working_set_bytes 1600 "),
            "{text}"
        );
        assert!(
            text.contains("# TYPE container_cpu_usage_seconds_total counter"),
            "{text}"
        );
        assert!(text.ends_with("resource_scrape_error 0\n"), "{text}");
    }
}
