//! The resource metrics API, `metrics.k8s.io/v1beta1` (upstream's metrics-server): PodMetrics
//! and NodeMetrics, computed on each read from what the node agents report through
//! [`KubeletConnection::resource_metrics`](crate::kubelet::KubeletConnection::resource_metrics).
//!
//! As metrics-server does, a PodMetrics exists for each selected pod whose node reported
//! running containers for it, and carries the pod's labels, so label selectors select pods;
//! a NodeMetrics exists for each selected node whose agent answered. A node agent that cannot
//! be reached leaves its pods and itself out of lists (and logged), and a get of one of them
//! is 404, as upstream answers for a pod without metrics. Each read asks only the nodes it
//! needs, in parallel.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures::future::join_all;
use kybernetes_core::clock::{format_duration, format_time};
use kybernetes_core::quantity::{format_bytes, format_nanocores};
use kybernetes_core::{ApiError, ResourceInfo};
use serde_json::{Value, json};

use crate::Inner;
use crate::kubelet::{NodeResourceMetrics, ResourceUsage};
use crate::object::{self, meta_str};
use crate::registry::RequestScope;
use crate::rest::computed::ComputedResource;
use crate::rest::read::Filter;

/// `metrics.k8s.io` pods: one PodMetrics per pod with metrics.
pub(crate) struct PodMetricsResource;

/// `metrics.k8s.io` nodes: one NodeMetrics per node whose agent answers.
pub(crate) struct NodeMetricsResource;

const GROUP: &str = "metrics.k8s.io";
const API_VERSION: &str = "metrics.k8s.io/v1beta1";

#[async_trait::async_trait]
impl ComputedResource for PodMetricsResource {
    async fn get(&self, inner: &Arc<Inner>, scope: &RequestScope) -> Result<Value, ApiError> {
        let ns = scope.ns().unwrap_or("default");
        let name = scope.name();
        let not_found = || ApiError::not_found(GROUP, "podmetrics", &format!("{ns}/{name}"));
        let pods = builtin(inner, "", "pods")?;
        let cacher = inner.cacher(&pods).await?;
        let pod = cacher
            .get(&pods.key(Some(ns), name))
            .ok_or_else(not_found)?;
        let pod = pod.value();
        let pod = &*pod;
        let node = node_name(pod).ok_or_else(not_found)?;
        let reports = scrape(inner, [node.to_string()]).await;
        let mut item = reports
            .get(node)
            .and_then(|report| pod_metrics(pod, report, &inner.clock.now_rfc3339()))
            .ok_or_else(not_found)?;
        item["kind"] = json!("PodMetrics");
        item["apiVersion"] = json!(API_VERSION);
        Ok(item)
    }

    async fn list(
        &self,
        inner: &Arc<Inner>,
        scope: &RequestScope,
        filter: &Filter,
    ) -> Result<Vec<Value>, ApiError> {
        let pods = builtin(inner, "", "pods")?;
        let cacher = inner.cacher(&pods).await?;
        let snapshot = cacher.snapshot(&pods.namespace_prefix(scope.ns()), None);
        let selected: Vec<Arc<Value>> = snapshot
            .objects
            .iter()
            .map(|o| o.value())
            .filter(|p| node_name(p).is_some() && filter.matches(p))
            .collect();
        let nodes: BTreeSet<String> = selected
            .iter()
            .filter_map(|p| node_name(p).map(String::from))
            .collect();
        let reports = scrape(inner, nodes).await;
        let now = inner.clock.now_rfc3339();
        Ok(selected
            .into_iter()
            .filter_map(|p| {
                let report = reports.get(node_name(&p)?)?;
                pod_metrics(&p, report, &now)
            })
            .collect())
    }
}

#[async_trait::async_trait]
impl ComputedResource for NodeMetricsResource {
    async fn get(&self, inner: &Arc<Inner>, scope: &RequestScope) -> Result<Value, ApiError> {
        let name = scope.name();
        let not_found = || ApiError::not_found(GROUP, "nodemetrics", name);
        let nodes = builtin(inner, "", "nodes")?;
        let cacher = inner.cacher(&nodes).await?;
        let node = cacher.get(&nodes.key(None, name)).ok_or_else(not_found)?;
        let reports = scrape(inner, [name.to_string()]).await;
        let report = reports.get(name).ok_or_else(not_found)?;
        let mut item = node_metrics(&node.value(), report, &inner.clock.now_rfc3339());
        item["kind"] = json!("NodeMetrics");
        item["apiVersion"] = json!(API_VERSION);
        Ok(item)
    }

    async fn list(
        &self,
        inner: &Arc<Inner>,
        _scope: &RequestScope,
        filter: &Filter,
    ) -> Result<Vec<Value>, ApiError> {
        let nodes = builtin(inner, "", "nodes")?;
        let cacher = inner.cacher(&nodes).await?;
        let snapshot = cacher.snapshot(&nodes.key_prefix(), None);
        let selected: Vec<Arc<Value>> = snapshot
            .objects
            .iter()
            .map(|o| o.value())
            .filter(|n| filter.matches(n))
            .collect();
        let names: Vec<String> = selected
            .iter()
            .filter_map(|n| meta_str(n, "name").map(String::from))
            .collect();
        let reports = scrape(inner, names).await;
        let now = inner.clock.now_rfc3339();
        Ok(selected
            .into_iter()
            .filter_map(|n| {
                let report = reports.get(meta_str(&n, "name")?)?;
                Some(node_metrics(&n, report, &now))
            })
            .collect())
    }
}

fn builtin(inner: &Inner, group: &str, plural: &str) -> Result<Arc<ResourceInfo>, ApiError> {
    inner
        .registry
        .lookup(group, "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))
}

fn node_name(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
}

/// Asks each node's agent for its metrics, in parallel. Nodes without a reachable agent are
/// left out (and logged), as metrics-server leaves out nodes it failed to scrape.
async fn scrape(
    inner: &Inner,
    nodes: impl IntoIterator<Item = String>,
) -> HashMap<String, NodeResourceMetrics> {
    let calls = nodes.into_iter().map(|node| async move {
        let connection = match inner.kubelets.connection(&node) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(%node, error = %e.message, "no resource metrics from node");
                return None;
            }
        };
        match connection.resource_metrics().await {
            Ok(m) => Some((node, m)),
            Err(e) => {
                tracing::warn!(%node, error = %e.message, "failed to scrape node resource metrics");
                None
            }
        }
    });
    join_all(calls).await.into_iter().flatten().collect()
}

fn usage(u: &ResourceUsage) -> Value {
    json!({ "cpu": format_nanocores(u.cpu_nanocores), "memory": format_bytes(u.memory_bytes) })
}

/// The metadata of a metrics object: the name, namespace and labels of what it measures, and
/// a creationTimestamp of now (metrics objects are made on each read).
fn metrics_meta(source: &Value, now: &str) -> Value {
    let mut meta = json!({ "creationTimestamp": now });
    for f in ["name", "namespace"] {
        if let Some(v) = meta_str(source, f) {
            meta[f] = json!(v);
        }
    }
    let labels: BTreeMap<String, String> = object::labels(source);
    if !labels.is_empty() {
        meta["labels"] = json!(labels);
    }
    meta
}

/// The PodMetrics of `pod` from its node's report, if the report has running containers of it.
fn pod_metrics(pod: &Value, report: &NodeResourceMetrics, now: &str) -> Option<Value> {
    let (ns, name) = (meta_str(pod, "namespace")?, meta_str(pod, "name")?);
    let m = report
        .pods
        .iter()
        .find(|m| m.namespace == ns && m.name == name && !m.containers.is_empty())?;
    let containers: Vec<Value> = m
        .containers
        .iter()
        .map(|c| json!({ "name": c.name, "usage": usage(&c.usage) }))
        .collect();
    Some(json!({
        "metadata": metrics_meta(pod, now),
        "timestamp": format_time(report.timestamp),
        "window": format_duration(report.window),
        "containers": containers,
    }))
}

fn node_metrics(node: &Value, report: &NodeResourceMetrics, now: &str) -> Value {
    json!({
        "metadata": metrics_meta(node, now),
        "timestamp": format_time(report.timestamp),
        "window": format_duration(report.window),
        "usage": usage(&report.node),
    })
}
