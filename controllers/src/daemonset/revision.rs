//! A workload's history as ControllerRevisions (upstream's `constructHistory`, shared by
//! DaemonSets and StatefulSets): one revision per distinct pod template, named
//! `<owner>-<hash>`, whose hash labels the pods as `controller-revision-hash`; revisions beyond
//! `revisionHistoryLimit` that no pod uses are deleted.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::controller_ref::{controller_ref, is_controlled_by};
use crate::deployment::revision::pod_template_hash;
use crate::reconcile::{is_already_exists, is_not_found};

/// The label that names a pod's (and a revision's) template hash.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// The DaemonSet's current template hash (its collision count included).
pub fn current_hash(ds: &DaemonSet) -> String {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
    pod_template_hash(&template, collisions)
}

/// Makes sure the revision for the current template exists (with the highest revision number)
/// and prunes old ones; `live_hashes` are the hashes the DaemonSet's pods still carry.
pub async fn sync_history(
    client: &Client,
    ds: &DaemonSet,
    hash: &str,
    live_hashes: &BTreeSet<String>,
) -> Result<(), kube::Error> {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let limit = ds.spec.as_ref().and_then(|s| s.revision_history_limit);
    sync_owner_history(client, ds, &template, limit, hash, live_hashes).await
}

/// [`sync_history`] for any owner of a pod template (a DaemonSet or a StatefulSet).
pub async fn sync_owner_history<K: Resource<DynamicType = ()>>(
    client: &Client,
    ds: &K,
    template: &PodTemplateSpec,
    revision_history_limit: Option<i32>,
    hash: &str,
    live_hashes: &BTreeSet<String>,
) -> Result<(), kube::Error> {
    let ns = ds.meta().namespace.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let uid = ds.meta().uid.clone().unwrap_or_default();
    let mut owned: Vec<ControllerRevision> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| is_controlled_by(&r.metadata, &uid))
        .collect();
    owned.sort_by_key(|r| r.revision);
    let max = owned.last().map_or(0, |r| r.revision);
    let current = owned
        .iter()
        .find(|r| r.labels().get(REVISION_HASH_LABEL).map(String::as_str) == Some(hash));
    match current {
        Some(r) if r.revision == max => {}
        Some(r) => {
            // A rollback to an older template: it becomes the newest revision again.
            let mut bumped = r.clone();
            bumped.revision = max + 1;
            api.replace(&r.name_any(), &PostParams::default(), &bumped)
                .await?;
        }
        None => {
            let revision = new_revision(ds, template, hash, max + 1);
            match api.create(&PostParams::default(), &revision).await {
                Ok(_) => {}
                Err(e) if is_already_exists(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let limit = revision_history_limit.unwrap_or(10).max(0) as usize;
    let old: Vec<&ControllerRevision> = owned
        .iter()
        .filter(|r| {
            r.labels()
                .get(REVISION_HASH_LABEL)
                .is_none_or(|h| h != hash && !live_hashes.contains(h))
        })
        .collect();
    let surplus = old.len().saturating_sub(limit);
    for r in old.into_iter().take(surplus) {
        match api.delete(&r.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The ControllerRevision of the current template: its data is the patch that restores the
/// template, as upstream's `getPatch`.
fn new_revision<K: Resource<DynamicType = ()>>(
    owner: &K,
    template: &PodTemplateSpec,
    hash: &str,
    revision: i64,
) -> ControllerRevision {
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let mut template = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(t) = template.as_object_mut() {
        t.insert("$patch".into(), json!("replace"));
    }
    labels.insert(REVISION_HASH_LABEL.into(), hash.into());
    let meta = owner.meta();
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", meta.name.clone().unwrap_or_default())),
            namespace: meta.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![controller_ref(owner)]),
            ..Default::default()
        },
        data: Some(RawExtension(json!({"spec": {"template": template}}))),
        revision,
    }
}
