//! Controller ownerReferences and claiming, after upstream's `controller_ref_manager.go`: the
//! controller ref an owner stamps, who controls an object, and adoption and release by selector.

use std::fmt::Debug;
use std::sync::Arc;

use crate::mutation_cache::MutationCache;
use crate::reconcile::is_not_found;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use kybernetes_core::selector::LabelSelector;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
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
