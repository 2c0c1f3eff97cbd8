//! Per-key exponential back-off, as upstream's `flowcontrol.Backoff`: the first failure
//! retries at once, then each retry waits twice as long, up to a maximum; a key that stayed
//! quiet for `reset_after` starts over.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::BackoffConfig;

#[derive(Clone, Copy, Debug)]
struct Entry {
    backoff: Duration,
    last_update: DateTime<Utc>,
}

/// Back-off state for a set of keys (container names, images).
#[derive(Debug)]
pub(crate) struct Backoff {
    config: BackoffConfig,
    entries: HashMap<String, Entry>,
}

fn since(a: DateTime<Utc>, b: DateTime<Utc>) -> Duration {
    (a - b).to_std().unwrap_or(Duration::ZERO)
}

impl Backoff {
    pub(crate) fn new(config: BackoffConfig) -> Self {
        Backoff {
            config,
            entries: HashMap::new(),
        }
    }

    fn expired(&self, e: &Entry, event_time: DateTime<Utc>) -> bool {
        since(event_time, e.last_update) > self.config.reset_after
    }

    /// If `key` is backing off from an event at `event_time` (a container's finish), when the
    /// back-off ends.
    pub(crate) fn in_backoff_since(
        &self,
        key: &str,
        event_time: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let e = self.entries.get(key)?;
        if self.expired(e, event_time) {
            return None;
        }
        let until = event_time + chrono::Duration::from_std(e.backoff).unwrap_or_default();
        (now < until).then_some(until)
    }

    /// If `key` is backing off since its last [`next`](Self::next), when the back-off ends.
    pub(crate) fn in_backoff_since_update(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let e = self.entries.get(key)?;
        let until = e.last_update + chrono::Duration::from_std(e.backoff).unwrap_or_default();
        (now < until).then_some(until)
    }

    /// Records a retry of `key` for an event at `event_time`: the next delay doubles (or
    /// starts at `initial`). Returns the new delay.
    pub(crate) fn next(
        &mut self,
        key: &str,
        event_time: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Duration {
        let initial = self.config.initial;
        let max = self.config.max;
        let backoff = match self.entries.get(key) {
            Some(e) if !self.expired(e, event_time) => (e.backoff * 2).min(max),
            _ => initial.min(max),
        };
        self.entries.insert(
            key.to_string(),
            Entry {
                backoff,
                last_update: now,
            },
        );
        backoff
    }

    /// The current delay of `key`, if it has one.
    pub(crate) fn current(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|e| e.backoff)
    }

    /// Forgets `key`.
    pub(crate) fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum_and_reset_after_a_quiet_period() {
        let mut b = Backoff::new(BackoffConfig::default());
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        let s = |n| t0 + chrono::Duration::seconds(n);
        assert_eq!(b.in_backoff_since("c", t0, t0), None);
        assert_eq!(b.next("c", t0, t0), Duration::from_secs(10));
        assert_eq!(b.in_backoff_since("c", s(1), s(2)), Some(s(11)));
        assert_eq!(b.in_backoff_since("c", s(1), s(11)), None);
        assert_eq!(b.next("c", s(1), s(11)), Duration::from_secs(20));
        let mut last = s(11);
        for _ in 0..10 {
            b.next("c", last, last);
            last += chrono::Duration::seconds(1);
        }
        assert_eq!(b.current("c"), Some(Duration::from_secs(300)));
        // A crash 11 minutes after the last restart starts over.
        let late = last + chrono::Duration::seconds(660);
        assert_eq!(b.in_backoff_since("c", late, late), None);
        assert_eq!(b.next("c", late, late), Duration::from_secs(10));
    }
}
