//! The scheduling loop's watches of Services, ReplicationControllers, ReplicaSets and
//! StatefulSets, whose selectors PodTopologySpread's system default constraints spread pods
//! over. The four watches are merged into one stream so the loop waits on it as one source.

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ReplicationController, Service};
use kube::Api;
use kube::runtime::watcher::Event;

use super::cluster_objects::{CacheChange, ListState};
use super::{LoopState, watcher};

type WatchError = kube::runtime::watcher::Error;
use crate::snapshot::{OwnerKind, object_key};

/// One object of the four kinds (boxed: they differ much in size).
pub(super) enum SpreadingOwner {
    Service(Box<Service>),
    ReplicationController(Box<ReplicationController>),
    ReplicaSet(Box<ReplicaSet>),
    StatefulSet(Box<StatefulSet>),
}

impl SpreadingOwner {
    fn kind(&self) -> OwnerKind {
        match self {
            SpreadingOwner::Service(_) => OwnerKind::Service,
            SpreadingOwner::ReplicationController(_) => OwnerKind::ReplicationController,
            SpreadingOwner::ReplicaSet(_) => OwnerKind::ReplicaSet,
            SpreadingOwner::StatefulSet(_) => OwnerKind::StatefulSet,
        }
    }

    fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            SpreadingOwner::Service(o) => &o.metadata,
            SpreadingOwner::ReplicationController(o) => &o.metadata,
            SpreadingOwner::ReplicaSet(o) => &o.metadata,
            SpreadingOwner::StatefulSet(o) => &o.metadata,
        }
    }
}

/// The (re)list state of each of the four watches.
#[derive(Default)]
pub(super) struct OwnerLists {
    services: ListState,
    controllers: ListState,
    replica_sets: ListState,
    stateful_sets: ListState,
}

impl OwnerLists {
    fn of(&mut self, kind: OwnerKind) -> &mut ListState {
        match kind {
            OwnerKind::Service => &mut self.services,
            OwnerKind::ReplicationController => &mut self.controllers,
            OwnerKind::ReplicaSet => &mut self.replica_sets,
            OwnerKind::StatefulSet => &mut self.stateful_sets,
        }
    }

    /// Whether every one of the four watches has listed.
    pub(super) fn synced(&self) -> bool {
        self.services.synced
            && self.controllers.synced
            && self.replica_sets.synced
            && self.stateful_sets.synced
    }
}

/// A watch event, tagged with its kind (a (re)list start or end carries no object).
pub(super) type OwnerEvent = (OwnerKind, Event<SpreadingOwner>);

fn tagged<K>(
    kind: OwnerKind,
    wrap: fn(K) -> SpreadingOwner,
) -> impl Fn(Result<Event<K>, WatchError>) -> Result<OwnerEvent, WatchError> {
    move |event| {
        let event = match event? {
            Event::Init => Event::Init,
            Event::InitApply(k) => Event::InitApply(wrap(k)),
            Event::InitDone => Event::InitDone,
            Event::Apply(k) => Event::Apply(wrap(k)),
            Event::Delete(k) => Event::Delete(wrap(k)),
        };
        Ok((kind, event))
    }
}

/// The four watches, merged.
pub(super) fn watch(
    client: &kube::Client,
) -> impl Stream<Item = Result<OwnerEvent, WatchError>> + Send + use<> {
    futures::stream::select_all([
        watcher(Api::<Service>::all(client.clone()))
            .map(tagged(OwnerKind::Service, |o| {
                SpreadingOwner::Service(Box::new(o))
            }))
            .boxed(),
        watcher(Api::<ReplicationController>::all(client.clone()))
            .map(tagged(OwnerKind::ReplicationController, |o| {
                SpreadingOwner::ReplicationController(Box::new(o))
            }))
            .boxed(),
        watcher(Api::<ReplicaSet>::all(client.clone()))
            .map(tagged(OwnerKind::ReplicaSet, |o| {
                SpreadingOwner::ReplicaSet(Box::new(o))
            }))
            .boxed(),
        watcher(Api::<StatefulSet>::all(client.clone()))
            .map(tagged(OwnerKind::StatefulSet, |o| {
                SpreadingOwner::StatefulSet(Box::new(o))
            }))
            .boxed(),
    ])
}

impl LoopState {
    /// A Service or workload controller changed: the system default spreading of the pods it
    /// selects changes with it. Pending pods are not retried for it: default constraints only
    /// score, so they never made a pod unschedulable.
    pub(super) fn on_owner_event(&mut self, (kind, event): OwnerEvent) {
        let change = self
            .owners
            .of(kind)
            .observe(event, |o: &SpreadingOwner| object_key(o.meta()));
        let owners = self.snapshot.spreading_owners_mut();
        match change {
            CacheChange::None => {}
            CacheChange::Upsert(o) => match &o {
                SpreadingOwner::Service(s) => owners.upsert_service(s),
                SpreadingOwner::ReplicationController(rc) => {
                    owners.upsert_replication_controller(rc)
                }
                SpreadingOwner::ReplicaSet(rs) => owners.upsert_replica_set(rs),
                SpreadingOwner::StatefulSet(ss) => owners.upsert_stateful_set(ss),
            },
            CacheChange::Retain(seen) => owners.retain(kind, &seen),
            CacheChange::Remove(o) => {
                let meta = o.meta();
                owners.remove(
                    o.kind(),
                    meta.namespace.as_deref().unwrap_or_default(),
                    meta.name.as_deref().unwrap_or_default(),
                );
            }
        }
    }
}
