//! A deduplicating work queue with per-item retry backoff: client-go's rate-limited
//! `workqueue`, which the garbage collector's `attemptToDelete` and `attemptToOrphan` queues
//! are.
//!
//! An item added while it is queued is queued once. An item added while a worker processes it
//! is queued again when the worker calls [`WorkQueue::done`], so one item is never processed
//! by two workers at the same time.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The first retry delay of a failing item (client-go's `ItemExponentialFailureRateLimiter`).
const BASE_DELAY: Duration = Duration::from_millis(5);
/// The longest retry delay.
const MAX_DELAY: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    dirty: HashSet<T>,
    processing: HashSet<T>,
    failures: HashMap<T, u32>,
}

/// A deduplicating queue of items to process.
#[derive(Debug)]
pub(crate) struct WorkQueue<T> {
    state: Mutex<State<T>>,
    notify: Notify,
    shutdown: CancellationToken,
}

impl<T: Clone + Eq + Hash + Send + Sync + 'static> WorkQueue<T> {
    /// An empty queue whose [`get`](Self::get) returns `None` once `shutdown` is cancelled.
    pub(crate) fn new(shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(WorkQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
            }),
            notify: Notify::new(),
            shutdown,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item` unless it is already queued.
    pub(crate) fn add(&self, item: T) {
        let mut s = self.lock();
        if !s.dirty.insert(item.clone()) {
            return;
        }
        if s.processing.contains(&item) {
            return;
        }
        s.queue.push_back(item);
        drop(s);
        self.notify.notify_one();
    }

    /// Queues `item` after `delay`.
    pub(crate) fn add_after(self: &Arc<Self>, item: T, delay: Duration) {
        if delay.is_zero() {
            self.add(item);
            return;
        }
        let queue = Arc::clone(self);
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => queue.add(item),
                _ = queue.shutdown.cancelled() => {}
            }
        });
    }

    /// Queues `item` again after a delay that doubles with each failure in a row.
    pub(crate) fn add_rate_limited(self: &Arc<Self>, item: T) {
        let failures = {
            let mut s = self.lock();
            let n = s.failures.entry(item.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let exp = failures.saturating_sub(1).min(20);
        let delay = BASE_DELAY.saturating_mul(1u32 << exp).min(MAX_DELAY);
        self.add_after(item, delay);
    }

    /// Clears the failure count of `item` after it was processed successfully.
    pub(crate) fn forget(&self, item: &T) {
        self.lock().failures.remove(item);
    }

    /// The next item to process, or `None` once the queue is shut down. The caller must call
    /// [`done`](Self::done) with the item when finished.
    pub(crate) async fn get(&self) -> Option<T> {
        loop {
            if self.shutdown.is_cancelled() {
                return None;
            }
            {
                let mut s = self.lock();
                if let Some(item) = s.queue.pop_front() {
                    s.dirty.remove(&item);
                    s.processing.insert(item.clone());
                    let more = !s.queue.is_empty();
                    drop(s);
                    if more {
                        // Wake another worker for the rest.
                        self.notify.notify_one();
                    }
                    return Some(item);
                }
            }
            tokio::select! {
                _ = self.notify.notified() => {}
                _ = self.shutdown.cancelled() => return None,
            }
        }
    }

    /// Marks `item` as processed; if it was added meanwhile, it is queued again.
    pub(crate) fn done(&self, item: &T) {
        let mut s = self.lock();
        s.processing.remove(item);
        if s.dirty.contains(item) {
            s.queue.push_back(item.clone());
            drop(s);
            self.notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_item_added_twice_is_processed_once() {
        let q = WorkQueue::new(CancellationToken::new());
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.get().await, Some("a"));
        assert_eq!(q.get().await, Some("b"));
        q.done(&"a");
        q.done(&"b");
        assert!(q.lock().queue.is_empty());
    }

    #[tokio::test]
    async fn an_item_added_while_processing_is_queued_again_when_done() {
        let q = WorkQueue::new(CancellationToken::new());
        q.add(1);
        assert_eq!(q.get().await, Some(1));
        q.add(1);
        assert!(q.lock().queue.is_empty());
        q.done(&1);
        assert_eq!(q.get().await, Some(1));
    }

    #[tokio::test]
    async fn get_returns_none_after_shutdown() {
        let token = CancellationToken::new();
        let q: Arc<WorkQueue<u8>> = WorkQueue::new(token.clone());
        token.cancel();
        assert_eq!(q.get().await, None);
    }
}
