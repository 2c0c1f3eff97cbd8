//! The dependency graph (upstream's `GraphBuilder` and its `uidToNode` map): one node per
//! object, keyed by uid, linked to its owners and its dependents through ownerReferences.
//!
//! The graph changes only through [`Graph::process`], which turns each observed change into
//! work for the `attemptToDelete` and `attemptToOrphan` queues, as upstream's
//! `processGraphChanges` does. An owner that a dependent names but nobody has observed yet
//! becomes a *virtual* node, queued so a worker checks with the API server whether it exists.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The finalizer that makes the collector orphan an owner's dependents.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// The finalizer that holds an owner until its blocking dependents are gone.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// An object's uid, the graph's key.
pub(crate) type Uid = String;

/// Where an object lives: what a worker needs to read or write it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ObjectIdentity {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) namespace: Option<String>,
    pub(crate) name: String,
    pub(crate) uid: Uid,
}

impl std::fmt::Display for ObjectIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(
                f,
                "{}/{} {ns}/{} ({})",
                self.api_version, self.kind, self.name, self.uid
            ),
            None => write!(
                f,
                "{}/{} {} ({})",
                self.api_version, self.kind, self.name, self.uid
            ),
        }
    }
}

/// One object in the graph.
#[derive(Clone, Debug)]
pub(crate) struct GraphNode {
    pub(crate) identity: ObjectIdentity,
    pub(crate) owners: Vec<OwnerReference>,
    pub(crate) dependents: HashSet<Uid>,
    /// The object has a deletionTimestamp.
    pub(crate) being_deleted: bool,
    /// The object has a deletionTimestamp and the `foregroundDeletion` finalizer.
    pub(crate) deleting_dependents: bool,
    /// False for a virtual node: an owner named by a dependent but not seen by a watch.
    pub(crate) observed: bool,
    /// The monitor (watched resource) that reported the object.
    pub(crate) resource: Option<Arc<str>>,
}

/// A change for the graph, from a resource monitor or from a worker.
#[derive(Debug)]
pub(crate) enum GraphEvent {
    /// An object was added or modified.
    Upsert {
        resource: Arc<str>,
        api_version: String,
        kind: String,
        meta: Box<ObjectMeta>,
    },
    /// An object was deleted.
    Delete { uid: Uid },
    /// A monitor relisted its resource: objects it reported before but not now are gone.
    Resynced {
        resource: Arc<str>,
        seen: HashSet<Uid>,
    },
    /// A worker found that `identity` does not exist (any more).
    VirtualDelete { identity: ObjectIdentity },
}

/// The queue items an event produced.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Work {
    pub(crate) attempt_to_delete: Vec<Uid>,
    pub(crate) attempt_to_orphan: Vec<Uid>,
}

/// The owner → dependents graph.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    nodes: HashMap<Uid, GraphNode>,
}

/// Tells whether the resource with this apiVersion and kind is namespaced; `None` if unknown.
pub(crate) type ScopeLookup<'a> = &'a dyn Fn(&str, &str) -> Option<bool>;

fn has_finalizer(meta: &ObjectMeta, f: &str) -> bool {
    meta.finalizers
        .as_ref()
        .is_some_and(|fs| fs.iter().any(|x| x == f))
}

/// Whether an ownerReference agrees with the owner the graph knows under its uid: same group,
/// kind and name, and for a namespaced owner the dependent's namespace (upstream
/// `hasPotentiallyInvalidOwnerReference`).
fn reference_matches(owner: &OwnerReference, node: &GraphNode, dependent: &ObjectIdentity) -> bool {
    let group = |api_version: &str| {
        api_version
            .split_once('/')
            .map(|(g, _)| g.to_string())
            .unwrap_or_default()
    };
    let coordinates = group(&owner.api_version) == group(&node.identity.api_version)
        && owner.kind == node.identity.kind
        && owner.name == node.identity.name;
    let namespace = match &node.identity.namespace {
        Some(ns) => Some(ns) == dependent.namespace.as_ref(),
        // A virtual cluster-scoped guess may really be a namespaced owner (upstream #98040).
        None => node.observed || dependent.namespace.is_none(),
    };
    coordinates && namespace
}

impl Graph {
    /// The node of `uid`.
    pub(crate) fn node(&self, uid: &str) -> Option<&GraphNode> {
        self.nodes.get(uid)
    }

    /// How many nodes the graph holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The dependents of `uid` whose ownerReference to it has `blockOwnerDeletion: true`,
    /// each with whether it is itself deleting its dependents.
    pub(crate) fn blocking_dependents(&self, uid: &str) -> Vec<(Uid, bool)> {
        let Some(node) = self.nodes.get(uid) else {
            return Vec::new();
        };
        node.dependents
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .filter(|d| {
                d.owners
                    .iter()
                    .any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
            })
            .map(|d| (d.identity.uid.clone(), d.deleting_dependents))
            .collect()
    }

    /// The identities of the dependents of `uid`.
    pub(crate) fn dependents(&self, uid: &str) -> Vec<ObjectIdentity> {
        let Some(node) = self.nodes.get(uid) else {
            return Vec::new();
        };
        node.dependents
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .map(|d| d.identity.clone())
            .collect()
    }

    /// Whether any dependent of `uid` is deleting its own dependents (a possible cycle).
    pub(crate) fn has_dependent_deleting_dependents(&self, uid: &str) -> bool {
        let Some(node) = self.nodes.get(uid) else {
            return false;
        };
        node.dependents
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .any(|d| d.deleting_dependents)
    }

    /// Applies one event and returns the work it creates (upstream `processGraphChanges`).
    pub(crate) fn process(&mut self, event: GraphEvent, scope: ScopeLookup<'_>) -> Work {
        let mut work = Work::default();
        match event {
            GraphEvent::Upsert {
                resource,
                api_version,
                kind,
                meta,
            } => self.upsert(resource, api_version, kind, &meta, scope, &mut work),
            GraphEvent::Delete { uid } => self.remove(&uid, &mut work),
            GraphEvent::Resynced { resource, seen } => {
                let gone: Vec<Uid> = self
                    .nodes
                    .values()
                    .filter(|n| {
                        n.observed
                            && n.resource.as_ref() == Some(&resource)
                            && !seen.contains(&n.identity.uid)
                    })
                    .map(|n| n.identity.uid.clone())
                    .collect();
                for uid in gone {
                    self.remove(&uid, &mut work);
                }
            }
            GraphEvent::VirtualDelete { identity } => match self.nodes.get(&identity.uid) {
                Some(n) if !n.observed || n.identity == identity => {
                    self.remove(&identity.uid, &mut work)
                }
                // An observed object disagrees with the coordinates that were found absent: let
                // its dependents check their own references again.
                Some(n) => work.attempt_to_delete.extend(n.dependents.iter().cloned()),
                None => {}
            },
        }
        work
    }

    fn upsert(
        &mut self,
        resource: Arc<str>,
        api_version: String,
        kind: String,
        meta: &ObjectMeta,
        scope: ScopeLookup<'_>,
        work: &mut Work,
    ) {
        let Some(uid) = meta.uid.clone().filter(|u| !u.is_empty()) else {
            return;
        };
        let identity = ObjectIdentity {
            api_version,
            kind,
            namespace: meta.namespace.clone().filter(|n| !n.is_empty()),
            name: meta.name.clone().unwrap_or_default(),
            uid: uid.clone(),
        };
        let owners = meta.owner_references.clone().unwrap_or_default();
        let being_deleted = meta.deletion_timestamp.is_some();
        let deleting_dependents = being_deleted && has_finalizer(meta, FOREGROUND_FINALIZER);
        let orphaning = being_deleted && has_finalizer(meta, ORPHAN_FINALIZER);

        let was_deleting_dependents = match self.nodes.get_mut(&uid) {
            None => {
                self.nodes.insert(
                    uid.clone(),
                    GraphNode {
                        identity: identity.clone(),
                        owners: owners.clone(),
                        dependents: HashSet::new(),
                        being_deleted,
                        deleting_dependents,
                        observed: true,
                        resource: Some(resource),
                    },
                );
                self.add_dependent_to_owners(&identity, &owners, scope, work);
                false
            }
            Some(node) => {
                let was = node.deleting_dependents;
                if !node.observed && node.identity != identity {
                    // Dependents guessed other coordinates for this owner: let them recheck.
                    work.attempt_to_delete
                        .extend(node.dependents.iter().cloned());
                }
                node.observed = true;
                node.identity = identity.clone();
                node.resource = Some(resource);
                node.being_deleted = being_deleted;
                node.deleting_dependents = deleting_dependents;
                let old = std::mem::replace(&mut node.owners, owners.clone());
                if old != owners {
                    let removed_or_changed: Vec<OwnerReference> = old
                        .iter()
                        .filter(|o| !owners.contains(o))
                        .cloned()
                        .collect();
                    let added: Vec<OwnerReference> = owners
                        .iter()
                        .filter(|o| !old.iter().any(|x| x.uid == o.uid))
                        .cloned()
                        .collect();
                    let kept: HashSet<&str> = owners.iter().map(|o| o.uid.as_str()).collect();
                    let removed: Vec<OwnerReference> = removed_or_changed
                        .iter()
                        .filter(|o| !kept.contains(o.uid.as_str()))
                        .cloned()
                        .collect();
                    self.remove_dependent_from_owners(&uid, &removed, work);
                    // An owner waiting for its dependents may be unblocked by a changed reference.
                    for o in removed_or_changed
                        .iter()
                        .filter(|o| kept.contains(o.uid.as_str()))
                    {
                        if self
                            .nodes
                            .get(&o.uid)
                            .is_some_and(|n| n.deleting_dependents)
                        {
                            work.attempt_to_delete.push(o.uid.clone());
                        }
                    }
                    self.add_dependent_to_owners(&identity, &added, scope, work);
                }
                was
            }
        };
        if orphaning {
            work.attempt_to_orphan.push(uid.clone());
        }
        if deleting_dependents {
            if !was_deleting_dependents && let Some(node) = self.nodes.get(&uid) {
                work.attempt_to_delete
                    .extend(node.dependents.iter().cloned());
            }
            work.attempt_to_delete.push(uid);
        }
    }

    /// Links a dependent to its owners, creating virtual nodes for owners not seen yet.
    fn add_dependent_to_owners(
        &mut self,
        dependent: &ObjectIdentity,
        owners: &[OwnerReference],
        scope: ScopeLookup<'_>,
        work: &mut Work,
    ) {
        for owner in owners {
            match self.nodes.get_mut(&owner.uid) {
                Some(node) => {
                    node.dependents.insert(dependent.uid.clone());
                    if node.deleting_dependents || !reference_matches(owner, node, dependent) {
                        // A new dependent of an owner being deleted in the foreground, or a
                        // reference that may be invalid (another namespace, other
                        // coordinates): let a worker check it against the API server.
                        work.attempt_to_delete.push(dependent.uid.clone());
                    }
                }
                None => {
                    // Cluster-scoped owners have no namespace; namespaced ones can only own
                    // dependents in their own namespace.
                    let namespace = match scope(&owner.api_version, &owner.kind) {
                        Some(false) => None,
                        _ => dependent.namespace.clone(),
                    };
                    let identity = ObjectIdentity {
                        api_version: owner.api_version.clone(),
                        kind: owner.kind.clone(),
                        namespace,
                        name: owner.name.clone(),
                        uid: owner.uid.clone(),
                    };
                    self.nodes.insert(
                        owner.uid.clone(),
                        GraphNode {
                            identity,
                            owners: Vec::new(),
                            dependents: HashSet::from([dependent.uid.clone()]),
                            being_deleted: false,
                            deleting_dependents: false,
                            observed: false,
                            resource: None,
                        },
                    );
                    work.attempt_to_delete.push(owner.uid.clone());
                }
            }
        }
    }

    fn remove_dependent_from_owners(
        &mut self,
        dependent: &str,
        owners: &[OwnerReference],
        work: &mut Work,
    ) {
        for owner in owners {
            let Some(node) = self.nodes.get_mut(&owner.uid) else {
                continue;
            };
            node.dependents.remove(dependent);
            if node.deleting_dependents {
                work.attempt_to_delete.push(owner.uid.clone());
            }
            if !node.observed && node.dependents.is_empty() {
                self.nodes.remove(&owner.uid);
            }
        }
    }

    /// Removes a node: its owners may now be unblocked, its dependents may now be garbage.
    fn remove(&mut self, uid: &str, work: &mut Work) {
        let Some(node) = self.nodes.remove(uid) else {
            return;
        };
        self.remove_dependent_from_owners(uid, &node.owners, work);
        work.attempt_to_delete.extend(node.dependents);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, uid: &str, owners: &[(&str, &str, bool)]) -> Box<ObjectMeta> {
        Box::new(ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(uid.into()),
            owner_references: Some(
                owners
                    .iter()
                    .map(|(n, u, block)| OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "ReplicaSet".into(),
                        name: n.to_string(),
                        uid: u.to_string(),
                        block_owner_deletion: Some(*block),
                        controller: Some(true),
                    })
                    .collect(),
            )
            .filter(|v: &Vec<_>| !v.is_empty()),
            ..Default::default()
        })
    }

    fn upsert(kind: &str, m: Box<ObjectMeta>) -> GraphEvent {
        let api_version = if kind == "ReplicaSet" {
            "apps/v1"
        } else {
            "v1"
        };
        GraphEvent::Upsert {
            resource: Arc::from(kind),
            api_version: api_version.into(),
            kind: kind.into(),
            meta: m,
        }
    }

    const NAMESPACED: ScopeLookup<'static> = &|_, _| Some(true);

    #[test]
    fn an_unseen_owner_becomes_a_virtual_node_queued_for_verification() {
        let mut g = Graph::default();
        let w = g.process(
            upsert("Pod", meta("p", "p1", &[("rs", "rs1", true)])),
            NAMESPACED,
        );
        assert_eq!(w.attempt_to_delete, vec!["rs1".to_string()]);
        assert!(!g.node("rs1").map(|n| n.observed).unwrap_or(true));
        let w = g.process(upsert("ReplicaSet", meta("rs", "rs1", &[])), NAMESPACED);
        assert_eq!(w, Work::default());
        assert!(
            g.node("rs1")
                .is_some_and(|n| n.observed && n.dependents.contains("p1"))
        );
    }

    #[test]
    fn deleting_an_owner_queues_its_dependents() {
        let mut g = Graph::default();
        g.process(upsert("ReplicaSet", meta("rs", "rs1", &[])), NAMESPACED);
        g.process(
            upsert("Pod", meta("a", "p1", &[("rs", "rs1", true)])),
            NAMESPACED,
        );
        g.process(
            upsert("Pod", meta("b", "p2", &[("rs", "rs1", false)])),
            NAMESPACED,
        );
        let mut w = g.process(GraphEvent::Delete { uid: "rs1".into() }, NAMESPACED);
        w.attempt_to_delete.sort();
        assert_eq!(
            w.attempt_to_delete,
            vec!["p1".to_string(), "p2".to_string()]
        );
    }

    #[test]
    fn only_dependents_with_block_owner_deletion_block() {
        let mut g = Graph::default();
        g.process(upsert("ReplicaSet", meta("rs", "rs1", &[])), NAMESPACED);
        g.process(
            upsert("Pod", meta("a", "p1", &[("rs", "rs1", true)])),
            NAMESPACED,
        );
        g.process(
            upsert("Pod", meta("b", "p2", &[("rs", "rs1", false)])),
            NAMESPACED,
        );
        assert_eq!(
            g.blocking_dependents("rs1"),
            vec![("p1".to_string(), false)]
        );
    }

    #[test]
    fn a_foreground_deletion_queues_the_owner_and_its_dependents() {
        let mut g = Graph::default();
        g.process(upsert("ReplicaSet", meta("rs", "rs1", &[])), NAMESPACED);
        g.process(
            upsert("Pod", meta("a", "p1", &[("rs", "rs1", true)])),
            NAMESPACED,
        );
        let mut m = meta("rs", "rs1", &[]);
        m.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Default::default(),
        ));
        m.finalizers = Some(vec![FOREGROUND_FINALIZER.into()]);
        let w = g.process(upsert("ReplicaSet", m), NAMESPACED);
        assert_eq!(
            w.attempt_to_delete,
            vec!["p1".to_string(), "rs1".to_string()]
        );
        // The dependent's deletion re-queues the waiting owner.
        let w = g.process(GraphEvent::Delete { uid: "p1".into() }, NAMESPACED);
        assert_eq!(w.attempt_to_delete, vec!["rs1".to_string()]);
        assert!(g.blocking_dependents("rs1").is_empty());
    }

    #[test]
    fn a_relist_removes_objects_that_disappeared() {
        let mut g = Graph::default();
        g.process(upsert("ReplicaSet", meta("rs", "rs1", &[])), NAMESPACED);
        g.process(
            upsert("Pod", meta("a", "p1", &[("rs", "rs1", true)])),
            NAMESPACED,
        );
        let w = g.process(
            GraphEvent::Resynced {
                resource: Arc::from("ReplicaSet"),
                seen: HashSet::new(),
            },
            NAMESPACED,
        );
        assert_eq!(w.attempt_to_delete, vec!["p1".to_string()]);
        assert_eq!(g.len(), 1);
    }
}
