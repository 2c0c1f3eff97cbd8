//! The replica count each metric of an autoscaler asks for (upstream's
//! `computeReplicasForMetrics`), from the pods its target's scale selects and their
//! `metrics.k8s.io` PodMetrics, read through the API as any client would.
//!
//! `Resource` and `ContainerResource` metrics are computed. `Pods`, `Object` and `External`
//! metrics need the custom and external metrics APIs, which are not served, so each fails
//! with upstream's reason (`FailedGetPodsMetric`, `FailedGetObjectMetric`,
//! `FailedGetExternalMetric`); the others still scale, as upstream's do when one metric fails.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::autoscaling::v2::{
    ContainerResourceMetricStatus, MetricSpec, MetricStatus, MetricTarget, MetricValueStatus,
    ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kybernetes_core::quantity::parse_milli;

use super::replica_calculator::{PodMetric, PodMetrics, Target, resource_replicas};

/// A metric's successful proposal.
#[derive(Clone, Debug)]
pub struct MetricProposal {
    /// The replica count it asks for.
    pub replicas: i32,
    /// How events name it: `cpu resource utilization (percentage of request)`.
    pub name: String,
    /// Its entry in `status.currentMetrics`.
    pub status: MetricStatus,
}

/// Why a metric gave no proposal: the `ScalingActive` reason and the error.
#[derive(Clone, Debug)]
pub struct MetricFailure {
    /// Upstream's reason (`FailedGetResourceMetric`, ...).
    pub reason: &'static str,
    /// The error, as upstream words it.
    pub error: String,
}

/// The pods a scale selects and their samples, read once per sync.
pub struct Observed {
    /// The selected pods.
    pub pods: Vec<Pod>,
    /// The PodMetrics of the selected pods, or why they could not be read.
    pub metrics: Result<Vec<DynamicObject>, String>,
    /// The cluster clock's time of the sync.
    pub now: DateTime<Utc>,
}

fn pod_metrics_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics"),
        "pods",
    )
}

/// Reads the pods `selector` selects in `namespace`, and their PodMetrics.
pub async fn observe(
    client: &Client,
    namespace: &str,
    selector: &str,
    now: DateTime<Utc>,
) -> Result<Observed, kube::Error> {
    let lp = ListParams::default().labels(selector);
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&lp)
        .await?
        .items;
    let metrics =
        Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &pod_metrics_resource())
            .list(&lp)
            .await
            .map(|l| l.items)
            .map_err(|e| format!("unable to fetch metrics from resource metrics API: {e}"));
    Ok(Observed { pods, metrics, now })
}

/// A Go duration as the metrics API writes `window` (`15s`, `1m0s`, `500ms`).
fn parse_window(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (n, tail) = rest.split_at(digits);
        let n: f64 = n.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        total += Duration::from_secs_f64(n * scale);
        rest = tail;
    }
    Some(total)
}

/// The samples of `resource` per pod (upstream's metrics client `GetResourceMetric`): the sum
/// over the pod's containers, or the one container named. A pod missing the resource in any
/// container has no sample.
fn samples(
    items: &[DynamicObject],
    resource: &str,
    container: Option<&str>,
) -> Result<PodMetrics, String> {
    if items.is_empty() {
        return Err("no metrics returned from resource metrics API".into());
    }
    let mut out = PodMetrics::new();
    for m in items {
        let name = m.metadata.name.clone().unwrap_or_default();
        let timestamp = m
            .data
            .get("timestamp")
            .and_then(|t| t.as_str())
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
        let window = m
            .data
            .get("window")
            .and_then(|w| w.as_str())
            .and_then(parse_window)
            .unwrap_or(Duration::ZERO);
        let containers = m
            .data
            .get("containers")
            .and_then(|c| c.as_array())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let usage = |c: &serde_json::Value| {
            c.pointer(&format!("/usage/{resource}"))
                .and_then(|q| q.as_str())
                .and_then(parse_milli)
                .and_then(|v| i64::try_from(v).ok())
        };
        let value = match container {
            Some(wanted) => {
                let Some(c) = containers
                    .iter()
                    .find(|c| c.get("name").and_then(|n| n.as_str()) == Some(wanted))
                else {
                    let ns = m.metadata.namespace.clone().unwrap_or_default();
                    return Err(format!(
                        "container {wanted} not present in metrics for pod {ns}/{name}"
                    ));
                };
                usage(c)
            }
            None if containers.is_empty() => None,
            None => containers.iter().map(usage).sum::<Option<i64>>(),
        };
        if let (Some(value), Some(timestamp)) = (value, timestamp) {
            out.insert(
                name,
                PodMetric {
                    value,
                    timestamp: timestamp.to_utc(),
                    window,
                },
            );
        }
    }
    Ok(out)
}

fn milli_quantity(milli: i64) -> Quantity {
    if milli % 1000 == 0 {
        Quantity((milli / 1000).to_string())
    } else {
        Quantity(format!("{milli}m"))
    }
}

/// The target of a resource metric, or upstream's error for a target of neither kind.
fn target_of(t: &MetricTarget) -> Result<Target, String> {
    if let Some(v) = &t.average_value {
        let milli = parse_milli(&v.0)
            .and_then(|v| i64::try_from(v).ok())
            .ok_or_else(|| format!("invalid averageValue {:?}", v.0))?;
        return Ok(Target::AverageValue(milli));
    }
    match t.average_utilization {
        Some(u) => Ok(Target::Utilization(u)),
        None => Err("invalid resource metric source: neither an average utilization target nor an average value (usage) target was set".into()),
    }
}

/// One `Resource` or `ContainerResource` metric (upstream's
/// `computeStatusForResourceMetricGeneric`).
fn resource_metric(
    current: i32,
    resource: &str,
    container: Option<&str>,
    target: &MetricTarget,
    observed: &Observed,
) -> Result<(i32, MetricValueStatus, String), String> {
    let t = target_of(target)?;
    let kind = match t {
        Target::Utilization(_) => "utilization",
        Target::AverageValue(_) => "usage",
    };
    let items = observed.metrics.as_ref().map_err(Clone::clone);
    let metrics = items
        .and_then(|items| samples(items, resource, container))
        .map_err(|e| format!("failed to get {resource} {kind}: unable to get metrics for resource {resource}: {e}"))?;
    let p = resource_replicas(
        current,
        t,
        resource,
        container,
        &observed.pods,
        metrics,
        observed.now,
    )
    .map_err(|e| format!("failed to get {resource} {kind}: {e}"))?;
    let status = MetricValueStatus {
        average_utilization: p.utilization,
        average_value: Some(milli_quantity(p.average)),
        value: None,
    };
    let name = match (t, container) {
        (Target::AverageValue(_), _) => format!("{resource} resource"),
        (Target::Utilization(_), None) => {
            format!("{resource} resource utilization (percentage of request)")
        }
        (Target::Utilization(_), Some(_)) => {
            format!("{resource} container resource utilization (percentage of request)")
        }
    };
    Ok((p.replicas, status, name))
}

/// The proposal of one metric (upstream's `computeReplicasForMetric`).
pub fn compute(
    spec: &MetricSpec,
    current: i32,
    observed: &Observed,
) -> Result<MetricProposal, MetricFailure> {
    let fail = |reason, error: String| MetricFailure { reason, error };
    let unserved = |api: &str| format!("the {api} API is not served by this cluster");
    match spec.type_.as_str() {
        "Resource" => {
            let Some(r) = &spec.resource else {
                return Err(fail(
                    "FailedGetResourceMetric",
                    "failed to get resource metric value: the metric has no resource source".into(),
                ));
            };
            let (replicas, current_status, name) =
                resource_metric(current, &r.name, None, &r.target, observed).map_err(|e| {
                    fail(
                        "FailedGetResourceMetric",
                        format!("failed to get {} resource metric value: {e}", r.name),
                    )
                })?;
            let status = MetricStatus {
                type_: "Resource".into(),
                resource: Some(ResourceMetricStatus {
                    name: r.name.clone(),
                    current: current_status,
                }),
                ..Default::default()
            };
            Ok(MetricProposal {
                replicas,
                name,
                status,
            })
        }
        "ContainerResource" => {
            let Some(r) = &spec.container_resource else {
                return Err(fail("FailedGetContainerResourceMetric", "failed to get container metric value: the metric has no container resource source".into()));
            };
            let (replicas, current_status, name) =
                resource_metric(current, &r.name, Some(&r.container), &r.target, observed)
                    .map_err(|e| {
                        fail(
                            "FailedGetContainerResourceMetric",
                            format!("failed to get {} container metric value: {e}", r.container),
                        )
                    })?;
            let status = MetricStatus {
                type_: "ContainerResource".into(),
                container_resource: Some(ContainerResourceMetricStatus {
                    name: r.name.clone(),
                    container: r.container.clone(),
                    current: current_status,
                }),
                ..Default::default()
            };
            Ok(MetricProposal {
                replicas,
                name,
                status,
            })
        }
        "Pods" => Err(fail(
            "FailedGetPodsMetric",
            format!(
                "failed to get pods metric value: {}",
                unserved("custom metrics (custom.metrics.k8s.io)")
            ),
        )),
        "Object" => Err(fail(
            "FailedGetObjectMetric",
            format!(
                "failed to get object metric value: {}",
                unserved("custom metrics (custom.metrics.k8s.io)")
            ),
        )),
        "External" => Err(fail(
            "FailedGetExternalMetric",
            format!(
                "failed to get external metric value: {}",
                unserved("external metrics (external.metrics.k8s.io)")
            ),
        )),
        other => Err(fail(
            "InvalidMetricSourceType",
            format!("unknown metric source type {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn windows_parse_as_go_durations() {
        assert_eq!(parse_window("15s"), Some(Duration::from_secs(15)));
        assert_eq!(parse_window("1m0s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_window("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_window("soon"), None);
    }

    fn pod_metrics(name: &str, containers: serde_json::Value) -> DynamicObject {
        let mut o = DynamicObject::new(name, &pod_metrics_resource()).within("default");
        o.data =
            json!({"timestamp": "2026-01-01T00:00:00Z", "window": "15s", "containers": containers});
        o
    }

    #[test]
    fn samples_sum_containers_or_pick_one() {
        let items = vec![
            pod_metrics(
                "a",
                json!([{"name": "main", "usage": {"cpu": "200m", "memory": "1Mi"}}, {"name": "side", "usage": {"cpu": "50m", "memory": "1Mi"}}]),
            ),
            pod_metrics(
                "b",
                json!([{"name": "main", "usage": {"memory": "1Mi"}}, {"name": "side", "usage": {"cpu": "1"}}]),
            ),
        ];
        let all = samples(&items, "cpu", None).expect("samples");
        assert_eq!(all.get("a").map(|m| m.value), Some(250));
        assert!(
            !all.contains_key("b"),
            "a container without the resource leaves the pod without a sample"
        );
        let side = samples(&items, "cpu", Some("side")).expect("samples");
        assert_eq!(side.get("b").map(|m| m.value), Some(1000));
        assert!(samples(&items, "cpu", Some("other")).is_err());
        assert!(samples(&[], "cpu", None).is_err());
    }
}
