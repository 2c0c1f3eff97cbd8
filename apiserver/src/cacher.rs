//! The watch cache (upstream's `Cacher`): one store watch per resource feeds an in-memory copy
//! of every object plus a window of recent events. Lists at a known revision and every watch
//! are served from here, so a thousand watchers cost one store watch. Each event is serialized
//! once and the bytes are shared by every watcher that receives it unchanged.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use kybernetes_core::{ApiError, ResourceInfo};
use kybernetes_store::{ListOptions, ProgressRequester, Store, WatchEvent};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::object;

/// How many recent events each resource keeps for watches that resume from a revision.
pub const DEFAULT_HISTORY: usize = 50_000;

/// An object as the cache holds it: decoded, with its resourceVersion set.
///
/// The decoded form is kept only while the object is in one of the latest [`DECODED_WINDOW`]
/// events of its resource, where every watcher reads it; otherwise it is decoded from the
/// stored bytes for each use (a list, a watch's initial state, a replay) and dropped after.
/// Every object decoded for good would hold the live objects and the event history as
/// `serde_json::Value`s, several times the size of the stored bytes (about 14 KB for a
/// running pod), while the store holds those bytes anyway.
#[derive(Debug)]
pub struct CachedObject {
    /// Store key.
    pub key: String,
    /// Its mod revision.
    pub rv: i64,
    /// The stored bytes, decoded on use: objects nobody lists or watches (most Events) are
    /// never parsed.
    raw: Option<Bytes>,
    decoded: Mutex<Decoded>,
    /// The value of the resource's indexed field (`spec.nodeName` for pods), once asked for.
    trigger: OnceLock<String>,
}

#[derive(Debug, Default)]
struct Decoded {
    value: Option<Arc<Value>>,
    /// How many events of the decoded window carry this object (as object or as `prev`).
    in_window: u8,
}

impl CachedObject {
    /// An object already decoded (its resourceVersion filled in).
    pub fn new(key: String, value: Value, rv: i64) -> Self {
        CachedObject {
            key,
            rv,
            raw: None,
            decoded: Mutex::new(Decoded {
                value: Some(Arc::new(value)),
                in_window: 0,
            }),
            trigger: OnceLock::new(),
        }
    }

    fn lazy(key: String, raw: Bytes, rv: i64) -> Self {
        CachedObject {
            key,
            rv,
            raw: Some(raw),
            decoded: Mutex::new(Decoded::default()),
            trigger: OnceLock::new(),
        }
    }

    /// The object, with its resourceVersion filled in.
    pub fn value(&self) -> Arc<Value> {
        // Decoded under the lock, so that watchers asking at once decode it once.
        let mut decoded = lock(&self.decoded);
        if let Some(v) = &decoded.value {
            return v.clone();
        }
        let raw = self.raw.as_deref().unwrap_or_default();
        let value = Arc::new(object::decode_at(raw, self.rv).unwrap_or_else(|e| {
            warn!(key = %self.key, error = %e, "stored object cannot be decoded");
            Value::Null
        }));
        if decoded.in_window > 0 {
            decoded.value = Some(value.clone());
        }
        value
    }

    /// The value of `field` (a missing one reads as "", as field selectors read it).
    fn trigger_value(&self, field: &str) -> &str {
        self.trigger.get_or_init(|| {
            object::path_get(&self.value(), field)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        })
    }

    fn enter_window(&self) {
        let mut decoded = lock(&self.decoded);
        decoded.in_window = decoded.in_window.saturating_add(1);
    }

    /// Drops the decoded form once no event of the window carries the object, if it can be
    /// decoded again from the stored bytes.
    fn leave_window(&self) {
        let mut decoded = lock(&self.decoded);
        decoded.in_window = decoded.in_window.saturating_sub(1);
        if decoded.in_window == 0 && self.raw.is_some() {
            decoded.value = None;
        }
    }
}

/// How many of the latest events of a resource keep their objects decoded and their lines
/// encoded: as many as a watcher may have queued, so that no live watcher decodes again.
pub const DECODED_WINDOW: usize = WATCHER_BUFFER;

/// The type of a watch event, as in `metav1.WatchEvent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// ADDED.
    Added,
    /// MODIFIED.
    Modified,
    /// DELETED.
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, shared by every watcher.
#[derive(Debug)]
pub struct CacheEvent {
    /// Type.
    pub kind: EventType,
    /// The object after the change (for DELETED: the last state, at the delete revision).
    pub object: Arc<CachedObject>,
    /// The object before the change.
    pub prev: Option<Arc<CachedObject>>,
    /// Revision of the change.
    pub revision: i64,
    encoded: Mutex<Option<Bytes>>,
    encoded_metadata: Mutex<Option<Bytes>>,
    /// Set once the event has left the decoded window.
    released: std::sync::atomic::AtomicBool,
}

impl CacheEvent {
    /// An event built outside the cache (for watches served straight from the store).
    pub fn detached(
        kind: EventType,
        key: String,
        value: Value,
        prev: Option<(String, Value, i64)>,
        revision: i64,
    ) -> Self {
        let object = Arc::new(CachedObject::new(key, value, revision));
        let prev = prev.map(|(key, value, rv)| Arc::new(CachedObject::new(key, value, rv)));
        CacheEvent::new(kind, object, prev, revision)
    }

    fn new(
        kind: EventType,
        object: Arc<CachedObject>,
        prev: Option<Arc<CachedObject>>,
        revision: i64,
    ) -> Self {
        object.enter_window();
        if let Some(p) = &prev {
            p.enter_window();
        }
        CacheEvent {
            kind,
            object,
            prev,
            revision,
            encoded: Mutex::new(None),
            encoded_metadata: Mutex::new(None),
            released: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The event as one line of a JSON watch stream, encoded once.
    pub fn encoded(&self) -> Bytes {
        self.encode_once(&self.encoded, || {
            encode_event(self.kind, &self.object.value())
        })
    }

    /// The event with a `PartialObjectMetadata` object, encoded once for every metadata watcher.
    pub fn encoded_metadata(&self) -> Bytes {
        self.encode_once(&self.encoded_metadata, || {
            encode_event(self.kind, &object::partial_metadata(&self.object.value()))
        })
    }

    /// The line in `slot`, encoded now if it is not there; kept only while the event is in the
    /// decoded window (a replay of older events encodes each for its watcher).
    fn encode_once(&self, slot: &Mutex<Option<Bytes>>, encode: impl FnOnce() -> Bytes) -> Bytes {
        let mut slot = lock(slot);
        if let Some(line) = &*slot {
            return line.clone();
        }
        let line = encode();
        if !self.released.load(std::sync::atomic::Ordering::Acquire) {
            *slot = Some(line.clone());
        }
        line
    }

    /// Gives up, once, what can be rebuilt from the stored bytes: the encoded lines and the
    /// decoded objects (unless a later event of the window carries them too). Run when the
    /// event leaves the [`DECODED_WINDOW`] or the history.
    fn release(&self) {
        if self
            .released
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        *lock(&self.encoded) = None;
        *lock(&self.encoded_metadata) = None;
        self.object.leave_window();
        if let Some(prev) = &self.prev {
            prev.leave_window();
        }
    }
}

/// Encodes `{"type":..,"object":..}\n`.
pub fn encode_event(kind: EventType, obj: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({ "type": kind.as_str(), "object": obj })).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// How many events may wait for one watcher before it is ended as too slow (it then resumes
/// from its last resourceVersion, as with upstream's cacher).
pub const WATCHER_BUFFER: usize = 4096;

/// Messages to watchers.
#[derive(Clone, Debug)]
pub enum Broadcast {
    /// A change.
    Event(Arc<CacheEvent>),
    /// The cache re-initialised; watchers must end so clients re-watch.
    Reset,
}

struct State {
    objects: BTreeMap<String, Arc<CachedObject>>,
    history: VecDeque<Arc<CacheEvent>>,
    /// Every event with revision > `oldest` is in `history`.
    oldest: i64,
    revision: i64,
    /// Revisions below this are compacted: watches from them get 410.
    compacted: i64,
}

/// The watch cache of one resource.
/// The live watchers of one resource. Watchers that select pods by `spec.nodeName` are indexed
/// by it (upstream's "indexed triggers"), so a pod event wakes only the node agents it concerns.
#[derive(Default)]
struct Watchers {
    next_id: u64,
    senders: std::collections::HashMap<u64, mpsc::Sender<Broadcast>>,
    by_trigger: std::collections::HashMap<String, std::collections::HashSet<u64>>,
    trigger_of: std::collections::HashMap<u64, String>,
    untriggered: std::collections::HashSet<u64>,
}

impl Watchers {
    fn add(&mut self, trigger: Option<String>) -> (u64, mpsc::Receiver<Broadcast>) {
        let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
        self.next_id += 1;
        let id = self.next_id;
        self.senders.insert(id, tx);
        match trigger {
            Some(t) => {
                self.by_trigger.entry(t.clone()).or_default().insert(id);
                self.trigger_of.insert(id, t);
            }
            None => {
                self.untriggered.insert(id);
            }
        }
        (id, rx)
    }

    fn remove(&mut self, id: u64) {
        self.senders.remove(&id);
        self.untriggered.remove(&id);
        if let Some(t) = self.trigger_of.remove(&id)
            && let Some(set) = self.by_trigger.get_mut(&t)
        {
            set.remove(&id);
            if set.is_empty() {
                self.by_trigger.remove(&t);
            }
        }
    }

    fn dispatch(&mut self, msg: &Broadcast, triggers: &[&str]) {
        let mut targets: Vec<u64> = self.untriggered.iter().copied().collect();
        let mut triggered = std::collections::BTreeSet::new();
        for t in triggers {
            if let Some(set) = self.by_trigger.get(*t) {
                triggered.extend(set.iter().copied());
            }
        }
        targets.extend(triggered);
        let mut gone = Vec::new();
        for id in targets {
            if let Some(tx) = self.senders.get(&id)
                && tx.try_send(msg.clone()).is_err()
            {
                gone.push(id);
            }
        }
        for id in gone {
            self.remove(id);
        }
    }

    fn reset(&mut self) {
        let ids: Vec<u64> = self.senders.keys().copied().collect();
        for id in ids {
            if let Some(tx) = self.senders.get(&id) {
                let _ = tx.try_send(Broadcast::Reset);
            }
            self.remove(id);
        }
    }
}

/// A watcher's place in the cache; dropping it unregisters the watcher.
pub struct Subscription {
    id: u64,
    cacher: std::sync::Weak<Cacher>,
    /// Changes after the watch's starting point.
    pub rx: mpsc::Receiver<Broadcast>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(c) = self.cacher.upgrade() {
            lock(&c.watchers).remove(self.id);
        }
    }
}

/// The field a resource's watchers may be indexed by.
fn trigger_field(r: &ResourceInfo) -> Option<&'static str> {
    (r.group.is_empty() && r.plural == "pods").then_some("spec.nodeName")
}

/// The watch cache of one resource.
pub struct Cacher {
    resource: Arc<ResourceInfo>,
    state: Mutex<State>,
    watchers: Mutex<Watchers>,
    me: std::sync::Weak<Cacher>,
    revision: watch::Sender<i64>,
    progress: Mutex<Option<Arc<dyn ProgressRequester>>>,
    history_limit: usize,
}

impl std::fmt::Debug for Cacher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cacher")
            .field("resource", &self.resource.plural)
            .finish_non_exhaustive()
    }
}

/// A consistent snapshot taken together with a subscription for later events.
pub struct Snapshot {
    /// Objects at `revision`, in key order.
    pub objects: Vec<Arc<CachedObject>>,
    /// Revision of the snapshot.
    pub revision: i64,
}

/// How a watch starts.
pub enum WatchStart {
    /// Send the current state as ADDED events first.
    Snapshot(Snapshot, Subscription),
    /// Replay events after a revision.
    Replay(Vec<Arc<CacheEvent>>, Subscription, i64),
    /// The revision is older than the cache window: watch the store directly.
    TooOld,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cacher {
    /// Starts the cache for one resource: lists the store, then follows its watch in a task.
    pub async fn start(
        resource: Arc<ResourceInfo>,
        store: Arc<dyn Store>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Cacher>, ApiError> {
        let (revision, _) = watch::channel(0);
        let cacher = Arc::new_cyclic(|me| Cacher {
            resource,
            state: Mutex::new(State {
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                oldest: 0,
                revision: 0,
                compacted: 0,
            }),
            watchers: Mutex::new(Watchers::default()),
            me: me.clone(),
            revision,
            progress: Mutex::new(None),
            history_limit: DEFAULT_HISTORY,
        });
        let stream = cacher.init(&store).await?;
        let weak = Arc::downgrade(&cacher);
        tokio::spawn(async move {
            let mut stream = stream;
            loop {
                let next = tokio::select! {
                    n = stream.events.next() => n,
                    _ = shutdown.wait_for(|s| *s) => return,
                };
                let Some(c) = weak.upgrade() else { return };
                match next {
                    Some(Ok(ev)) => c.apply(ev),
                    Some(Err(e)) => {
                        warn!(resource = %c.resource.plural, error = %e, "store watch failed; re-initialising watch cache");
                        stream = loop {
                            match c.init(&store).await {
                                Ok(s) => break s,
                                Err(e) => {
                                    warn!(error = %e, "watch cache re-list failed");
                                    tokio::time::sleep(Duration::from_millis(200)).await;
                                }
                            }
                        };
                        lock(&c.watchers).reset();
                    }
                    None => return,
                }
            }
        });
        Ok(cacher)
    }

    async fn init(
        &self,
        store: &Arc<dyn Store>,
    ) -> Result<kybernetes_store::WatchStream, ApiError> {
        let prefix = self.resource.key_prefix();
        let list = store
            .list(&prefix, ListOptions::default())
            .await
            .map_err(|e| {
                ApiError::internal(format!("listing {prefix} for the watch cache: {e}"))
            })?;
        let mut objects = BTreeMap::new();
        for kv in &list.items {
            objects.insert(
                kv.key.clone(),
                Arc::new(CachedObject::lazy(
                    kv.key.clone(),
                    kv.value.clone(),
                    kv.mod_revision,
                )),
            );
        }
        let stream = store.watch(&prefix, list.revision).await.map_err(|e| {
            ApiError::internal(format!("watching {prefix} for the watch cache: {e}"))
        })?;
        let compacted = store.compacted_revision().await.unwrap_or(0);
        *lock(&self.progress) = Some(stream.progress.clone());
        {
            let mut st = lock(&self.state);
            st.objects = objects;
            st.history.clear();
            st.oldest = list.revision;
            st.revision = list.revision;
            st.compacted = st.compacted.max(compacted);
        }
        self.revision.send_replace(list.revision);
        debug!(resource = %self.resource.plural, revision = list.revision, "watch cache initialised");
        Ok(stream)
    }

    fn apply(&self, ev: WatchEvent) {
        let mut st = lock(&self.state);
        let rev = ev.revision();
        let event = match ev {
            WatchEvent::Progress { revision } => {
                if revision > st.revision {
                    st.revision = revision;
                }
                drop(st);
                self.revision.send_if_modified(|r| {
                    let changed = *r < revision;
                    *r = (*r).max(revision);
                    changed
                });
                return;
            }
            WatchEvent::Put { kv, .. } => {
                let obj = Arc::new(CachedObject::lazy(
                    kv.key.clone(),
                    kv.value.clone(),
                    kv.mod_revision,
                ));
                let prev = st.objects.insert(kv.key.clone(), obj.clone());
                let kind = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                CacheEvent::new(kind, obj, prev, rev)
            }
            WatchEvent::Delete { prev, revision } => {
                let last = st.objects.remove(&prev.key);
                // The last state at the delete's revision: decoded only when a watcher asks.
                let obj = Arc::new(CachedObject::lazy(
                    prev.key.clone(),
                    prev.value.clone(),
                    revision,
                ));
                CacheEvent::new(EventType::Deleted, obj, last, revision)
            }
        };
        let event = Arc::new(event);
        st.history.push_back(event.clone());
        while st.history.len() > self.history_limit {
            if let Some(old) = st.history.pop_front() {
                old.release();
                st.oldest = old.revision;
            }
        }
        // Every live watcher is at most its queue's length behind, so an event this old has
        // been sent to all of them: only a watch resuming from an old revision reads it again.
        if let Some(old) = st
            .history
            .len()
            .checked_sub(DECODED_WINDOW + 1)
            .and_then(|i| st.history.get(i))
        {
            old.release();
        }
        st.revision = rev;
        // Sent under the state lock, so a watcher registering under the same lock sees no gap.
        let field = trigger_field(&self.resource);
        let value_of = |o: &CachedObject| field.map(|f| o.trigger_value(f).to_string());
        let mut triggers: Vec<String> = value_of(&event.object).into_iter().collect();
        if let Some(prev) = event.prev.as_deref().and_then(value_of)
            && !triggers.contains(&prev)
        {
            triggers.push(prev);
        }
        let refs: Vec<&str> = triggers.iter().map(String::as_str).collect();
        lock(&self.watchers).dispatch(&Broadcast::Event(event), &refs);
        drop(st);
        self.revision.send_replace(rev);
    }

    /// The revision the cache has caught up to.
    pub fn revision(&self) -> i64 {
        *self.revision.borrow()
    }

    /// Waits until the cache has seen every change up to `min` (asking the store for progress),
    /// or fails with 504 after `timeout`.
    pub async fn wait_until(&self, min: i64, timeout: Duration) -> Result<(), ApiError> {
        let mut rx = self.revision.subscribe();
        if *rx.borrow() >= min {
            return Ok(());
        }
        if let Some(p) = lock(&self.progress).clone() {
            p.request_progress();
        }
        let wait = rx.wait_for(|r| *r >= min);
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ApiError::too_large_resource_version(min, self.revision())),
        }
    }

    /// The current objects under `prefix`; with a `trigger`, only those whose indexed field
    /// has that value (see [`Cacher::watch`]), found without decoding the others again.
    pub fn snapshot(&self, prefix: &str, trigger: Option<&str>) -> Snapshot {
        let st = lock(&self.state);
        Snapshot {
            objects: self.selecting(range(&st.objects, prefix), trigger),
            revision: st.revision,
        }
    }

    fn selecting(
        &self,
        mut objects: Vec<Arc<CachedObject>>,
        trigger: Option<&str>,
    ) -> Vec<Arc<CachedObject>> {
        if let (Some(field), Some(want)) = (trigger_field(&self.resource), trigger) {
            objects.retain(|o| o.trigger_value(field) == want);
        }
        objects
    }

    /// Looks one object up.
    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        lock(&self.state).objects.get(key).cloned()
    }

    /// Starts a watch: from a snapshot (`from == None`), or replaying events after `from`.
    /// `trigger` is the value of the resource's indexed field the watcher selects on
    /// (`spec.nodeName=<node>` for pods), if any.
    pub fn watch(
        &self,
        prefix: &str,
        from: Option<i64>,
        trigger: Option<&str>,
    ) -> Result<WatchStart, ApiError> {
        let st = lock(&self.state);
        let trigger = trigger
            .filter(|_| trigger_field(&self.resource).is_some())
            .map(String::from);
        let (id, rx) = lock(&self.watchers).add(trigger.clone());
        let rx = Subscription {
            id,
            cacher: self.me.clone(),
            rx,
        };
        match from {
            None => Ok(WatchStart::Snapshot(
                Snapshot {
                    objects: self.selecting(range(&st.objects, prefix), trigger.as_deref()),
                    revision: st.revision,
                },
                rx,
            )),
            Some(rv) => {
                if rv < st.compacted {
                    return Err(ApiError::too_old_resource_version(rv, st.compacted));
                }
                if rv < st.oldest {
                    return Ok(WatchStart::TooOld);
                }
                let start = st.history.partition_point(|e| e.revision <= rv);
                let backlog = st
                    .history
                    .range(start..)
                    .filter(|e| e.object.key.starts_with(prefix))
                    .cloned()
                    .collect();
                Ok(WatchStart::Replay(backlog, rx, st.revision.max(rv)))
            }
        }
    }

    /// Records a store compaction: watches from before `revision` now get 410.
    pub fn compacted(&self, revision: i64) {
        let mut st = lock(&self.state);
        st.compacted = st.compacted.max(revision);
        let keep = st.history.partition_point(|e| e.revision <= revision);
        for old in st.history.drain(..keep) {
            old.release();
        }
        st.oldest = st.oldest.max(revision);
    }
}

fn range(objects: &BTreeMap<String, Arc<CachedObject>>, prefix: &str) -> Vec<Arc<CachedObject>> {
    objects
        .range(prefix.to_string()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kybernetes_store::MemoryStore;

    fn decoded(o: &CachedObject) -> bool {
        lock(&o.decoded).value.is_some()
    }

    #[tokio::test]
    async fn events_past_the_window_give_up_their_decoded_objects_but_still_serve_them() {
        let pods = kybernetes_core::registry::builtin_resources()
            .into_iter()
            .find(|r| r.group.is_empty() && r.plural == "pods")
            .map(Arc::new)
            .unwrap_or_else(|| panic!("pods are built in"));
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (_stop, shutdown) = watch::channel(false);
        let cacher = Cacher::start(pods.clone(), store.clone(), shutdown)
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        let key = pods.key(Some("default"), "a");
        let mut rev = 0;
        for i in 0..DECODED_WINDOW + 2 {
            let pod = json!({"metadata": {"name": "a", "namespace": "default",
                "labels": {"i": i.to_string()}}, "spec": {"nodeName": "n"}});
            let bytes = Bytes::from(serde_json::to_vec(&pod).unwrap_or_default());
            rev = if i == 0 {
                store.create(&key, bytes).await
            } else {
                store.update(&key, bytes, rev).await
            }
            .unwrap_or_else(|e| panic!("write {i}: {e}"))
            .mod_revision;
        }
        cacher
            .wait_until(rev, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        let (oldest, newest) = {
            let st = lock(&cacher.state);
            let first = st.history.front().cloned();
            let last = st.history.back().cloned();
            (first, last)
        };
        let (Some(oldest), Some(newest)) = (oldest, newest) else {
            panic!("no history");
        };
        // The first event is past the window: nothing decoded or encoded is left...
        assert!(!decoded(&oldest.object));
        assert!(lock(&oldest.encoded).is_none());
        // ...but it still serves the object as it was, decoded again from the store's bytes,
        // without keeping it.
        assert_eq!(oldest.object.value()["metadata"]["labels"]["i"], json!("0"));
        assert!(oldest.encoded().starts_with(b"{\"object\""));
        assert!(!decoded(&oldest.object));
        assert!(lock(&oldest.encoded).is_none());
        // The latest event and the live object keep theirs.
        assert!(decoded(&newest.object));
        let live = cacher.get(&key).unwrap_or_else(|| panic!("live object"));
        assert!(Arc::ptr_eq(&live, &newest.object));
        // A snapshot by node finds the pod through its indexed field.
        assert_eq!(
            cacher.snapshot(&pods.key_prefix(), Some("n")).objects.len(),
            1
        );
        assert!(
            cacher
                .snapshot(&pods.key_prefix(), Some("m"))
                .objects
                .is_empty()
        );
    }
}
