//! [`MemoryStore`]: the in-memory, multi-version reference backend.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use bytes::Bytes;

use crate::hub::WatchHub;
use crate::{Error, KeyValue, ListOptions, ListResult, Result, Store, WatchEvent, WatchStream};

/// The current revision of an empty store. The first write gets revision 2, as in etcd, so that
/// no object ever has resourceVersion `"0"` or `"1"` (Kubernetes gives `"0"` a meaning of its own).
pub(crate) const EMPTY_STORE_REVISION: i64 = 1;

/// An in-memory [`Store`] that keeps every version of every key until it is compacted.
///
/// - An empty store is at revision 1; the first write gets revision 2. Nothing is compacted at
///   first: [`Store::compacted_revision`] is 0.
/// - `list` at any revision from the compacted one up to the current one sees the state as it
///   was then. History grows with every write until [`Store::compact`] is called, so a long-lived
///   store must be compacted now and then (the API server does it periodically).
/// - Each watch has its own unbounded queue; a watcher that never reads keeps its events in
///   memory until it is dropped. Dropping the [`WatchStream`]'s `events` unregisters it.
///
/// Cloning is cheap: clones share the same data.
#[derive(Clone, Default)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

struct Shared {
    state: RwLock<State>,
    hub: Arc<WatchHub>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            state: RwLock::new(State::default()),
            hub: WatchHub::new(EMPTY_STORE_REVISION),
        }
    }
}

/// One version of a key. `value == None` is a tombstone (the key was deleted at `mod_revision`).
struct Version {
    mod_revision: i64,
    create_revision: i64,
    value: Option<Bytes>,
}

/// One write, in the global log.
struct LogEntry {
    revision: i64,
    key: Arc<str>,
}

struct State {
    revision: i64,
    compacted: i64,
    /// Every key's versions, oldest first. Invariant: at most the first version is at or below
    /// `compacted`, and if it is, it is not a tombstone. A key with no versions is removed.
    keys: BTreeMap<Arc<str>, Vec<Version>>,
    /// Every write above `compacted`, in revision order.
    log: VecDeque<LogEntry>,
}

impl Default for State {
    fn default() -> Self {
        State {
            revision: EMPTY_STORE_REVISION,
            compacted: 0,
            keys: BTreeMap::new(),
            log: VecDeque::new(),
        }
    }
}

fn key_value(key: &str, version: &Version) -> Option<KeyValue> {
    version.value.as_ref().map(|value| KeyValue {
        key: key.to_owned(),
        value: value.clone(),
        create_revision: version.create_revision,
        mod_revision: version.mod_revision,
    })
}

/// The version of a key visible at `revision`, if the key existed then.
fn visible_at(history: &[Version], revision: i64) -> Option<&Version> {
    let idx = history.partition_point(|v| v.mod_revision <= revision);
    idx.checked_sub(1)
        .and_then(|i| history.get(i))
        .filter(|v| v.value.is_some())
}

fn inconsistent(what: String) -> Error {
    tracing::error!(%what, "memory store invariant broken");
    Error::Backend {
        context: format!("memory store is inconsistent: {what}"),
        source: None,
    }
}

impl State {
    /// The live value of `key`.
    fn live(&self, key: &str) -> Option<KeyValue> {
        self.keys
            .get(key)
            .and_then(|h| h.last())
            .and_then(|v| key_value(key, v))
    }

    /// Records a write at `version.mod_revision` (which must be `self.revision + 1`).
    fn push(&mut self, key: &str, version: Version) {
        let revision = version.mod_revision;
        let key: Arc<str> = match self.keys.get_key_value(key) {
            Some((k, _)) => Arc::clone(k),
            None => Arc::from(key),
        };
        self.keys.entry(Arc::clone(&key)).or_default().push(version);
        self.log.push_back(LogEntry { revision, key });
        self.revision = revision;
    }

    /// The revision a list reads at, checked against the retained history.
    fn read_revision(&self, requested: Option<i64>) -> Result<i64> {
        crate::resolve_read_revision(requested, self.revision, self.compacted)
    }

    /// Rebuilds the watch event of a logged write.
    fn event(&self, entry: &LogEntry) -> Result<WatchEvent> {
        let key = &*entry.key;
        let history = self
            .keys
            .get(key)
            .ok_or_else(|| inconsistent(format!("logged key {key} has no history")))?;
        let idx = history
            .binary_search_by_key(&entry.revision, |v| v.mod_revision)
            .map_err(|_| {
                inconsistent(format!(
                    "key {key} has no version at revision {}",
                    entry.revision
                ))
            })?;
        let prev = idx
            .checked_sub(1)
            .and_then(|i| history.get(i))
            .and_then(|p| key_value(key, p));
        let version = history
            .get(idx)
            .ok_or_else(|| inconsistent(format!("key {key}: version index {idx} out of range")))?;
        match key_value(key, version) {
            Some(kv) => Ok(WatchEvent::Put { kv, prev }),
            None => {
                let prev = prev.ok_or_else(|| {
                    inconsistent(format!(
                        "delete of {key} at {} has no previous value",
                        entry.revision
                    ))
                })?;
                Ok(WatchEvent::Delete {
                    prev,
                    revision: entry.revision,
                })
            }
        }
    }
}

/// Drops the versions of `key` that no read at or after `revision` can see.
fn compact_key(keys: &mut BTreeMap<Arc<str>, Vec<Version>>, key: &str, revision: i64) {
    let Some(history) = keys.get_mut(key) else {
        return;
    };
    let idx = history.partition_point(|v| v.mod_revision <= revision);
    // Keep the version visible at `revision` unless it is a tombstone.
    let keep_from = match idx.checked_sub(1) {
        Some(last) if history.get(last).is_some_and(|v| v.value.is_some()) => last,
        _ => idx,
    };
    if keep_from > 0 {
        history.drain(..keep_from);
    }
    if history.is_empty() {
        keys.remove(key);
    } else if history.capacity() > 4 && history.len() * 4 <= history.capacity() {
        history.shrink_to_fit();
    }
}

impl MemoryStore {
    /// An empty store (current revision 1).
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // Writers only mutate after every check has passed, so a panic cannot leave a
        // half-applied write behind; the data stays usable.
        self.shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.shared
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many watches are registered (for leak tests).
    #[cfg(test)]
    fn watcher_count(&self) -> usize {
        self.shared.hub.watcher_count()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.read();
        f.debug_struct("MemoryStore")
            .field("revision", &st.revision)
            .field("compacted", &st.compacted)
            .field("keys", &st.keys.len())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.read().live(key))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let st = self.read();
        let at = st.read_revision(opts.revision)?;
        let limit = opts.limit.filter(|&l| l > 0);
        let lower = match opts.start_after.as_deref() {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut items = Vec::new();
        let mut more = false;
        for (key, history) in st.keys.range::<str, _>((lower, Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            let Some(kv) = visible_at(history, at).and_then(|v| key_value(key, v)) else {
                continue;
            };
            if limit.is_some_and(|l| items.len() >= l) {
                more = true;
                break;
            }
            items.push(kv);
        }
        Ok(ListResult {
            items,
            revision: at,
            more,
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let mut st = self.write();
        if st.live(key).is_some() {
            return Err(Error::AlreadyExists {
                key: key.to_owned(),
            });
        }
        let rev = st.revision + 1;
        let kv = KeyValue {
            key: key.to_owned(),
            value: value.clone(),
            create_revision: rev,
            mod_revision: rev,
        };
        st.push(
            key,
            Version {
                mod_revision: rev,
                create_revision: rev,
                value: Some(value),
            },
        );
        self.shared.hub.publish(WatchEvent::Put {
            kv: kv.clone(),
            prev: None,
        });
        Ok(kv)
    }

    async fn update(&self, key: &str, value: Bytes, expected_revision: i64) -> Result<KeyValue> {
        let mut st = self.write();
        let prev = st.live(key).ok_or_else(|| Error::NotFound {
            key: key.to_owned(),
        })?;
        if prev.mod_revision != expected_revision {
            return Err(Error::Conflict {
                key: key.to_owned(),
                expected: expected_revision,
                actual: prev.mod_revision,
            });
        }
        let rev = st.revision + 1;
        let kv = KeyValue {
            key: key.to_owned(),
            value: value.clone(),
            create_revision: prev.create_revision,
            mod_revision: rev,
        };
        st.push(
            key,
            Version {
                mod_revision: rev,
                create_revision: prev.create_revision,
                value: Some(value),
            },
        );
        self.shared.hub.publish(WatchEvent::Put {
            kv: kv.clone(),
            prev: Some(prev),
        });
        Ok(kv)
    }

    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<(KeyValue, i64)> {
        let mut st = self.write();
        let prev = st.live(key).ok_or_else(|| Error::NotFound {
            key: key.to_owned(),
        })?;
        if let Some(expected) = expected_revision
            && expected != prev.mod_revision
        {
            return Err(Error::Conflict {
                key: key.to_owned(),
                expected,
                actual: prev.mod_revision,
            });
        }
        let rev = st.revision + 1;
        st.push(
            key,
            Version {
                mod_revision: rev,
                create_revision: prev.create_revision,
                value: None,
            },
        );
        self.shared.hub.publish(WatchEvent::Delete {
            prev: prev.clone(),
            revision: rev,
        });
        Ok((prev, rev))
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream> {
        // The read lock excludes writers until the watch is registered: no gap, no duplicate.
        let st = self.read();
        if from_revision < st.compacted {
            return Err(Error::Gone {
                requested: from_revision,
                compacted: st.compacted,
            });
        }
        let start = st.log.partition_point(|e| e.revision <= from_revision);
        let mut backlog = Vec::new();
        for entry in st.log.range(start..) {
            if entry.key.starts_with(prefix) {
                backlog.push(st.event(entry)?);
            }
        }
        Ok(self.shared.hub.subscribe(prefix, from_revision, backlog))
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        let mut guard = self.write();
        let st = &mut *guard;
        if revision > st.revision {
            return Err(Error::FutureRevision {
                requested: revision,
                current: st.revision,
            });
        }
        if revision <= st.compacted {
            return Ok(());
        }
        let cut = st.log.partition_point(|e| e.revision <= revision);
        for entry in st.log.drain(..cut) {
            compact_key(&mut st.keys, &entry.key, revision);
        }
        if st.log.capacity() > 64 && st.log.len() * 4 <= st.log.capacity() {
            st.log.shrink_to_fit();
        }
        tracing::debug!(
            revision,
            dropped = cut,
            keys = st.keys.len(),
            "memory store compacted"
        );
        st.compacted = revision;
        Ok(())
    }

    async fn current_revision(&self) -> Result<i64> {
        Ok(self.read().revision)
    }

    async fn compacted_revision(&self) -> Result<i64> {
        Ok(self.read().compacted)
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn empty_store_revisions() {
        let store = MemoryStore::new();
        assert_eq!(store.current_revision().await.ok(), Some(1));
        assert_eq!(store.compacted_revision().await.ok(), Some(0));
        let kv = store
            .create("/a", Bytes::from_static(b"1"))
            .await
            .expect("create");
        assert_eq!(kv.mod_revision, 2);
        assert_eq!(kv.create_revision, 2);
    }

    #[tokio::test]
    async fn dropped_watchers_are_unregistered() {
        let store = MemoryStore::new();
        let a = store.watch("/a/", 0).await.expect("watch a");
        let b = store.watch("/b/", 0).await.expect("watch b");
        assert_eq!(store.watcher_count(), 2);
        // Dropping the stream unregisters even if no event ever matched it.
        drop(a.events);
        assert_eq!(store.watcher_count(), 1);
        // The progress handle outliving its stream is harmless.
        a.progress.request_progress();
        drop(b);
        assert_eq!(store.watcher_count(), 0);
    }

    #[tokio::test]
    async fn stream_ends_when_store_is_dropped() {
        let store = MemoryStore::new();
        let mut w = store.watch("/", 0).await.expect("watch");
        store.create("/x", Bytes::new()).await.expect("create");
        drop(store);
        assert!(matches!(
            w.events.next().await,
            Some(Ok(WatchEvent::Put { .. }))
        ));
        assert!(w.events.next().await.is_none());
    }

    #[tokio::test]
    async fn compaction_drops_superseded_versions_and_tombstones() {
        let store = MemoryStore::new();
        let a1 = store
            .create("/a", Bytes::from_static(b"1"))
            .await
            .expect("create a");
        let a2 = store
            .update("/a", Bytes::from_static(b"2"), a1.mod_revision)
            .await
            .expect("update a");
        let b = store.create("/b", Bytes::new()).await.expect("create b");
        let (_, del) = store.delete("/b", None).await.expect("delete b");
        store.compact(del).await.expect("compact");
        {
            let st = store.read();
            assert_eq!(st.keys.len(), 1, "deleted key is gone after compaction");
            assert_eq!(st.keys.get("/a").map(Vec::len), Some(1));
            assert!(st.log.is_empty());
        }
        let at = store
            .list(
                "/",
                ListOptions {
                    revision: Some(del),
                    ..Default::default()
                },
            )
            .await
            .expect("list at compacted revision");
        assert_eq!(at.items, vec![a2]);
        assert!(matches!(
            store
                .list(
                    "/",
                    ListOptions {
                        revision: Some(b.mod_revision),
                        ..Default::default()
                    }
                )
                .await,
            Err(Error::Gone { .. })
        ));
        // Compacting to an older revision is a no-op; to a future one an error.
        store.compact(1).await.expect("older compaction is a no-op");
        assert_eq!(store.compacted_revision().await.ok(), Some(del));
        assert!(matches!(
            store.compact(del + 1).await,
            Err(Error::FutureRevision { .. })
        ));
    }

    #[tokio::test]
    async fn watch_from_the_future_skips_until_then() {
        let store = MemoryStore::new();
        let mut w = store.watch("/", 3).await.expect("watch");
        store.create("/a", Bytes::new()).await.expect("rev 2");
        store.create("/b", Bytes::new()).await.expect("rev 3");
        store.create("/c", Bytes::new()).await.expect("rev 4");
        match w.events.next().await {
            Some(Ok(ev)) => assert_eq!(ev.revision(), 4),
            other => panic!("expected the revision 4 event, got {other:?}"),
        }
    }
}
