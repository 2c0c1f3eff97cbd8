//! The cluster clock: the one source of wall time.
//!
//! Components measure durations with `tokio::time`, and read wall time (creationTimestamp,
//! lease renewals, condition times) from [`Clock`]. The clock is anchored to the system time
//! once and then advances with `tokio::time::Instant`, so a test running under tokio's paused
//! clock (`tokio::time::pause()`) sees wall time jump exactly as far as tokio time does: a
//! 300 s toleration passes in microseconds.

use chrono::{DateTime, Utc};
use std::sync::Arc;

/// The cluster's wall clock. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let clock = kybernetes_core::Clock::new();
/// let t0 = clock.now();
/// tokio::time::sleep(std::time::Duration::from_secs(300)).await;
/// assert_eq!((clock.now() - t0).num_seconds(), 300);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Clock {
    inner: Arc<Anchor>,
}

#[derive(Debug)]
struct Anchor {
    wall: DateTime<Utc>,
    mono: tokio::time::Instant,
}

impl Clock {
    /// A clock anchored to the system time now. Must be called inside a tokio runtime when
    /// tokio's clock is paused, so the anchor uses the paused instant.
    pub fn new() -> Self {
        Self::starting_at(Utc::now())
    }

    /// A clock that reads `wall` now and advances with tokio time.
    pub fn starting_at(wall: DateTime<Utc>) -> Self {
        Clock {
            inner: Arc::new(Anchor {
                wall,
                mono: tokio::time::Instant::now(),
            }),
        }
    }

    /// The current wall time.
    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.inner.mono);
        let elapsed = chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::zero());
        self.inner.wall + elapsed
    }

    /// The current time in the RFC 3339 form Kubernetes uses (`2024-01-02T03:04:05Z`).
    pub fn now_rfc3339(&self) -> String {
        format_time(self.now())
    }

    /// The current time with microseconds (metav1.MicroTime, used by leases and events).
    pub fn now_micro(&self) -> String {
        self.now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Formats a time as metav1.Time does (second precision, `Z`).
pub fn format_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses a metav1.Time or MicroTime string.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
