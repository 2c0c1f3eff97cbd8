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

/// Formats a duration as Go's `time.Duration.String` does, which is how `metav1.Duration`
/// fields (a metrics `window`) are written: `15s`, `1m30s`, `1h0m0s`, `1.5s`, `250ms`.
///
/// ```
/// use std::time::Duration;
/// use kybernetes_core::clock::{format_duration, parse_duration};
/// assert_eq!(format_duration(Duration::from_secs(15)), "15s");
/// assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
/// assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
/// assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
/// assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
/// ```
pub fn format_duration(d: std::time::Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (unit, div) = match nanos {
            n if n < 1_000 => ("ns", 1u128),
            n if n < 1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        return format!("{}{unit}", decimal(nanos, div));
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let seconds = decimal(
        u128::from(s) * 1_000_000_000 + u128::from(d.subsec_nanos()),
        1_000_000_000,
    );
    match (h, m) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

/// `n / div` in decimal, without trailing zeros in the fraction.
fn decimal(n: u128, div: u128) -> String {
    let (int, frac) = (n / div, n % div);
    if frac == 0 {
        return int.to_string();
    }
    let width = div.to_string().len() - 1;
    let frac = format!("{frac:0width$}");
    format!("{int}.{}", frac.trim_end_matches('0'))
}

/// Parses a Go duration string (`time.ParseDuration`): a sequence of decimal numbers, each
/// with an optional fraction and a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`). Negative
/// durations and bad input give `None`.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let mut rest = s.trim().strip_prefix('+').unwrap_or(s.trim());
    if rest == "0" {
        return Some(std::time::Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = tail;
    }
    std::time::Duration::try_from_secs_f64(total).ok()
}
