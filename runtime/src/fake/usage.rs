//! How much CPU and memory a fake container uses over time ([`ContainerScript`]'s usage
//! steps), and the stats that follow from it: the CPU rate now, the CPU time used since the
//! start (the integral of the rate), and the memory working set.
//!
//! Steps start either some time after each start of the container or at a cluster-clock time;
//! the clock follows tokio time, so under a paused clock a scripted drop an hour later happens
//! at once.
//!
//! [`ContainerScript`]: super::ContainerScript

use std::time::Duration;

use chrono::{DateTime, Utc};

/// When a usage step takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StepStart {
    /// This long after each start of the container.
    AfterStart(Duration),
    /// At this cluster-clock time (for every container, however long it has run).
    At(DateTime<Utc>),
}

/// CPU in millicores and memory in bytes, from `start` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UsageStep {
    pub start: StepStart,
    pub cpu_millicores: Option<u64>,
    pub memory_bytes: Option<u64>,
}

/// A container's scripted usage: what it uses from its start, then the steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UsageScript {
    pub cpu_millicores: u64,
    pub memory_bytes: u64,
    pub steps: Vec<UsageStep>,
}

impl Default for UsageScript {
    fn default() -> Self {
        UsageScript {
            // The fake "uses" 1% of a core and 16 MiB while it runs.
            cpu_millicores: 10,
            memory_bytes: 16 * 1024 * 1024,
            steps: Vec::new(),
        }
    }
}

/// What a running container uses at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UsageSample {
    /// CPU now, in nanocores.
    pub cpu_nano_cores: u64,
    /// CPU time since the start, in nanoseconds of one core.
    pub cpu_core_nanos: u64,
    /// Memory working set now.
    pub memory_bytes: u64,
}

impl UsageScript {
    /// The usage of a container that started at `started` (cluster clock), at `now`.
    pub fn sample(&self, started: DateTime<Utc>, now: DateTime<Utc>) -> UsageSample {
        // Each step's effective time, clamped to the start; later steps win ties.
        let mut changes: Vec<(DateTime<Utc>, usize, &UsageStep)> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let at = match s.start {
                    StepStart::AfterStart(d) => {
                        started + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
                    }
                    StepStart::At(t) => t.max(started),
                };
                (at, i, s)
            })
            .filter(|(at, _, _)| *at <= now)
            .collect();
        changes.sort_by_key(|(at, i, _)| (*at, *i));
        let (mut cpu, mut memory) = (self.cpu_millicores, self.memory_bytes);
        let mut since = started;
        let mut core_nanos: u128 = 0;
        for (at, _, step) in changes {
            core_nanos += millicore_nanos(cpu, at - since);
            since = at;
            cpu = step.cpu_millicores.unwrap_or(cpu);
            memory = step.memory_bytes.unwrap_or(memory);
        }
        core_nanos += millicore_nanos(cpu, now - since);
        UsageSample {
            cpu_nano_cores: cpu.saturating_mul(1_000_000),
            cpu_core_nanos: u64::try_from(core_nanos).unwrap_or(u64::MAX),
            memory_bytes: memory,
        }
    }
}

/// CPU time used at `millicores` over `span`, in core-nanoseconds.
fn millicore_nanos(millicores: u64, span: chrono::Duration) -> u128 {
    let nanos = span.num_nanoseconds().unwrap_or(i64::MAX).max(0) as u128;
    nanos * u128::from(millicores) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("valid time")
    }

    #[test]
    fn cpu_time_is_the_integral_of_the_scripted_rate() {
        let script = UsageScript {
            cpu_millicores: 200,
            memory_bytes: 1 << 20,
            steps: vec![
                UsageStep {
                    start: StepStart::AfterStart(Duration::from_secs(10)),
                    cpu_millicores: Some(1000),
                    memory_bytes: None,
                },
                UsageStep {
                    start: StepStart::At(at(30)),
                    cpu_millicores: Some(0),
                    memory_bytes: Some(2 << 20),
                },
            ],
        };
        let s = script.sample(at(0), at(5));
        assert_eq!(
            (s.cpu_nano_cores, s.cpu_core_nanos),
            (200_000_000, 1_000_000_000)
        );
        let s = script.sample(at(0), at(20));
        // 10 s at 0.2 cores, then 10 s at 1 core.
        assert_eq!(
            (s.cpu_nano_cores, s.cpu_core_nanos),
            (1_000_000_000, 12_000_000_000)
        );
        assert_eq!(s.memory_bytes, 1 << 20);
        let s = script.sample(at(0), at(60));
        assert_eq!((s.cpu_nano_cores, s.cpu_core_nanos), (0, 22_000_000_000));
        assert_eq!(s.memory_bytes, 2 << 20);
        // A container started after the cluster-time step has it from its start.
        let s = script.sample(at(100), at(105));
        assert_eq!((s.cpu_nano_cores, s.cpu_core_nanos), (0, 0));
    }
}
