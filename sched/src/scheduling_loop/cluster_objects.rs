//! The scheduling loop's caches of the cluster objects other than pods: nodes, claims,
//! volumes, storage classes, disruption budgets and namespaces, kept from their watches, and
//! the volume decisions a pod's delayed claims need on a node.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::watcher::Event;
use tokio::time::Instant;

use super::LoopState;
use crate::snapshot::{NodeChange, object_key};
use crate::volumes::{PodVolumeClaims, VolumeDecisions, claim_key, find_pod_volumes};

/// Where a watch is in its (re)list.
#[derive(Default)]
pub(super) struct ListState {
    /// True once the first list has ended.
    pub(super) synced: bool,
    /// Keys seen since the last `Init`, while a list is in progress.
    pub(super) seen: Option<HashSet<String>>,
}

/// What one watch event asks of the cache it feeds.
pub(super) enum CacheChange<K> {
    /// Nothing yet: a (re)list began.
    None,
    /// Add or replace this object.
    Upsert(K),
    /// A (re)list ended: drop every object whose key is not in the set.
    Retain(HashSet<String>),
    /// Remove this object.
    Remove(K),
}

impl ListState {
    /// Tracks the (re)list that `event` is part of, keying objects with `key`, and says what
    /// the cache must do.
    pub(super) fn observe<K>(
        &mut self,
        event: Event<K>,
        key: impl Fn(&K) -> String,
    ) -> CacheChange<K> {
        match event {
            Event::Init => {
                self.seen = Some(HashSet::new());
                CacheChange::None
            }
            Event::InitApply(k) | Event::Apply(k) => {
                if let Some(seen) = &mut self.seen {
                    seen.insert(key(&k));
                }
                CacheChange::Upsert(k)
            }
            Event::InitDone => {
                self.synced = true;
                CacheChange::Retain(self.seen.take().unwrap_or_default())
            }
            Event::Delete(k) => CacheChange::Remove(k),
        }
    }
}

/// The name of a cluster-scoped object, which keys it.
fn name_of<K: kube::Resource>(k: &K) -> String {
    k.meta().name.clone().unwrap_or_default()
}

impl LoopState {
    /// A node watch event: keeps the snapshot's nodes as the API server has them.
    pub(super) fn on_node_event(&mut self, event: Event<Node>) {
        match event {
            Event::Init => self.nodes.seen = Some(HashSet::new()),
            Event::InitApply(node) => {
                if let Some(seen) = &mut self.nodes.seen {
                    seen.insert(node.metadata.name.clone().unwrap_or_default());
                }
                self.on_node(node);
            }
            Event::InitDone => {
                let seen = self.nodes.seen.take().unwrap_or_default();
                let gone: Vec<String> = self
                    .snapshot
                    .nodes()
                    .iter()
                    .map(|n| n.name().to_string())
                    .filter(|n| !seen.contains(n))
                    .collect();
                for name in gone {
                    self.snapshot.remove_node(&name);
                }
                self.nodes.synced = true;
                tracing::debug!(nodes = self.snapshot.num_nodes(), "nodes synced");
            }
            Event::Apply(node) => self.on_node(node),
            Event::Delete(node) => {
                self.snapshot
                    .remove_node(node.metadata.name.as_deref().unwrap_or_default());
            }
        }
    }

    /// A claim changed: pods waiting on it may fit now (upstream's `PvcAdd`/`PvcUpdate`
    /// cluster events).
    pub(super) fn on_claim_event(&mut self, event: Event<PersistentVolumeClaim>) {
        let volumes = self.snapshot.volumes_mut();
        match self.claims.observe(event, claim_key) {
            CacheChange::None => {}
            CacheChange::Upsert(c) => volumes.upsert_claim(c),
            CacheChange::Retain(seen) => volumes.retain_claims(&seen),
            CacheChange::Remove(c) => volumes.remove_claim(&c),
        }
        self.queue.move_all_to_active_or_backoff(Instant::now());
    }

    /// A volume changed (upstream's `PvAdd`/`PvUpdate`).
    pub(super) fn on_volume_event(&mut self, event: Event<PersistentVolume>) {
        let volumes = self.snapshot.volumes_mut();
        match self.volumes.observe(event, name_of) {
            CacheChange::None => {}
            CacheChange::Upsert(v) => volumes.upsert_volume(v),
            CacheChange::Retain(seen) => volumes.retain_volumes(&seen),
            CacheChange::Remove(v) => volumes.remove_volume(&v),
        }
        self.queue.move_all_to_active_or_backoff(Instant::now());
    }

    /// A storage class changed (upstream's `StorageClassAdd`/`Update`).
    pub(super) fn on_class_event(&mut self, event: Event<StorageClass>) {
        let volumes = self.snapshot.volumes_mut();
        match self.classes.observe(event, name_of) {
            CacheChange::None => {}
            CacheChange::Upsert(c) => volumes.upsert_class(c),
            CacheChange::Retain(seen) => volumes.retain_classes(&seen),
            CacheChange::Remove(c) => volumes.remove_class(&c),
        }
        self.queue.move_all_to_active_or_backoff(Instant::now());
    }

    /// A PodDisruptionBudget changed: preemption weighs victims by what budgets allow.
    pub(super) fn on_pdb_event(&mut self, event: Event<PodDisruptionBudget>) {
        match self.pdbs.observe(event, |p| object_key(&p.metadata)) {
            CacheChange::None => {}
            CacheChange::Upsert(p) => self.snapshot.upsert_pdb(p),
            CacheChange::Retain(seen) => self.snapshot.retain_pdbs(&seen),
            CacheChange::Remove(p) => self.snapshot.remove_pdb(&p),
        }
    }

    /// A namespace's labels changed: pod affinity `namespaceSelector`s may select other pods.
    pub(super) fn on_namespace_event(&mut self, event: Event<Namespace>) {
        let changed = match self.namespaces.observe(event, name_of) {
            CacheChange::None => false,
            CacheChange::Upsert(ns) => {
                let name = name_of(&ns);
                self.snapshot
                    .upsert_namespace(&name, ns.metadata.labels.unwrap_or_default())
            }
            CacheChange::Retain(seen) => {
                self.snapshot.retain_namespaces(&seen);
                false
            }
            CacheChange::Remove(ns) => {
                self.snapshot.remove_namespace(&name_of(&ns));
                false
            }
        };
        if changed && self.namespaces.synced {
            self.queue.move_all_to_active_or_backoff(Instant::now());
        }
    }

    /// What the pod's delayed claims need on `node` (upstream's VolumeBinding Reserve step);
    /// `None` when the pod has none.
    pub(super) fn volume_decisions(&self, pod: &Pod, node: &str) -> Option<VolumeDecisions> {
        let listers = self.snapshot.volumes();
        let claims = PodVolumeClaims::of(pod, listers);
        if claims.delayed.is_empty() {
            return None;
        }
        let info = self.snapshot.node(node)?;
        find_pod_volumes(&claims, info, listers).ok()
    }

    /// A node was added or changed: pods that did not fit may fit now.
    fn on_node(&mut self, node: Node) {
        match self.snapshot.upsert_node(node) {
            NodeChange::Added | NodeChange::Updated => {
                self.queue.move_all_to_active_or_backoff(Instant::now())
            }
            NodeChange::Unchanged => {}
        }
    }
}
