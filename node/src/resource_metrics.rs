//! Resource metrics of a node (upstream's kubelet `/metrics/resource`, fed by its summary
//! provider): the CPU and memory each running container of the node's pods uses now, from
//! [`Runtime::container_stats`](kybernetes_runtime::Runtime::container_stats). The API
//! server's `metrics.k8s.io` and the HorizontalPodAutoscaler read them.
//!
//! The CPU rate is the runtime's own (CRI's `usage_nano_cores`) when it reports one;
//! otherwise it is derived from the CPU time of the previous sample of the same container (or
//! since its start, for the first sample), as cAdvisor does between housekeeping passes.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kybernetes_core::Clock;
use kybernetes_runtime::{
    ContainerFilter, ContainerState, ContainerStateKind, PodSandboxFilter, PodSandboxState,
    Runtime, labels,
};
use tracing::debug;

use crate::{Error, Result};

/// The window reported with the first sample, when there is no previous one (metrics-server's
/// default resolution).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(15);
/// The longest window reported: a sample long after the previous one still describes a
/// recent rate.
const MAX_WINDOW: Duration = Duration::from_secs(60);
const MIN_WINDOW: Duration = Duration::from_secs(1);

/// What one running container uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerUsage {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's UID.
    pub pod_uid: String,
    /// The container's name.
    pub container: String,
    /// CPU in nanocores (a core is 1e9).
    pub cpu_nano_cores: u64,
    /// Memory working set in bytes.
    pub memory_bytes: u64,
    /// CPU time used since the container started, in core-nanoseconds.
    pub cpu_usage_core_nanos: u64,
    /// When the container started (cluster clock).
    pub started_at: DateTime<Utc>,
}

/// One sample of a node's running containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceSample {
    /// When it was taken (cluster clock).
    pub timestamp: DateTime<Utc>,
    /// The window the rates describe: the time since the previous sample (at least 1 s, at
    /// most 60 s), or [`DEFAULT_WINDOW`] for the first.
    pub window: Duration,
    /// Each running container of the node's pods, by pod then container.
    pub containers: Vec<ContainerUsage>,
}

#[derive(Default)]
struct Previous {
    at: Option<DateTime<Utc>>,
    /// Container id → (sample time, CPU core-nanoseconds then).
    cpu: HashMap<String, (DateTime<Utc>, u64)>,
}

/// Samples the resource usage of one node's pods (upstream's kubelet `ResourceAnalyzer`).
/// Several nodes may share a runtime: only sandboxes the agent of this node ran count.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kybernetes_node::Result<()> {
/// use std::sync::Arc;
/// use kybernetes_node::ResourceAnalyzer;
/// let runtime = Arc::new(kybernetes_runtime::FakeRuntime::default());
/// let analyzer = ResourceAnalyzer::new("node-1", runtime, kybernetes_core::Clock::new());
/// assert!(analyzer.sample().await?.containers.is_empty());
/// # Ok(()) }
/// ```
pub struct ResourceAnalyzer {
    node: String,
    runtime: Arc<dyn Runtime>,
    clock: Clock,
    previous: Mutex<Previous>,
}

impl std::fmt::Debug for ResourceAnalyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceAnalyzer")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl ResourceAnalyzer {
    /// The analyzer of node `node`'s pods on `runtime`.
    pub fn new(node: &str, runtime: Arc<dyn Runtime>, clock: Clock) -> Self {
        ResourceAnalyzer {
            node: node.to_string(),
            runtime,
            clock,
            previous: Mutex::new(Previous::default()),
        }
    }

    /// The usage of every running container of the node's pods now.
    pub async fn sample(&self) -> Result<ResourceSample> {
        let runtime_err = |context: &str| {
            let context = context.to_string();
            move |source| Error::Runtime { context, source }
        };
        let sandboxes = self
            .runtime
            .list_pod_sandboxes(&PodSandboxFilter {
                state: Some(PodSandboxState::Ready),
                ..PodSandboxFilter::default().label(labels::NODE_NAME, &self.node)
            })
            .await
            .map_err(runtime_err("listing pod sandboxes for resource metrics"))?;
        let sandbox_ids: BTreeSet<&str> = sandboxes.iter().map(|s| s.id.as_str()).collect();
        let mut containers = self
            .runtime
            .list_containers(&ContainerFilter {
                state: Some(ContainerStateKind::Running),
                ..ContainerFilter::default()
            })
            .await
            .map_err(runtime_err("listing containers for resource metrics"))?;
        containers.retain(|c| sandbox_ids.contains(c.sandbox_id.as_str()));
        let mut out = Vec::with_capacity(containers.len());
        let mut cpu_samples = HashMap::with_capacity(containers.len());
        for c in &containers {
            let stats = match self.runtime.container_stats(&c.id).await {
                Ok(s) => s,
                // It exited or went away since the list: it no longer uses anything.
                Err(kybernetes_runtime::Error::NotFound { .. }) => {
                    debug!(container = %c.id, "container gone before its stats were read");
                    continue;
                }
                Err(e) => return Err(runtime_err("reading container stats")(e)),
            };
            let started = match &c.state {
                ContainerState::Running { started_at } => *started_at,
                _ => stats.timestamp,
            };
            let rate = stats.cpu_usage_nano_cores.unwrap_or_else(|| {
                let previous = self.previous_cpu(&c.id);
                derived_rate(
                    previous,
                    (started, 0),
                    (stats.timestamp, stats.cpu_usage_core_nanos),
                )
            });
            cpu_samples.insert(c.id.clone(), (stats.timestamp, stats.cpu_usage_core_nanos));
            let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
            out.push(ContainerUsage {
                namespace: label(labels::POD_NAMESPACE),
                pod: label(labels::POD_NAME),
                pod_uid: label(labels::POD_UID),
                container: c.metadata.name.clone(),
                cpu_nano_cores: rate,
                memory_bytes: stats.memory_working_set_bytes,
                cpu_usage_core_nanos: stats.cpu_usage_core_nanos,
                started_at: started,
            });
        }
        out.sort_by(|a, b| {
            (&a.namespace, &a.pod, &a.container).cmp(&(&b.namespace, &b.pod, &b.container))
        });
        let now = self.clock.now();
        let window = self.remember(now, cpu_samples);
        Ok(ResourceSample {
            timestamp: now,
            window,
            containers: out,
        })
    }

    fn previous_cpu(&self, id: &str) -> Option<(DateTime<Utc>, u64)> {
        let p = self.previous.lock().unwrap_or_else(|e| e.into_inner());
        p.cpu.get(id).copied()
    }

    /// Keeps this sample for the next one (only containers still running), and returns the
    /// window since the previous sample.
    fn remember(&self, now: DateTime<Utc>, cpu: HashMap<String, (DateTime<Utc>, u64)>) -> Duration {
        let mut p = self.previous.lock().unwrap_or_else(|e| e.into_inner());
        let window = match p.at {
            Some(at) => (now - at)
                .to_std()
                .unwrap_or(DEFAULT_WINDOW)
                .clamp(MIN_WINDOW, MAX_WINDOW),
            None => DEFAULT_WINDOW,
        };
        p.at = Some(now);
        p.cpu = cpu;
        window
    }
}

/// The CPU rate between two samples of CPU time (the previous sample, or else the start).
fn derived_rate(
    previous: Option<(DateTime<Utc>, u64)>,
    start: (DateTime<Utc>, u64),
    now: (DateTime<Utc>, u64),
) -> u64 {
    let (t0, c0) = previous
        .filter(|(t, c)| *t < now.0 && *c <= now.1)
        .unwrap_or(start);
    let nanos = (now.0 - t0).num_nanoseconds().unwrap_or(0);
    if nanos <= 0 {
        return 0;
    }
    let used = u128::from(now.1.saturating_sub(c0));
    u64::try_from(used * 1_000_000_000 / nanos as u128).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::derived_rate;
    use chrono::{DateTime, Utc};

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("valid time")
    }

    #[test]
    fn the_rate_comes_from_the_previous_sample_or_the_start() {
        // Half a core over 10 s since the start.
        assert_eq!(
            derived_rate(None, (at(0), 0), (at(10), 5_000_000_000)),
            500_000_000
        );
        // Two cores between samples 5 s apart.
        let previous = Some((at(10), 5_000_000_000));
        assert_eq!(
            derived_rate(previous, (at(0), 0), (at(15), 15_000_000_000)),
            2_000_000_000
        );
        // A restarted container's counter went back: measure since its start.
        let previous = Some((at(10), 50_000_000_000));
        assert_eq!(
            derived_rate(previous, (at(0), 0), (at(15), 1_500_000_000)),
            100_000_000
        );
        assert_eq!(derived_rate(None, (at(5), 0), (at(5), 0)), 0);
    }
}
