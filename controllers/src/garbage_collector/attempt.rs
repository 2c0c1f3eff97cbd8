//! The collector's workers: `attemptToDeleteItem` (delete garbage, drop dangling references,
//! release owners deleted in the foreground) and `orphanDependents` (release an owner deleted
//! with the Orphan policy), with the same decisions as upstream's `garbagecollector.go`.
//!
//! Every decision is made on the object read live from the API server, never on the graph
//! alone, and every write carries a uid or resourceVersion precondition: a worker racing with
//! another writer gets a conflict and tries again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::{Client, Error as KubeError};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::Error;
use super::graph::{
    FOREGROUND_FINALIZER, Graph, GraphEvent, GraphNode, ORPHAN_FINALIZER, ObjectIdentity, Uid,
};
use super::queue::WorkQueue;
use super::resources::{ResourceEntry, ResourceTable};

/// How many absent owners are remembered before the cache starts over (upstream keeps 500).
const ABSENT_OWNER_CACHE_SIZE: usize = 4096;

/// What a worker does with an item after processing it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Finished.
    Done,
    /// Process it again later (a conflict, or a virtual node not observed yet).
    Requeue,
}

/// The state the workers share.
pub(crate) struct Collector {
    pub(crate) client: Client,
    pub(crate) graph: Arc<Mutex<Graph>>,
    pub(crate) resources: Arc<RwLock<ResourceTable>>,
    pub(crate) events: mpsc::Sender<GraphEvent>,
    pub(crate) attempt_to_delete: Arc<WorkQueue<Uid>>,
    pub(crate) attempt_to_orphan: Arc<WorkQueue<Uid>>,
    /// Owners known not to exist, as (namespace, uid). Uids are never reused, so an entry
    /// never goes stale.
    pub(crate) absent_owners: Mutex<HashSet<(Option<String>, Uid)>>,
}

/// How an ownerReference of a dependent resolves (upstream `classifyReferences`).
#[derive(Default)]
struct Classified {
    solid: Vec<OwnerReference>,
    dangling: Vec<OwnerReference>,
    waiting_for_dependents_deletion: Vec<OwnerReference>,
}

fn has_finalizer(meta: &ObjectMeta, f: &str) -> bool {
    meta.finalizers
        .as_ref()
        .is_some_and(|fs| fs.iter().any(|x| x == f))
}

fn is_not_found(e: &KubeError) -> bool {
    matches!(e, KubeError::Api(s) if s.code == 404)
}

fn is_conflict(e: &KubeError) -> bool {
    matches!(e, KubeError::Api(s) if s.code == 409)
}

impl Collector {
    fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn resource(&self, api_version: &str, kind: &str) -> Result<ResourceEntry, Error> {
        let table = self.resources.read().unwrap_or_else(|p| p.into_inner());
        table
            .lookup(api_version, kind)
            .cloned()
            .ok_or_else(|| Error::UnknownKind {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
            })
    }

    fn api(&self, entry: &ResourceEntry, namespace: Option<&str>) -> Api<DynamicObject> {
        match (entry.namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &entry.resource),
            _ => Api::all_with(self.client.clone(), &entry.resource),
        }
    }

    /// The live metadata of `identity`, or `None` if it is gone or was replaced (other uid).
    async fn get_live(&self, identity: &ObjectIdentity) -> Result<Option<ObjectMeta>, Error> {
        let entry = self.resource(&identity.api_version, &identity.kind)?;
        let api = self.api(&entry, identity.namespace.as_deref());
        match api
            .get_metadata_opt(&identity.name)
            .await
            .map_err(Error::Api)?
        {
            Some(o) if o.metadata.uid.as_deref() == Some(identity.uid.as_str()) => {
                Ok(Some(o.metadata))
            }
            _ => Ok(None),
        }
    }

    async fn enqueue_virtual_delete(&self, identity: ObjectIdentity) {
        debug!(object = %identity, "object is absent; removing it from the graph");
        let _ = self
            .events
            .send(GraphEvent::VirtualDelete { identity })
            .await;
    }

    /// Processes one `attemptToDelete` item.
    pub(crate) async fn attempt_to_delete(&self, uid: &str) -> Result<Outcome, Error> {
        let Some(item) = self.graph().node(uid).cloned() else {
            return Ok(Outcome::Done);
        };
        if item.being_deleted && !item.deleting_dependents {
            return Ok(Outcome::Done);
        }
        let Some(latest) = self.get_live(&item.identity).await? else {
            self.enqueue_virtual_delete(item.identity).await;
            return Ok(Outcome::Done);
        };
        let outcome = if item.deleting_dependents {
            self.process_deleting_dependents(&item, &latest).await?
        } else {
            self.delete_if_garbage(&item, &latest).await?
        };
        // A virtual node is checked again until a watch reports it (issue 56121 upstream).
        Ok(if outcome == Outcome::Done && !item.observed {
            Outcome::Requeue
        } else {
            outcome
        })
    }

    async fn delete_if_garbage(
        &self,
        item: &GraphNode,
        latest: &ObjectMeta,
    ) -> Result<Outcome, Error> {
        let owners = latest.owner_references.clone().unwrap_or_default();
        if owners.is_empty() {
            return Ok(Outcome::Done);
        }
        let c = self.classify(&item.identity, &owners).await?;
        let has_dependents = self
            .graph()
            .node(&item.identity.uid)
            .is_some_and(|n| !n.dependents.is_empty());
        if !c.solid.is_empty() {
            if c.dangling.is_empty() && c.waiting_for_dependents_deletion.is_empty() {
                return Ok(Outcome::Done);
            }
            // Only the references to owners that are gone or going away are dropped.
            let drop: HashSet<&str> = c
                .dangling
                .iter()
                .chain(&c.waiting_for_dependents_deletion)
                .map(|o| o.uid.as_str())
                .collect();
            let kept: Vec<OwnerReference> = owners
                .iter()
                .filter(|o| !drop.contains(o.uid.as_str()))
                .cloned()
                .collect();
            debug!(object = %item.identity, "removing dangling ownerReferences");
            return self
                .patch_owner_references(&item.identity, latest, &kept)
                .await;
        }
        let mut resource_version = latest.resource_version.clone();
        let policy = if !c.waiting_for_dependents_deletion.is_empty() && has_dependents {
            if self
                .graph()
                .has_dependent_deleting_dependents(&item.identity.uid)
            {
                // Make the references non-blocking so an owner and this dependent cannot wait
                // for each other forever.
                let waiting: HashSet<&str> = c
                    .waiting_for_dependents_deletion
                    .iter()
                    .map(|o| o.uid.as_str())
                    .collect();
                let unblocked: Vec<OwnerReference> = owners
                    .iter()
                    .map(|o| {
                        let mut o = o.clone();
                        if waiting.contains(o.uid.as_str()) && o.block_owner_deletion == Some(true)
                        {
                            o.block_owner_deletion = Some(false);
                        }
                        o
                    })
                    .collect();
                match self
                    .patch_owner_references_returning(&item.identity, latest, &unblocked)
                    .await?
                {
                    Some(rv) => resource_version = Some(rv),
                    None => return Ok(Outcome::Requeue),
                }
            }
            PropagationPolicy::Foreground
        } else if has_finalizer(latest, ORPHAN_FINALIZER) {
            PropagationPolicy::Orphan
        } else if has_finalizer(latest, FOREGROUND_FINALIZER) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        self.delete_object(&item.identity, resource_version, policy)
            .await
    }

    /// Sorts a dependent's ownerReferences into solid, dangling and waiting owners, reading
    /// each owner live and checking its uid.
    async fn classify(
        &self,
        dependent: &ObjectIdentity,
        owners: &[OwnerReference],
    ) -> Result<Classified, Error> {
        let mut c = Classified::default();
        for owner in owners {
            let entry = self.resource(&owner.api_version, &owner.kind)?;
            let namespace = if entry.namespaced {
                dependent.namespace.clone()
            } else {
                None
            };
            if entry.namespaced && namespace.is_none() {
                // A cluster-scoped object cannot be owned by a namespaced one.
                c.dangling.push(owner.clone());
                continue;
            }
            let key = (namespace.clone(), owner.uid.clone());
            if self
                .absent_owners
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&key)
            {
                c.dangling.push(owner.clone());
                continue;
            }
            let live = self
                .get_live(&ObjectIdentity {
                    api_version: owner.api_version.clone(),
                    kind: owner.kind.clone(),
                    namespace,
                    name: owner.name.clone(),
                    uid: owner.uid.clone(),
                })
                .await?;
            match live {
                None => {
                    let mut absent = self.absent_owners.lock().unwrap_or_else(|p| p.into_inner());
                    if absent.len() >= ABSENT_OWNER_CACHE_SIZE {
                        absent.clear();
                    }
                    absent.insert(key);
                    c.dangling.push(owner.clone());
                }
                Some(m)
                    if m.deletion_timestamp.is_some()
                        && has_finalizer(&m, FOREGROUND_FINALIZER) =>
                {
                    c.waiting_for_dependents_deletion.push(owner.clone())
                }
                Some(_) => c.solid.push(owner.clone()),
            }
        }
        Ok(c)
    }

    /// An owner deleted in the foreground: release it once no blocking dependent is left,
    /// otherwise make sure every blocking dependent is being deleted.
    async fn process_deleting_dependents(
        &self,
        item: &GraphNode,
        latest: &ObjectMeta,
    ) -> Result<Outcome, Error> {
        if !has_finalizer(latest, FOREGROUND_FINALIZER) {
            return Ok(Outcome::Done);
        }
        let blocking = self.graph().blocking_dependents(&item.identity.uid);
        if blocking.is_empty() {
            info!(object = %item.identity, "all blocking dependents are gone; removing the foregroundDeletion finalizer");
            return self
                .remove_finalizer(&item.identity, latest, FOREGROUND_FINALIZER)
                .await;
        }
        for (dependent, deleting_dependents) in blocking {
            if !deleting_dependents {
                self.attempt_to_delete.add(dependent);
            }
        }
        Ok(Outcome::Done)
    }

    /// Processes one `attemptToOrphan` item: drops the owner's references from its dependents,
    /// then removes the `orphan` finalizer.
    pub(crate) async fn attempt_to_orphan(&self, uid: &str) -> Result<Outcome, Error> {
        let Some(identity) = self.graph().node(uid).map(|n| n.identity.clone()) else {
            return Ok(Outcome::Done);
        };
        let Some(latest) = self.get_live(&identity).await? else {
            return Ok(Outcome::Done);
        };
        if latest.deletion_timestamp.is_none() || !has_finalizer(&latest, ORPHAN_FINALIZER) {
            return Ok(Outcome::Done);
        }
        let dependents = self.graph().dependents(uid);
        for dependent in dependents {
            if self.orphan_dependent(&dependent, uid).await? == Outcome::Requeue {
                return Ok(Outcome::Requeue);
            }
        }
        info!(object = %identity, "dependents orphaned; removing the orphan finalizer");
        self.remove_finalizer(&identity, &latest, ORPHAN_FINALIZER)
            .await
    }

    async fn orphan_dependent(
        &self,
        dependent: &ObjectIdentity,
        owner_uid: &str,
    ) -> Result<Outcome, Error> {
        let Some(latest) = self.get_live(dependent).await? else {
            return Ok(Outcome::Done);
        };
        let owners = latest.owner_references.clone().unwrap_or_default();
        if !owners.iter().any(|o| o.uid == owner_uid) {
            return Ok(Outcome::Done);
        }
        let kept: Vec<OwnerReference> = owners.into_iter().filter(|o| o.uid != owner_uid).collect();
        self.patch_owner_references(dependent, &latest, &kept).await
    }

    async fn patch_owner_references(
        &self,
        identity: &ObjectIdentity,
        latest: &ObjectMeta,
        owners: &[OwnerReference],
    ) -> Result<Outcome, Error> {
        Ok(
            match self
                .patch_owner_references_returning(identity, latest, owners)
                .await?
            {
                Some(_) => Outcome::Done,
                None if self.get_live(identity).await?.is_none() => Outcome::Done,
                None => Outcome::Requeue,
            },
        )
    }

    /// Writes `owners` as the object's ownerReferences if it is still at the version read.
    /// Returns the new resourceVersion, or `None` on a conflict or if the object is gone.
    async fn patch_owner_references_returning(
        &self,
        identity: &ObjectIdentity,
        latest: &ObjectMeta,
        owners: &[OwnerReference],
    ) -> Result<Option<String>, Error> {
        let owners = if owners.is_empty() {
            json!(null)
        } else {
            json!(owners)
        };
        let patch = json!({ "metadata": { "resourceVersion": latest.resource_version, "ownerReferences": owners } });
        self.merge_patch(identity, &patch).await
    }

    async fn remove_finalizer(
        &self,
        identity: &ObjectIdentity,
        latest: &ObjectMeta,
        finalizer: &str,
    ) -> Result<Outcome, Error> {
        let kept: Vec<&String> = latest
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != finalizer)
            .collect();
        let patch = json!({ "metadata": { "resourceVersion": latest.resource_version, "finalizers": kept } });
        Ok(match self.merge_patch(identity, &patch).await? {
            Some(_) => Outcome::Done,
            None => Outcome::Requeue,
        })
    }

    /// A JSON merge patch with the resourceVersion precondition it carries; `None` on a
    /// conflict or if the object is gone.
    async fn merge_patch(
        &self,
        identity: &ObjectIdentity,
        patch: &serde_json::Value,
    ) -> Result<Option<String>, Error> {
        let entry = self.resource(&identity.api_version, &identity.kind)?;
        let api = self.api(&entry, identity.namespace.as_deref());
        match api
            .patch(
                &identity.name,
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(o) => Ok(Some(o.metadata.resource_version.unwrap_or_default())),
            Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::Api(e)),
        }
    }

    async fn delete_object(
        &self,
        identity: &ObjectIdentity,
        resource_version: Option<String>,
        policy: PropagationPolicy,
    ) -> Result<Outcome, Error> {
        let entry = self.resource(&identity.api_version, &identity.kind)?;
        let api = self.api(&entry, identity.namespace.as_deref());
        info!(object = %identity, policy = ?policy, "deleting garbage object");
        let params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(identity.uid.clone()),
                resource_version,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&identity.name, &params).await {
            Ok(_) => Ok(Outcome::Done),
            Err(e) if is_not_found(&e) => Ok(Outcome::Done),
            Err(e) if is_conflict(&e) => Ok(Outcome::Requeue),
            Err(e) => Err(Error::Api(e)),
        }
    }
}

/// Runs one worker of `queue`, calling `process` for each item until shutdown.
pub(crate) async fn run_worker<F, Fut>(queue: Arc<WorkQueue<Uid>>, process: F)
where
    F: Fn(Uid) -> Fut,
    Fut: Future<Output = Result<Outcome, Error>>,
{
    while let Some(uid) = queue.get().await {
        match process(uid.clone()).await {
            Ok(Outcome::Done) => queue.forget(&uid),
            Ok(Outcome::Requeue) => queue.add_rate_limited(uid.clone()),
            Err(e) => {
                warn!(uid = %uid, error = %e, "garbage collector failed to process an object; will retry");
                queue.add_rate_limited(uid.clone());
            }
        }
        queue.done(&uid);
    }
}
