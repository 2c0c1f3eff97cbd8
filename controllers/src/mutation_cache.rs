//! A controller's view of its own writes before its informer catches up (client-go's
//! `MutationCache`), and the informer revision that tells when it has.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;

/// The highest resourceVersion an informer has delivered, for [`MutationCache`]. Fed by
/// [`ObservedRevision::observe_event`] after the reflector has applied the event.
#[derive(Clone, Debug, Default)]
pub struct ObservedRevision(Arc<AtomicU64>);

impl ObservedRevision {
    /// Records a live watch event (not the buffered events of a relist).
    pub fn observe_event<K: Resource>(&self, event: &watcher::Event<K>) {
        if let watcher::Event::Apply(obj) | watcher::Event::Delete(obj) = event
            && let Some(rv) = parse_rv(obj.meta())
        {
            self.0.fetch_max(rv, AtomicOrdering::Relaxed);
        }
    }

    /// The highest revision seen so far.
    pub fn get(&self) -> u64 {
        self.0.load(AtomicOrdering::Relaxed)
    }
}

/// Watches every `K` of `api` into `writer`'s store, each object trimmed by `strip`, and records
/// the live events in `observed`; yields the objects touched, for `Controller::watches_stream`.
pub fn observed_watch<K>(
    api: Api<K>,
    strip: impl FnMut(&mut K) + Send + 'static,
    writer: Writer<K>,
    observed: ObservedRevision,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(strip)
        .reflect(writer)
        .inspect(move |ev| {
            if let Ok(ev) = ev {
                observed.observe_event(ev);
            }
        })
        .touched_objects()
}

fn parse_rv(meta: &ObjectMeta) -> Option<u64> {
    meta.resource_version.as_deref()?.parse().ok()
}

type Mutations<K> = HashMap<ObjectRef<K>, (Mutation<K>, tokio::time::Instant)>;

enum Mutation<K> {
    Written(Arc<K>),
    Deleted(String),
}

/// Layers a controller's own recent writes over its informer cache, as client-go's
/// `MutationCache` (with integer resourceVersions) does, and remembers its deletions: a
/// reconcile that runs before the informer has caught up sees the pods it has just created and
/// not the ones it has just deleted, so it never creates or deletes twice (the job upstream's
/// `ControllerExpectations` do). An entry is dropped once the cache holds that version or newer,
/// once the informer has passed its revision, or after `ttl`.
pub struct MutationCache<K: Resource> {
    entries: Mutex<Mutations<K>>,
    observed: ObservedRevision,
    ttl: Duration,
}

impl<K> MutationCache<K>
where
    K: Resource<DynamicType = ()> + Clone,
{
    /// A mutation cache over an informer that reports its progress to `observed`.
    pub fn new(observed: ObservedRevision, ttl: Duration) -> Self {
        MutationCache {
            entries: Mutex::new(HashMap::new()),
            observed,
            ttl,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Mutations<K>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an object this controller wrote (created, updated or patched).
    pub fn mutation(&self, obj: K) {
        let key = ObjectRef::from_obj(&obj);
        self.lock().insert(
            key,
            (
                Mutation::Written(Arc::new(obj)),
                tokio::time::Instant::now(),
            ),
        );
    }

    /// Records an object this controller deleted.
    pub fn deletion(&self, obj: &K) {
        let key = ObjectRef::from_obj(obj);
        let uid = obj.meta().uid.clone().unwrap_or_default();
        self.lock()
            .insert(key, (Mutation::Deleted(uid), tokio::time::Instant::now()));
    }

    /// The newest known version of a cached object; `None` if this controller deleted it.
    pub fn get(&self, cached: Arc<K>) -> Option<Arc<K>> {
        let key = ObjectRef::from_obj(cached.as_ref());
        let mut entries = self.lock();
        let Some((m, at)) = entries.get(&key) else {
            return Some(cached);
        };
        if at.elapsed() > self.ttl {
            entries.remove(&key);
            return Some(cached);
        }
        match m {
            Mutation::Written(ours) => {
                if is_newer(ours.meta(), cached.meta()) {
                    Some(ours.clone())
                } else {
                    entries.remove(&key);
                    Some(cached)
                }
            }
            Mutation::Deleted(uid) => {
                if cached.meta().uid.as_deref() == Some(uid.as_str()) {
                    None
                } else {
                    entries.remove(&key);
                    Some(cached)
                }
            }
        }
    }

    /// The cache's objects that pass `filter`, with this controller's writes layered on top:
    /// objects it created that the cache does not hold yet are added, objects it deleted are
    /// left out.
    pub fn list(&self, cache: &Store<K>, filter: impl Fn(&K) -> bool) -> Vec<Arc<K>> {
        let mut out: Vec<Arc<K>> = cache
            .state()
            .into_iter()
            .filter_map(|o| self.get(o))
            // The filter judges the newest version: a pod this controller just deleted is
            // still active in the cache but terminating in its own write.
            .filter(|o| filter(o))
            .collect();
        let observed = self.observed.get();
        let mut entries = self.lock();
        entries.retain(|key, (m, at)| {
            if at.elapsed() > self.ttl {
                return false;
            }
            match m {
                Mutation::Written(ours) => {
                    if cache.get(key).is_some() {
                        return true; // handled above
                    }
                    if parse_rv(ours.meta()).is_some_and(|rv| rv <= observed) {
                        return false; // the informer has seen it come and go
                    }
                    if filter(ours) {
                        out.push(ours.clone());
                    }
                    true
                }
                Mutation::Deleted(_) => cache.get(key).is_some(),
            }
        });
        out
    }
}

fn is_newer(ours: &ObjectMeta, cached: &ObjectMeta) -> bool {
    match (parse_rv(ours), parse_rv(cached)) {
        (Some(a), Some(b)) => a > b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod_state::tests::pod;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[tokio::test]
    async fn a_pod_this_controller_just_deleted_is_filtered_by_its_terminating_version() {
        let (store, mut writer) = kube::runtime::reflector::store::<Pod>();
        let mut cached = (*pod("p", "n1", "Running", true)).clone();
        cached.metadata.namespace = Some("default".into());
        cached.metadata.resource_version = Some("5".into());
        writer.apply_watcher_event(&watcher::Event::Apply(cached.clone()));
        let cache = MutationCache::new(ObservedRevision::default(), Duration::from_secs(60));
        let active = |p: &Pod| p.metadata.deletion_timestamp.is_none();
        assert_eq!(cache.list(&store, active).len(), 1);
        let mut terminating = cached;
        terminating.metadata.resource_version = Some("6".into());
        terminating.metadata.deletion_timestamp =
            Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        cache.mutation(terminating);
        assert!(
            cache.list(&store, active).is_empty(),
            "the informer still holds the active version, but the pod is terminating"
        );
    }
}
