//! Shared informers, as upstream's `SharedInformerFactory`: one watch and one cache per
//! resource for the whole controller manager, fanned out to every controller that asks.
//!
//! Without it each controller listed and watched pods itself, so every pod change was decoded
//! and cached once per controller (about thirteen times). Now the factory runs one kube
//! watcher (list+watch through the API server) per resource, keeps one [`Store`] of `Arc`s that
//! every controller reads, and hands each subscriber its own bounded queue of
//! [`ObjectChange`]s. Deletions are delivered, including those a re-list after a watch restart
//! reveals (kube's `reflect_shared` drops those, kube-rs#1590).
//!
//! ```no_run
//! # async fn doc(client: kube::Client) {
//! use kybernetes_controllers::informers::InformerFactory;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let informers = InformerFactory::new(client, shutdown.clone());
//! let mut pods = informers.pods().subscribe();
//! while let Some(change) = pods.recv().await {
//!     tracing::info!(?change, "pod changed");
//! }
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span};

use crate::mutation_cache::ObservedRevision;

/// How many changes a subscriber may fall behind before the informer waits for it (upstream's
/// listeners buffer without bound; a bound keeps a stuck controller from growing memory).
pub const SUBSCRIBER_QUEUE: usize = 4096;

/// One change of a cached object, as upstream's `ResourceEventHandler` sees it.
#[derive(Clone, Debug)]
pub enum ObjectChange<K> {
    /// The object appeared (a watch event or the initial list).
    Added(Arc<K>),
    /// The object changed; a re-list reports every object still there as updated, which is
    /// upstream's resync.
    Updated {
        /// The cached version before the change.
        old: Arc<K>,
        /// The version now cached.
        new: Arc<K>,
    },
    /// The object is gone: its final state from the watch, or its last cached version when a
    /// re-list no longer lists it.
    Deleted(Arc<K>),
}

impl<K: Resource> ObjectChange<K> {
    /// The objects to map to reconcile requests: the new version of an added or updated
    /// object, the last version of a deleted one, and the old version too when the change
    /// moved the object's labels or owners (it may have left one controller's selection for
    /// another's, and upstream's handlers enqueue both).
    pub fn into_triggers(self) -> Vec<Arc<K>> {
        match self {
            ObjectChange::Added(o) | ObjectChange::Deleted(o) => vec![o],
            ObjectChange::Updated { old, new } => {
                let (o, n) = (old.meta(), new.meta());
                if o.labels != n.labels || o.owner_references != n.owner_references {
                    vec![new, old]
                } else {
                    vec![new]
                }
            }
        }
    }

    /// The object as it is now (for a deletion, as it was last seen).
    pub fn object(&self) -> &Arc<K> {
        match self {
            ObjectChange::Added(o) | ObjectChange::Deleted(o) => o,
            ObjectChange::Updated { new, .. } => new,
        }
    }
}

/// The informers of a controller manager; each is started the first time it is asked for and
/// stops when the factory's shutdown token is cancelled.
pub struct InformerFactory {
    client: Client,
    shutdown: CancellationToken,
    pods: OnceLock<SharedInformer<Pod>>,
    nodes: OnceLock<SharedInformer<Node>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl InformerFactory {
    /// A factory whose informers watch through `client` until `shutdown` is cancelled.
    pub fn new(client: Client, shutdown: CancellationToken) -> Self {
        InformerFactory {
            client,
            shutdown,
            pods: OnceLock::new(),
            nodes: OnceLock::new(),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// The shared pod informer (every namespace).
    pub fn pods(&self) -> &SharedInformer<Pod> {
        self.pods
            .get_or_init(|| self.start(Api::all(self.client.clone()), "pods"))
    }

    /// The shared node informer.
    pub fn nodes(&self) -> &SharedInformer<Node> {
        self.nodes
            .get_or_init(|| self.start(Api::all(self.client.clone()), "nodes"))
    }

    /// The informers' tasks started so far, for the caller to await after shutdown.
    pub fn take_tasks(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn start<K>(&self, api: Api<K>, resource: &'static str) -> SharedInformer<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let (store, writer) = reflector::store();
        let informer = SharedInformer {
            store,
            observed: ObservedRevision::default(),
            subscribers: Arc::new(Mutex::new(Vec::new())),
        };
        let task = tokio::spawn(
            run(api, writer, informer.clone(), self.shutdown.clone())
                .instrument(info_span!("shared_informer", resource)),
        );
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
        informer
    }
}

/// One watch and one cache of `K`, shared by every subscriber.
pub struct SharedInformer<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    observed: ObservedRevision,
    subscribers: Arc<Mutex<Vec<mpsc::Sender<ObjectChange<K>>>>>,
}

impl<K: Resource<DynamicType = ()> + 'static> Clone for SharedInformer<K> {
    fn clone(&self) -> Self {
        SharedInformer {
            store: self.store.clone(),
            observed: self.observed.clone(),
            subscribers: self.subscribers.clone(),
        }
    }
}

impl<K> SharedInformer<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    /// The shared cache (read-only), ready once the first list has arrived.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// The highest revision the informer has applied to its cache, for a
    /// [`crate::mutation_cache::MutationCache`] over [`Self::store`].
    pub fn observed(&self) -> ObservedRevision {
        self.observed.clone()
    }

    /// A new subscriber: it first sees every object already cached as added, then every
    /// change after that.
    pub fn subscribe(&self) -> Subscription<K> {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        // Under the lock the informer holds while it applies a change and picks its
        // recipients, so each change is either in this snapshot or delivered, never neither.
        let mut subscribers = lock(&self.subscribers);
        let replay = self.store.state().into_iter().collect();
        subscribers.push(tx);
        Subscription { replay, rx }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One subscriber's queue of changes.
pub struct Subscription<K> {
    replay: VecDeque<Arc<K>>,
    rx: mpsc::Receiver<ObjectChange<K>>,
}

impl<K: Resource + 'static> Subscription<K> {
    /// The next change; `None` once the informer has stopped.
    pub async fn recv(&mut self) -> Option<ObjectChange<K>> {
        if let Some(o) = self.replay.pop_front() {
            return Some(ObjectChange::Added(o));
        }
        self.rx.recv().await
    }

    /// Calls `handle` for every change until `shutdown` or the informer stops.
    pub async fn for_each(
        mut self,
        shutdown: CancellationToken,
        mut handle: impl FnMut(ObjectChange<K>),
    ) {
        loop {
            let change = tokio::select! {
                c = self.recv() => c,
                _ = shutdown.cancelled() => return,
            };
            match change {
                Some(change) => handle(change),
                None => return,
            }
        }
    }

    /// The changes as a stream.
    pub fn into_stream(self) -> impl Stream<Item = ObjectChange<K>> + Send + 'static
    where
        K: Send + Sync,
    {
        futures::stream::unfold(self, |mut s| async move { s.recv().await.map(|c| (c, s)) })
    }

    /// The changes' [`ObjectChange::into_triggers`], for kube's
    /// `Controller::watches_shared_stream` or `owns_shared_stream`.
    pub fn into_trigger_stream(self) -> impl Stream<Item = Arc<K>> + Send + 'static
    where
        K: Send + Sync,
    {
        self.into_stream()
            .flat_map(|change| futures::stream::iter(change.into_triggers()))
    }
}

/// Drops what no controller reads and every object carries: the field managers.
fn strip<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

async fn run<K>(
    api: Api<K>,
    mut writer: Writer<K>,
    informer: SharedInformer<K>,
    shutdown: CancellationToken,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(strip);
    let mut events = std::pin::pin!(events);
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            _ = shutdown.cancelled() => return,
        };
        let event = match event {
            Some(Ok(event)) => event,
            Some(Err(e)) => {
                debug!(error = %e, "watch failed; retrying");
                continue;
            }
            None => return,
        };
        let (changes, recipients) = {
            let subscribers = lock(&informer.subscribers);
            let changes = apply(&mut writer, &informer.store, &event);
            informer.observed.observe_event(&event);
            (changes, subscribers.clone())
        };
        if changes.is_empty() {
            continue;
        }
        let mut gone = false;
        for tx in &recipients {
            for change in &changes {
                let sent = tokio::select! {
                    r = tx.send(change.clone()) => r.is_ok(),
                    _ = shutdown.cancelled() => return,
                };
                if !sent {
                    // The subscriber dropped its queue; it is removed below.
                    gone = true;
                    break;
                }
            }
        }
        if gone {
            lock(&informer.subscribers).retain(|tx| !tx.is_closed());
        }
    }
}

/// Applies a watch event to the cache and says what changed. A re-list's objects are buffered
/// until it is complete and then compared with the cache it replaces.
fn apply<K>(
    writer: &mut Writer<K>,
    store: &Store<K>,
    event: &watcher::Event<K>,
) -> Vec<ObjectChange<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    match event {
        watcher::Event::Apply(o) => {
            let key = ObjectRef::from_obj(o);
            let old = store.get(&key);
            writer.apply_watcher_event(event);
            let Some(new) = store.get(&key) else {
                return Vec::new();
            };
            match old {
                Some(old) => vec![ObjectChange::Updated { old, new }],
                None => vec![ObjectChange::Added(new)],
            }
        }
        watcher::Event::Delete(o) => {
            writer.apply_watcher_event(event);
            vec![ObjectChange::Deleted(Arc::new(o.clone()))]
        }
        watcher::Event::Init | watcher::Event::InitApply(_) => {
            writer.apply_watcher_event(event);
            Vec::new()
        }
        watcher::Event::InitDone => {
            let mut before: HashMap<ObjectRef<K>, Arc<K>> = store
                .state()
                .into_iter()
                .map(|o| (ObjectRef::from_obj(o.as_ref()), o))
                .collect();
            writer.apply_watcher_event(event);
            let mut out: Vec<ObjectChange<K>> = store
                .state()
                .into_iter()
                .map(
                    |new| match before.remove(&ObjectRef::from_obj(new.as_ref())) {
                        Some(old) => ObjectChange::Updated { old, new },
                        None => ObjectChange::Added(new),
                    },
                )
                .collect();
            out.extend(before.into_values().map(ObjectChange::Deleted));
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn pod(name: &str, rv: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn names(changes: &[ObjectChange<Pod>]) -> Vec<String> {
        let mut out: Vec<String> = changes
            .iter()
            .map(|c| {
                let kind = match c {
                    ObjectChange::Added(_) => "added",
                    ObjectChange::Updated { .. } => "updated",
                    ObjectChange::Deleted(_) => "deleted",
                };
                format!(
                    "{kind} {}",
                    c.object().metadata.name.as_deref().unwrap_or("")
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_relist_reports_what_it_no_longer_lists_as_deleted() {
        let (store, mut writer) = reflector::store::<Pod>();
        for e in [
            watcher::Event::Init,
            watcher::Event::InitApply(pod("a", "1")),
            watcher::Event::InitApply(pod("b", "2")),
        ] {
            assert!(apply(&mut writer, &store, &e).is_empty());
        }
        let first = apply(&mut writer, &store, &watcher::Event::InitDone);
        assert_eq!(names(&first), ["added a", "added b"]);
        // The watch restarts; `b` was deleted and `c` created meanwhile.
        for e in [
            watcher::Event::Init,
            watcher::Event::InitApply(pod("a", "3")),
            watcher::Event::InitApply(pod("c", "4")),
        ] {
            assert!(apply(&mut writer, &store, &e).is_empty());
        }
        let relist = apply(&mut writer, &store, &watcher::Event::InitDone);
        assert_eq!(names(&relist), ["added c", "deleted b", "updated a"]);
        assert_eq!(store.state().len(), 2);
    }

    #[test]
    fn watch_events_carry_the_cached_old_version() {
        let (store, mut writer) = reflector::store::<Pod>();
        let added = apply(&mut writer, &store, &watcher::Event::Apply(pod("a", "1")));
        assert_eq!(names(&added), ["added a"]);
        let updated = apply(&mut writer, &store, &watcher::Event::Apply(pod("a", "2")));
        let [ObjectChange::Updated { old, new }] = updated.as_slice() else {
            panic!("{updated:?}");
        };
        assert_eq!(old.metadata.resource_version.as_deref(), Some("1"));
        assert_eq!(new.metadata.resource_version.as_deref(), Some("2"));
        let deleted = apply(&mut writer, &store, &watcher::Event::Delete(pod("a", "3")));
        assert_eq!(names(&deleted), ["deleted a"]);
        assert!(store.state().is_empty());
    }

    #[tokio::test]
    async fn a_late_subscriber_first_sees_the_cache_as_added() {
        let (store, mut writer) = reflector::store::<Pod>();
        writer.apply_watcher_event(&watcher::Event::Apply(pod("a", "1")));
        let informer = SharedInformer {
            store,
            observed: ObservedRevision::default(),
            subscribers: Arc::new(Mutex::new(Vec::new())),
        };
        let mut sub = informer.subscribe();
        let Some(ObjectChange::Added(p)) = sub.recv().await else {
            panic!("no replay");
        };
        assert_eq!(p.metadata.name.as_deref(), Some("a"));
        assert_eq!(lock(&informer.subscribers).len(), 1);
    }
}
