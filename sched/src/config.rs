//! Settings of the scheduling loop itself. Upstream's `KubeSchedulerConfiguration`, with its
//! profiles, is [`kube_scheduler_config`](crate::kube_scheduler_config).

use std::time::Duration;

use kybernetes_core::Clock;

/// How the [`SchedulerLoop`](crate::SchedulerLoop) runs. `Default` gives upstream's values.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// The `spec.schedulerName` a scheduler started with
    /// [`SchedulerLoop::spawn`](crate::SchedulerLoop::spawn) serves (`default-scheduler`);
    /// [`spawn_profiles`](crate::SchedulerLoop::spawn_profiles) takes the names from its
    /// profiles instead.
    pub scheduler_name: String,
    /// The cluster clock, for condition and event times.
    pub clock: Clock,
    /// The first retry delay after a failed attempt; doubles with each attempt (1 s).
    pub pod_initial_backoff: Duration,
    /// The longest retry delay (10 s).
    pub pod_max_backoff: Duration,
    /// A pod that stayed unschedulable this long is retried even if the cluster did not change
    /// (upstream's `podMaxInUnschedulablePodsDuration`, 5 min).
    pub pod_max_in_unschedulable_duration: Duration,
    /// How often the unschedulable pods are checked against
    /// [`pod_max_in_unschedulable_duration`](Self::pod_max_in_unschedulable_duration) (30 s).
    pub unschedulable_flush_interval: Duration,
    /// How many binding requests may be in flight at once (256).
    pub max_concurrent_bindings: usize,
    /// Whether to record `Scheduled` and `FailedScheduling` events (true).
    pub record_events: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: "default-scheduler".to_string(),
            clock: Clock::new(),
            pod_initial_backoff: Duration::from_secs(1),
            pod_max_backoff: Duration::from_secs(10),
            pod_max_in_unschedulable_duration: Duration::from_secs(5 * 60),
            unschedulable_flush_interval: Duration::from_secs(30),
            max_concurrent_bindings: 256,
            record_events: true,
        }
    }
}

impl SchedulerConfig {
    /// The delay before attempt `attempts + 1`: the initial backoff doubled per earlier
    /// failure, capped at the maximum (upstream's `calculateBackoffDuration`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = kybernetes_sched::SchedulerConfig::default();
    /// assert_eq!(c.backoff(1), Duration::from_secs(1));
    /// assert_eq!(c.backoff(3), Duration::from_secs(4));
    /// assert_eq!(c.backoff(10), Duration::from_secs(10));
    /// ```
    pub fn backoff(&self, attempts: u32) -> Duration {
        backoff_duration(self.pod_initial_backoff, self.pod_max_backoff, attempts)
    }
}

/// `initial` doubled per failure after the first, capped at `max`.
pub(crate) fn backoff_duration(initial: Duration, max: Duration, attempts: u32) -> Duration {
    let mut d = initial;
    for _ in 1..attempts {
        d = d.saturating_mul(2);
        if d >= max {
            return max;
        }
    }
    d.min(max)
}
