//! Upstream's replica calculator (`pkg/controller/podautoscaler/replica_calculator.go`) for
//! resource metrics: how many replicas bring the pods' average usage to the target.
//!
//! The pods are grouped first ([`group_pods`]): pods being deleted or failed are ignored;
//! pending pods, and CPU samples of pods still starting, are *unready*; pods without a sample
//! are *missing*. The usage ratio over the ready pods decides the direction. When it says
//! "scale up", unready pods count as using nothing; missing pods count as using nothing on a
//! scale-up and their full request (or the target, if higher) on a scale-down. If those
//! assumptions flip the direction or bring the ratio within the tolerance, the count stays.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use kybernetes_core::quantity::parse_milli;

/// How far the usage ratio may be from 1.0 before the count changes (upstream's
/// `--horizontal-pod-autoscaler-tolerance`).
pub const TOLERANCE: f64 = 0.1;
/// How long after its start a pod's CPU samples may be those of its start-up (upstream's
/// `--horizontal-pod-autoscaler-cpu-initialization-period`).
pub const CPU_INITIALIZATION_PERIOD: Duration = Duration::from_secs(300);
/// How long after its start a pod that was never ready is taken as still starting (upstream's
/// `--horizontal-pod-autoscaler-initial-readiness-delay`).
pub const INITIAL_READINESS_DELAY: Duration = Duration::from_secs(30);

/// One pod's sample: the usage of the resource, in thousandths of its unit.
#[derive(Clone, Debug, PartialEq)]
pub struct PodMetric {
    /// Usage, in thousandths (millicores, millibytes).
    pub value: i64,
    /// When the sample was taken.
    pub timestamp: DateTime<Utc>,
    /// The window the sample averages over.
    pub window: Duration,
}

/// Samples by pod name.
pub type PodMetrics = BTreeMap<String, PodMetric>;

/// What the autoscaler aims at for one resource.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// A percentage of the pods' requests (`averageUtilization`).
    Utilization(i32),
    /// An average usage per pod, in thousandths (`averageValue`).
    AverageValue(i64),
}

/// The calculator's answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Proposal {
    /// The replica count proposed.
    pub replicas: i32,
    /// The current utilization in percent of the requests (utilization targets only).
    pub utilization: Option<i32>,
    /// The current average usage per pod, in thousandths.
    pub average: i64,
}

/// Why no proposal could be made; the messages are upstream's.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CalculatorError {
    /// The selector selects no pod.
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    /// Every pod is unready, ignored or without a sample.
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoMetrics,
    /// A container has no request for the resource of a utilization target.
    #[error("missing request for {resource} in container {container} of Pod {pod}")]
    MissingRequest {
        /// The resource.
        resource: String,
        /// The container.
        container: String,
        /// The pod.
        pod: String,
    },
    /// No sample belongs to a pod with requests.
    #[error("no metrics returned matched known pods")]
    NoMatchingMetrics,
}

/// The pods by how their samples count (upstream's `groupPods`).
#[derive(Debug, Default, PartialEq)]
pub struct PodGroups {
    /// Pods whose sample counts as it is.
    pub ready: usize,
    /// Pending pods, and pods whose CPU sample is from their start-up.
    pub unready: BTreeSet<String>,
    /// Pods without a sample.
    pub missing: BTreeSet<String>,
    /// Pods being deleted or failed.
    pub ignored: BTreeSet<String>,
}

fn secs(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Upstream's `groupPods`; `now` is the cluster clock's time.
pub fn group_pods(
    pods: &[Pod],
    metrics: &PodMetrics,
    resource: &str,
    now: DateTime<Utc>,
) -> PodGroups {
    let mut g = PodGroups::default();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref());
        if pod.metadata.deletion_timestamp.is_some() || phase == Some("Failed") {
            g.ignored.insert(name);
            continue;
        }
        if phase == Some("Pending") {
            g.unready.insert(name);
            continue;
        }
        let Some(metric) = metrics.get(&name) else {
            g.missing.insert(name);
            continue;
        };
        if resource == "cpu" && cpu_sample_is_unready(pod, metric, now) {
            g.unready.insert(name);
            continue;
        }
        g.ready += 1;
    }
    g
}

/// Whether a pod's CPU sample is from its start-up: within the initialization period, the pod
/// is unready or became ready less than one sample window before the sample; after it, the pod
/// is unready and has never been ready.
fn cpu_sample_is_unready(pod: &Pod, metric: &PodMetric, now: DateTime<Utc>) -> bool {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let start = status
        .and_then(|s| s.start_time.as_ref())
        .map(crate::api_values::from_time);
    let (Some(ready), Some(start)) = (ready, start) else {
        return true;
    };
    let transition = ready
        .last_transition_time
        .as_ref()
        .map(crate::api_values::from_time)
        .unwrap_or(start);
    let not_ready = ready.status == "False";
    if start + secs(CPU_INITIALIZATION_PERIOD) > now {
        not_ready || metric.timestamp < transition + secs(metric.window)
    } else {
        not_ready && start + secs(INITIAL_READINESS_DELAY) > transition
    }
}

/// The pods' requests of `resource` in thousandths, summed over their containers (or the one
/// named) and their sidecars (restartable init containers), as upstream's
/// `calculatePodRequests`.
pub fn pod_requests(
    pods: &[Pod],
    container: Option<&str>,
    resource: &str,
) -> Result<BTreeMap<String, i64>, CalculatorError> {
    let mut out = BTreeMap::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let sidecars = spec
            .and_then(|s| s.init_containers.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let containers = spec
            .map(|s| s.containers.iter())
            .into_iter()
            .flatten()
            .chain(sidecars);
        let mut sum = 0i64;
        for c in containers.filter(|c| container.is_none_or(|n| n == c.name)) {
            let request = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
                .and_then(|q| parse_milli(&q.0));
            match request {
                Some(r) => sum = sum.saturating_add(i64::try_from(r).unwrap_or(i64::MAX)),
                None => {
                    return Err(CalculatorError::MissingRequest {
                        resource: resource.into(),
                        container: c.name.clone(),
                        pod: name,
                    });
                }
            }
        }
        out.insert(name, sum);
    }
    Ok(out)
}

/// Upstream's `GetResourceUtilizationRatio`: (ratio to target, utilization %, average usage).
fn utilization_ratio(
    metrics: &PodMetrics,
    requests: &BTreeMap<String, i64>,
    target: i32,
) -> Result<(f64, i32, i64), CalculatorError> {
    let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
    for (pod, m) in metrics {
        // A sample of a pod without requests is extraneous.
        let Some(r) = requests.get(pod) else { continue };
        used += m.value;
        requested += r;
        n += 1;
    }
    if requested == 0 {
        return Err(CalculatorError::NoMatchingMetrics);
    }
    let utilization = i32::try_from(used * 100 / requested).unwrap_or(i32::MAX);
    Ok((
        f64::from(utilization) / f64::from(target),
        utilization,
        used / n,
    ))
}

/// Upstream's `GetMetricUsageRatio`: (ratio to target, average usage).
fn usage_ratio(metrics: &PodMetrics, target: i64) -> (f64, i64) {
    let total: i64 = metrics.values().map(|m| m.value).sum();
    let average = total / i64::try_from(metrics.len().max(1)).unwrap_or(i64::MAX);
    (average as f64 / target as f64, average)
}

fn within_tolerance(ratio: f64) -> bool {
    (1.0 - ratio).abs() <= TOLERANCE
}

fn ceil_times(ratio: f64, n: usize) -> i32 {
    let v = (ratio * n as f64).ceil();
    if v >= f64::from(i32::MAX) {
        i32::MAX
    } else {
        v as i32
    }
}

/// The replica count for one resource metric (upstream's `GetResourceReplicas` for a
/// utilization target and `GetRawResourceReplicas` for an average value), from the pods the
/// scale selects and their samples. `container` narrows requests to one container
/// (`ContainerResource` metrics; the samples are then that container's).
pub fn resource_replicas(
    current: i32,
    target: Target,
    resource: &str,
    container: Option<&str>,
    pods: &[Pod],
    mut metrics: PodMetrics,
    now: DateTime<Utc>,
) -> Result<Proposal, CalculatorError> {
    if pods.is_empty() {
        return Err(CalculatorError::NoPods);
    }
    let groups = group_pods(pods, &metrics, resource, now);
    for name in groups.ignored.iter().chain(&groups.unready) {
        metrics.remove(name);
    }
    if metrics.is_empty() {
        return Err(CalculatorError::NoMetrics);
    }
    let requests = match target {
        Target::Utilization(_) => pod_requests(pods, container, resource)?,
        Target::AverageValue(_) => BTreeMap::new(),
    };
    let ratio_of = |m: &PodMetrics| -> Result<(f64, Option<i32>, i64), CalculatorError> {
        match target {
            Target::Utilization(t) => {
                utilization_ratio(m, &requests, t).map(|(r, u, a)| (r, Some(u), a))
            }
            Target::AverageValue(t) => {
                let (r, a) = usage_ratio(m, t);
                Ok((r, None, a))
            }
        }
    };
    let (ratio, utilization, average) = ratio_of(&metrics)?;
    let proposal = |replicas| Proposal {
        replicas,
        utilization,
        average,
    };
    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if within_tolerance(ratio) {
            return Ok(proposal(current));
        }
        return Ok(proposal(ceil_times(ratio, groups.ready)));
    }
    if ratio < 1.0 {
        // Scaling down: a pod without a sample may be as busy as its request (or the target).
        for pod in &groups.missing {
            let value = match target {
                Target::Utilization(t) => {
                    requests.get(pod).copied().unwrap_or(0) * i64::from(t.max(100)) / 100
                }
                Target::AverageValue(t) => t,
            };
            metrics.insert(
                pod.clone(),
                PodMetric {
                    value,
                    timestamp: now,
                    window: Duration::ZERO,
                },
            );
        }
    } else if ratio > 1.0 {
        for pod in &groups.missing {
            metrics.insert(
                pod.clone(),
                PodMetric {
                    value: 0,
                    timestamp: now,
                    window: Duration::ZERO,
                },
            );
        }
    }
    if scale_up_with_unready {
        for pod in &groups.unready {
            metrics.insert(
                pod.clone(),
                PodMetric {
                    value: 0,
                    timestamp: now,
                    window: Duration::ZERO,
                },
            );
        }
    }
    let (new_ratio, _, _) = ratio_of(&metrics)?;
    let flipped = (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0);
    if within_tolerance(new_ratio) || flipped {
        return Ok(proposal(current));
    }
    let replicas = ceil_times(new_ratio, metrics.len());
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(replicas))
}

#[cfg(test)]
mod tests {
    //! Cases from upstream's `replica_calculator_test.go`, with its figures.
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, PodCondition, PodSpec, PodStatus, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use crate::api_values::to_time;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .map(|t| t.to_utc())
            .unwrap_or_default()
    }

    /// A running pod requesting `request_milli` CPU, started and ready long ago.
    fn pod(i: usize, request_milli: i64) -> Pod {
        let long_ago = to_time(now() - chrono::Duration::minutes(10));
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("p{i}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "main".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some(
                            [("cpu".to_string(), Quantity(format!("{request_milli}m")))].into(),
                        ),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                start_time: Some(long_ago.clone()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(long_ago),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn pods(requests: &[i64]) -> Vec<Pod> {
        requests
            .iter()
            .enumerate()
            .map(|(i, r)| pod(i, *r))
            .collect()
    }

    fn samples(values: &[(usize, i64)]) -> PodMetrics {
        values
            .iter()
            .map(|(i, v)| {
                let m = PodMetric {
                    value: *v,
                    timestamp: now(),
                    window: Duration::from_secs(30),
                };
                (format!("p{i}"), m)
            })
            .collect()
    }

    fn cpu(
        current: i32,
        target: i32,
        pods: &[Pod],
        metrics: PodMetrics,
    ) -> Result<Proposal, CalculatorError> {
        resource_replicas(
            current,
            Target::Utilization(target),
            "cpu",
            None,
            pods,
            metrics,
            now(),
        )
    }

    #[test]
    fn scale_up_to_the_ratio_of_usage_to_target() {
        // TestReplicaCalcScaleUp: 3 pods at 300/500/700 of 1000m, target 30% → 5.
        let p = pods(&[1000, 1000, 1000]);
        let r = cpu(3, 30, &p, samples(&[(0, 300), (1, 500), (2, 700)])).expect("proposal");
        assert_eq!(
            r,
            Proposal {
                replicas: 5,
                utilization: Some(50),
                average: 500
            }
        );
    }

    #[test]
    fn scale_down_and_tolerance() {
        // TestReplicaCalcScaleDown: 5 pods at 100..500 of 1000m (30% avg), target 50% → 3.
        let p = pods(&[1000; 5]);
        let m = samples(&[(0, 100), (1, 300), (2, 500), (3, 250), (4, 250)]);
        assert_eq!(
            cpu(5, 50, &p, m).map(|r| (r.replicas, r.utilization)),
            Ok((3, Some(28)))
        );
        // TestReplicaCalcTolerance: 1.08 of the target stays.
        let p = pods(&[1010, 1010, 1010]);
        let m = samples(&[(0, 1010), (1, 1090), (2, 1200)]);
        assert_eq!(cpu(3, 100, &p, m).map(|r| r.replicas), Ok(3));
    }

    #[test]
    fn unready_pods_count_as_idle_on_a_scale_up() {
        // TestReplicaCalcScaleUpUnreadyLessScale: one pod not yet ready → 4, not 5.
        let mut p = pods(&[1000, 1000, 1000]);
        if let Some(c) = p[0].status.as_mut().and_then(|s| s.conditions.as_mut()) {
            c[0].status = "False".into();
            c[0].last_transition_time = Some(to_time(now() - chrono::Duration::seconds(10)));
        }
        if let Some(s) = p[0].status.as_mut() {
            s.start_time = Some(to_time(now() - chrono::Duration::seconds(20)));
        }
        let r = cpu(3, 30, &p, samples(&[(0, 300), (1, 500), (2, 700)])).expect("proposal");
        assert_eq!((r.replicas, r.utilization), (4, Some(60)));
    }

    #[test]
    fn a_pod_that_became_ready_within_one_window_is_still_starting() {
        let mut p = pods(&[1000, 1000]);
        let just_ready = to_time(now() - chrono::Duration::seconds(5));
        if let Some(s) = p[1].status.as_mut() {
            s.start_time = Some(just_ready.clone());
            if let Some(c) = s.conditions.as_mut() {
                c[0].last_transition_time = Some(just_ready);
            }
        }
        let g = group_pods(&p, &samples(&[(0, 500), (1, 900)]), "cpu", now());
        assert_eq!(g.ready, 1);
        assert!(g.unready.contains("p1"));
        // Memory samples are never from "start-up".
        assert_eq!(
            group_pods(&p, &samples(&[(0, 1), (1, 1)]), "memory", now()).ready,
            2
        );
    }

    #[test]
    fn missing_metrics_are_idle_on_a_scale_up_and_busy_on_a_scale_down() {
        // TestReplicaCalcMissingMetricsScaleUp... : 4 pods, one without a sample.
        let p = pods(&[1000; 4]);
        let r = cpu(4, 50, &p, samples(&[(0, 100), (1, 100), (2, 100)])).expect("proposal");
        // 10% of the target without the missing pod; with it at 100%: 32%/50% → ceil(2.56) = 3.
        assert_eq!(r.replicas, 3);
        let up = cpu(4, 30, &p, samples(&[(0, 400), (1, 500), (2, 700)])).expect("proposal");
        // 53% used on the 3 known; the missing pod at 0 gives 40%/30% → ceil(5.33) = 6.
        assert_eq!(up.replicas, 6);
        // TestReplicaCalcMissingMetricsNoChangeEq: the assumption lands within tolerance.
        let same = cpu(2, 100, &pods(&[1000, 1000]), samples(&[(0, 1000)])).expect("proposal");
        assert_eq!(same.replicas, 2);
    }

    #[test]
    fn deleted_and_failed_pods_are_ignored_and_empty_input_fails() {
        let mut p = pods(&[1000, 1000, 1000]);
        if let Some(s) = p[2].status.as_mut() {
            s.phase = Some("Failed".into());
        }
        p[1].metadata.deletion_timestamp = Some(to_time(now()));
        let r = cpu(3, 50, &p, samples(&[(0, 1000), (1, 0), (2, 0)])).expect("proposal");
        assert_eq!((r.replicas, r.utilization), (2, Some(100)));
        assert_eq!(cpu(1, 50, &[], samples(&[])), Err(CalculatorError::NoPods));
        assert_eq!(
            cpu(3, 50, &pods(&[1000]), samples(&[])),
            Err(CalculatorError::NoMetrics)
        );
    }

    #[test]
    fn utilization_needs_every_container_to_request_the_resource() {
        let mut p = pods(&[1000]);
        if let Some(spec) = p[0].spec.as_mut() {
            spec.containers.push(Container {
                name: "sidecar".into(),
                ..Default::default()
            });
        }
        assert_eq!(
            cpu(1, 50, &p, samples(&[(0, 100)])).map(|r| r.replicas),
            Err(CalculatorError::MissingRequest {
                resource: "cpu".into(),
                container: "sidecar".into(),
                pod: "p0".into()
            })
        );
        // ... but not for an average-value target.
        let r = resource_replicas(
            1,
            Target::AverageValue(50),
            "cpu",
            None,
            &p,
            samples(&[(0, 100)]),
            now(),
        );
        assert_eq!(r.map(|r| (r.replicas, r.average)), Ok((2, 100)));
    }
}
