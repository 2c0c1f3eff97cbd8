//! Helpers shared by the workload controllers, after upstream's `pkg/controller/controller_utils.go`
//! and `controller_ref_manager.go`: controller ownerReferences and claiming (adoption and
//! release), label selectors from `metav1.LabelSelector`, pod readiness and availability, the
//! order in which pods are picked for deletion, a mutation cache that lets a controller read its
//! own writes before its informer catches up, status merge patches and per-object error backoff.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Event as CoreEvent, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector as MetaLabelSelector, ObjectMeta, OwnerReference, Time,
};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use kybernetes_core::Clock;
use kybernetes_core::selector::{LabelSelector, SelectorError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// The controller ownerReference that `owner` puts on the objects it manages (upstream's
/// `metav1.NewControllerRef`): `controller=true` and `blockOwnerDeletion=true`.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    let meta = owner.meta();
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The ownerReference with `controller=true`, if any (upstream's `metav1.GetControllerOf`).
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether `obj` is controlled by the object with this uid.
pub fn is_controlled_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == owner_uid)
}

/// Converts a `metav1.LabelSelector` as upstream's `metav1.LabelSelectorAsSelector`: `None`
/// matches nothing, an empty selector everything.
///
/// ```
/// use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
/// let sel = LabelSelector { match_labels: Some([("app".to_string(), "web".to_string())].into()), ..Default::default() };
/// let sel = kybernetes_controllers::util::label_selector(Some(&sel))?;
/// assert_eq!(sel.to_string(), "app=web");
/// assert!(kybernetes_controllers::util::label_selector(None)?.is_nothing());
/// # Ok::<(), kybernetes_core::selector::SelectorError>(())
/// ```
pub fn label_selector(
    selector: Option<&MetaLabelSelector>,
) -> Result<LabelSelector, SelectorError> {
    match selector {
        None => Ok(LabelSelector::nothing()),
        Some(sel) => {
            let v = serde_json::to_value(sel).unwrap_or(Value::Null);
            LabelSelector::from_json(&v)
        }
    }
}

/// Upstream's `GetScaledValueFromIntOrPercent`: an integer as is, a percentage of `total`
/// rounded up or down; the error says why the value is neither.
pub fn scaled_int_or_percent(
    v: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
    total: i32,
    round_up: bool,
) -> Result<i32, String> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match v {
        IntOrString::Int(n) if *n >= 0 => Ok(*n),
        IntOrString::Int(n) => Err(format!("{n} must be greater than or equal to 0")),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .filter(|p| *p >= 0)
                .ok_or_else(|| {
                    format!("invalid value for IntOrString: {s:?} is not a percentage")
                })?;
            let scaled = i64::from(total) * pct;
            let v = if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            };
            Ok(v.min(i64::from(i32::MAX)) as i32)
        }
    }
}

/// A metav1.Time for `t`, truncated to whole seconds as the wire form is (so a round trip
/// through the API server compares equal).
pub fn to_time(t: DateTime<Utc>) -> Time {
    let ts = k8s_openapi::jiff::Timestamp::from_second(t.timestamp())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    Time(ts)
}

/// The chrono form of a metav1.Time.
pub fn from_time(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}

/// Whether a pod counts towards a controller's replicas: not finished (Succeeded/Failed) and not
/// being deleted (upstream's `IsPodActive`).
pub fn is_pod_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && pod.metadata.deletion_timestamp.is_none()
}

/// The pod's Ready condition, if present.
fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Whether the pod's Ready condition is True (upstream's `podutil.IsPodReady`).
pub fn is_pod_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// When the pod became ready, if it is ready.
pub fn pod_ready_since(pod: &Pod) -> Option<DateTime<Utc>> {
    ready_condition(pod)
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(from_time)
}

/// Whether the pod has been ready for at least `min_ready_seconds` at `now` (upstream's
/// `podutil.IsPodAvailable`).
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: DateTime<Utc>) -> bool {
    if !is_pod_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    pod_ready_since(pod)
        .is_some_and(|t| t + chrono::Duration::seconds(i64::from(min_ready_seconds)) < now)
}

/// How long until a ready pod becomes available, if it is ready but not yet available.
pub fn until_available(pod: &Pod, min_ready_seconds: i32, now: DateTime<Utc>) -> Option<Duration> {
    if min_ready_seconds <= 0 || is_pod_available(pod, min_ready_seconds, now) {
        return None;
    }
    let since = pod_ready_since(pod)?;
    let at = since + chrono::Duration::seconds(i64::from(min_ready_seconds));
    // Available strictly after `at`: wake one second later.
    Some((at - now).to_std().unwrap_or_default() + Duration::from_secs(1))
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    }
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| {
            cs.iter().map(|c| c.restart_count).max().unwrap_or(0)
        })
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.annotations()
        .get("controller.kubernetes.io/pod-deletion-cost")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// Upstream's `ActivePodsWithRanks` order: the pods to delete first come first. `rank` is the
/// number of related pods on the same node (doubled-up pods go first).
fn compare_for_deletion(a: &Pod, ra: usize, b: &Pod, rb: usize) -> Ordering {
    let (ya, yb) = (is_pod_ready(a), is_pod_ready(b));
    // 1. Unassigned < assigned.
    node_name(b)
        .is_empty()
        .cmp(&node_name(a).is_empty())
        // 2. Pending < Unknown < Running.
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        // 3. Not ready < ready.
        .then_with(|| ya.cmp(&yb))
        // 4. Lower pod-deletion-cost first.
        .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
        // 5. Doubled up (higher rank) first.
        .then_with(|| rb.cmp(&ra))
        // 6. Ready for less time first.
        .then_with(|| {
            if ya && yb {
                pod_ready_since(b).cmp(&pod_ready_since(a))
            } else {
                Ordering::Equal
            }
        })
        // 7. More restarts first.
        .then_with(|| max_restarts(b).cmp(&max_restarts(a)))
        // 8. Newer first.
        .then_with(|| {
            b.metadata
                .creation_timestamp
                .as_ref()
                .cmp(&a.metadata.creation_timestamp.as_ref())
        })
        .then_with(|| a.name_any().cmp(&b.name_any()))
}

/// Picks the `count` pods to delete first when scaling down, ranked as upstream's
/// `getPodsToDelete`: `related` are the pods of the owner's sibling controllers (and its own),
/// used to rank doubled-up pods on a node first.
pub fn pods_to_delete(
    mut pods: Vec<Arc<Pod>>,
    related: &[Arc<Pod>],
    count: usize,
) -> Vec<Arc<Pod>> {
    if count < pods.len() {
        let mut per_node: HashMap<&str, usize> = HashMap::new();
        for p in related {
            let n = node_name(p);
            if !n.is_empty() && is_pod_active(p) {
                *per_node.entry(n).or_default() += 1;
            }
        }
        let rank = |p: &Pod| per_node.get(node_name(p)).copied().unwrap_or(0);
        let ranks: HashMap<String, usize> = pods.iter().map(|p| (p.name_any(), rank(p))).collect();
        let r = |p: &Pod| ranks.get(&p.name_any()).copied().unwrap_or(0);
        pods.sort_by(|a, b| compare_for_deletion(a, r(a), b, r(b)));
    }
    pods.truncate(count);
    pods
}

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

/// Sets or removes this controller's ownerReference on `candidates` to match `selector`, as
/// upstream's `ControllerRefManager.Claim*`: owned objects that still match are kept, owned
/// objects that no longer match are released, orphans that match are adopted (unless either side
/// is being deleted). Returns the objects the owner now controls; the first API error (after
/// trying every candidate) is returned instead. `can_adopt` is checked once, before the first
/// adoption (upstream's `RecheckDeletionTimestamp`: a fresh read of the owner).
pub async fn claim<K, O, F, Fut>(
    api: &Api<K>,
    owner: &O,
    selector: &LabelSelector,
    candidates: Vec<Arc<K>>,
    cache: &MutationCache<K>,
    can_adopt: F,
) -> Result<Vec<Arc<K>>, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
    O: Resource<DynamicType = ()>,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<bool, kube::Error>>,
{
    let owner_uid = owner.meta().uid.clone().unwrap_or_default();
    let owner_deleting = owner.meta().deletion_timestamp.is_some();
    let owner_ns = owner.meta().namespace.clone();
    let mut can_adopt = Some(can_adopt);
    let mut adopt_allowed = None;
    let mut claimed = Vec::with_capacity(candidates.len());
    let mut first_err = None;
    for obj in candidates {
        let matches = selector.matches(obj.labels());
        match controller_of(obj.meta()) {
            Some(r) if r.uid != owner_uid => continue,
            Some(_) if matches => claimed.push(obj),
            Some(_) => {
                if owner_deleting {
                    continue;
                }
                if let Err(e) = release(api, &obj, &owner_uid, cache).await {
                    first_err.get_or_insert(e);
                }
            }
            None => {
                if owner_deleting
                    || !matches
                    || obj.meta().deletion_timestamp.is_some()
                    || obj.meta().namespace != owner_ns
                {
                    continue;
                }
                if adopt_allowed.is_none()
                    && let Some(check) = can_adopt.take()
                {
                    adopt_allowed = Some(check().await?);
                }
                if adopt_allowed != Some(true) {
                    continue;
                }
                match adopt(api, &obj, controller_ref(owner), cache).await {
                    Ok(Some(adopted)) => claimed.push(Arc::new(adopted)),
                    Ok(None) => {}
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(claimed),
    }
}

async fn adopt<K>(
    api: &Api<K>,
    obj: &K,
    owner: OwnerReference,
    cache: &MutationCache<K>,
) -> Result<Option<K>, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    let mut refs = obj.meta().owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner.uid);
    refs.push(owner);
    let patch = json!({"metadata": {"resourceVersion": obj.meta().resource_version, "ownerReferences": refs}});
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(adopted) => {
            debug!(name = %obj.name_any(), kind = %K::kind(&()), "adopted");
            cache.mutation(adopted.clone());
            Ok(Some(adopted))
        }
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn release<K>(
    api: &Api<K>,
    obj: &K,
    owner_uid: &str,
    cache: &MutationCache<K>,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    let mut refs = obj.meta().owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner_uid);
    let refs = if refs.is_empty() {
        Value::Null
    } else {
        json!(refs)
    };
    let patch = json!({"metadata": {"resourceVersion": obj.meta().resource_version, "ownerReferences": refs}});
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(released) => {
            debug!(name = %obj.name_any(), kind = %K::kind(&()), "released");
            cache.mutation(released);
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
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

/// Records a core/v1 Event about `obj`, with times from the cluster clock (kube-runtime's
/// `Recorder` reads the system clock, so it is not used). Failures are only logged.
pub async fn record_event<K>(
    client: &kube::Client,
    clock: &Clock,
    obj: &K,
    type_: &str,
    reason: &str,
    message: String,
) where
    K: Resource<DynamicType = ()>,
{
    let meta = obj.meta();
    let ns = meta
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let now = clock.now();
    // The clock may stand still (a paused test clock), so a counter keeps names unique.
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let seq = SEQUENCE.fetch_add(1, AtomicOrdering::Relaxed);
    let name = format!(
        "{}.{:x}{seq:04x}",
        meta.name.as_deref().unwrap_or("object"),
        now.timestamp_nanos_opt().unwrap_or_default()
    );
    let event = CoreEvent {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            ..Default::default()
        },
        reason: Some(reason.to_string()),
        message: Some(message),
        type_: Some(type_.to_string()),
        first_timestamp: Some(to_time(now)),
        last_timestamp: Some(to_time(now)),
        count: Some(1),
        source: Some(k8s_openapi::api::core::v1::EventSource {
            component: Some(component_of::<K>()),
            host: None,
        }),
        reporting_component: Some(component_of::<K>()),
        ..Default::default()
    };
    let api: Api<CoreEvent> = Api::namespaced(client.clone(), &ns);
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        debug!(error = %e, reason, "could not record event");
    }
}

fn component_of<K: Resource<DynamicType = ()>>() -> String {
    match K::kind(&()).as_ref() {
        "Deployment" => "deployment-controller".into(),
        "ReplicaSet" => "replicaset-controller".into(),
        other => format!("{}-controller", other.to_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};

    fn pod(name: &str, node: &str, phase: &str, ready: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_string()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn scale_down_deletes_unassigned_then_pending_then_not_ready_first() {
        let pods = vec![
            pod("running-ready", "n1", "Running", true),
            pod("running-not-ready", "n1", "Running", false),
            pod("pending", "n1", "Pending", false),
            pod("unassigned", "", "Pending", false),
        ];
        let picked = pods_to_delete(pods.clone(), &pods, 3);
        let names: Vec<_> = picked.iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["unassigned", "pending", "running-not-ready"]);
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let now = Utc::now();
        let mut p = (*pod("a", "n", "Running", true)).clone();
        if let Some(c) = p.status.as_mut().and_then(|s| s.conditions.as_mut()) {
            c[0].last_transition_time = Some(to_time(now - chrono::Duration::seconds(5)));
        }
        assert!(is_pod_available(&p, 0, now));
        assert!(is_pod_available(&p, 3, now));
        assert!(!is_pod_available(&p, 10, now));
        assert!(until_available(&p, 10, now).is_some());
    }

    #[test]
    fn error_backoff_doubles_and_resets() {
        let b = ErrorBackoff::new(Duration::from_secs(1));
        assert_eq!(b.next_delay("a"), Duration::from_millis(5));
        assert_eq!(b.next_delay("a"), Duration::from_millis(10));
        b.reset(&"a");
        assert_eq!(b.next_delay("a"), Duration::from_millis(5));
    }

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
