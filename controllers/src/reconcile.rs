//! The loop around a controller's reconciles: running until shutdown, per-object error
//! back-off, API error classes, and status merge patches.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Drives a controller's reconcile results until they end or `shutdown` is cancelled, passing
/// each failed reconcile's error to `log` (so the log keeps the caller's target).
pub async fn run_until_shutdown<T, E>(
    results: impl Stream<Item = Result<T, E>>,
    shutdown: &CancellationToken,
    log: impl Fn(E),
) {
    let results = results.for_each(|res| {
        if let Err(e) = res {
            log(e);
        }
        futures::future::ready(())
    });
    tokio::select! {
        _ = results => {}
        _ = shutdown.cancelled() => {}
    }
}

/// Whether a kube error is a 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether a kube error is a 409 AlreadyExists.
pub fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// A merge patch that sets `status` to exactly `new`: every key of `managed` that `new` lacks is
/// written as `null`, so a merge patch removes it (a merge patch cannot otherwise drop a field).
pub fn status_merge_patch<S: Serialize>(new: &S, managed: &[&str]) -> Value {
    let mut status = serde_json::to_value(new).unwrap_or_else(|_| json!({}));
    if let Some(m) = status.as_object_mut() {
        for key in managed {
            m.entry(key.to_string()).or_insert(Value::Null);
        }
    }
    json!({ "status": status })
}

/// Per-object retry delays for `error_policy`: 5 ms doubling up to a cap, as upstream's
/// workqueue rate limiter; reset by [`ErrorBackoff::reset`] after a successful reconcile.
#[derive(Debug)]
pub struct ErrorBackoff<Key> {
    failures: Mutex<HashMap<Key, u32>>,
    max: Duration,
}

impl<Key: Hash + Eq> ErrorBackoff<Key> {
    /// A backoff capped at `max`.
    pub fn new(max: Duration) -> Self {
        ErrorBackoff {
            failures: Mutex::new(HashMap::new()),
            max,
        }
    }

    /// The delay before the next retry of `key`, counting this failure.
    pub fn next_delay(&self, key: Key) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = f.entry(key).or_default();
        *n = n.saturating_add(1);
        let exp = (*n - 1).min(20);
        Duration::from_millis(5u64.saturating_mul(1 << exp)).min(self.max)
    }

    /// Forgets the failures of `key`.
    pub fn reset(&self, key: &Key) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_backoff_doubles_and_resets() {
        let b = ErrorBackoff::new(Duration::from_secs(1));
        assert_eq!(b.next_delay("a"), Duration::from_millis(5));
        assert_eq!(b.next_delay("a"), Duration::from_millis(10));
        b.reset(&"a");
        assert_eq!(b.next_delay("a"), Duration::from_millis(5));
    }
}
