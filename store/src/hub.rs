//! In-process fan-out of watch events, shared by the backends that own their data
//! ([`crate::MemoryStore`] and, with feature `sqlite`, `SqliteStore`).
//!
//! Each watch gets its own unbounded channel. The backend publishes every committed change while
//! it still excludes other writers, so all watchers see one total order. A new watch is
//! registered together with its backlog while the backend excludes writers too, so nothing falls
//! between the backlog and the live events.
//!
//! Lock order: a backend's own lock, then the hub's. The hub never calls back into a backend.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;

use crate::{ProgressRequester, Result, WatchEvent, WatchStream};

type Sender = mpsc::UnboundedSender<Result<WatchEvent>>;

/// The registered watches of one store.
pub(crate) struct WatchHub {
    inner: Mutex<HubInner>,
}

struct HubInner {
    /// The revision of the last published change: a progress report may claim it.
    revision: i64,
    next_id: u64,
    watchers: HashMap<u64, Watcher>,
}

struct Watcher {
    prefix: String,
    /// Only changes with a revision above this are delivered.
    from: i64,
    tx: Sender,
}

impl WatchHub {
    /// A hub whose last published revision is `revision`.
    pub(crate) fn new(revision: i64) -> Arc<Self> {
        Arc::new(WatchHub {
            inner: Mutex::new(HubInner {
                revision,
                next_id: 0,
                watchers: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HubInner> {
        // The hub's state stays consistent even if a holder panicked: every update is a single
        // insert or remove.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a watch of `prefix` for changes above `from`, first queueing `backlog`.
    ///
    /// The caller must exclude writers of its store from the moment it starts reading `backlog`
    /// until this returns; that is what makes backlog and live events gapless.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        prefix: &str,
        from: i64,
        backlog: Vec<WatchEvent>,
    ) -> WatchStream {
        let (tx, rx) = mpsc::unbounded_channel();
        for event in backlog {
            // The receiver is alive: it is in our hands.
            let _ = tx.send(Ok(event));
        }
        let id = {
            let mut inner = self.lock();
            let id = inner.next_id;
            inner.next_id += 1;
            inner.watchers.insert(
                id,
                Watcher {
                    prefix: prefix.to_owned(),
                    from,
                    tx,
                },
            );
            id
        };
        tracing::trace!(id, prefix, from, "watch registered");
        let events = HubStream {
            rx,
            _guard: Unsubscribe {
                hub: Arc::downgrade(self),
                id,
            },
        };
        let progress = Arc::new(HubProgress {
            hub: Arc::downgrade(self),
            id,
        });
        WatchStream {
            events: Box::pin(events),
            progress,
        }
    }

    /// Delivers one committed change to every watch whose prefix matches its key.
    ///
    /// Must be called in revision order, while the store excludes other writers.
    pub(crate) fn publish(&self, event: WatchEvent) {
        let revision = event.revision();
        let key = match &event {
            WatchEvent::Put { kv, .. } => kv.key.as_str(),
            WatchEvent::Delete { prev, .. } => prev.key.as_str(),
            WatchEvent::Progress { .. } => "",
        };
        let mut inner = self.lock();
        inner.revision = inner.revision.max(revision);
        let mut closed = Vec::new();
        for (id, w) in &inner.watchers {
            if revision > w.from
                && key.starts_with(w.prefix.as_str())
                && w.tx.send(Ok(event.clone())).is_err()
            {
                closed.push(*id);
            }
        }
        for id in closed {
            inner.watchers.remove(&id);
        }
    }

    /// Ends every watch with an error made by `error` (the store cannot vouch for the order of
    /// what it would deliver next). Watchers must re-list.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn fail_all(&self, error: impl Fn() -> crate::Error) {
        let mut inner = self.lock();
        for (_, w) in inner.watchers.drain() {
            let _ = w.tx.send(Err(error()));
        }
    }

    /// Queues a progress report for watch `id`, ordered after every change published so far.
    fn progress(&self, id: u64) {
        let inner = self.lock();
        if let Some(w) = inner.watchers.get(&id) {
            let _ = w.tx.send(Ok(WatchEvent::Progress {
                revision: inner.revision,
            }));
        }
    }

    fn unsubscribe(&self, id: u64) {
        if self.lock().watchers.remove(&id).is_some() {
            tracing::trace!(id, "watch dropped");
        }
    }

    /// How many watches are registered.
    #[cfg(test)]
    pub(crate) fn watcher_count(&self) -> usize {
        self.lock().watchers.len()
    }
}

/// The event stream of one watch; unregisters the watch when dropped.
struct HubStream {
    rx: mpsc::UnboundedReceiver<Result<WatchEvent>>,
    _guard: Unsubscribe,
}

impl Stream for HubStream {
    type Item = Result<WatchEvent>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

struct Unsubscribe {
    hub: Weak<WatchHub>,
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.unsubscribe(self.id);
        }
    }
}

struct HubProgress {
    hub: Weak<WatchHub>,
    id: u64,
}

impl ProgressRequester for HubProgress {
    fn request_progress(&self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.progress(self.id);
        }
    }
}
