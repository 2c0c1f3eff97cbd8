//! One StatefulSet reconcile (upstream's `updateStatefulSet` in `stateful_set_control.go`):
//! record the template as a revision, create missing pods (and their claims) in ordinal order,
//! remove condemned pods from the highest ordinal, roll out the update revision, write status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::{Context, Error, Result, api_err};
use crate::controller_ref::{controller_ref, is_controlled_by};
use crate::daemonset::revision::{REVISION_HASH_LABEL, sync_owner_history};
use crate::deployment::revision::pod_template_hash;
use crate::pod_state::{is_pod_available, is_pod_ready};
use crate::reconcile::{is_already_exists, is_not_found};

/// The label with a StatefulSet pod's name (for per-pod Services).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label with a StatefulSet pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn running_and_ready(p: &Pod) -> bool {
    phase(p) == "Running" && is_pod_ready(p) && p.metadata.deletion_timestamp.is_none()
}

fn revision_of(p: &Pod) -> Option<&str> {
    p.labels().get(REVISION_HASH_LABEL).map(String::as_str)
}

/// The ordinal in `<set>-<ordinal>`, if the pod's name has that form.
fn ordinal(set: &str, pod: &Pod) -> Option<i32> {
    pod.name_any()
        .strip_prefix(set)?
        .strip_prefix('-')?
        .parse()
        .ok()
        .filter(|o: &i32| *o >= 0)
}

/// Upstream's `updateStatefulSet`.
pub(crate) async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Context>) -> Result<Action> {
    ctx.pods
        .wait_until_ready()
        .await
        .map_err(|_| Error::InformerStopped)?;
    let set = ctx.set_writes.get(set.clone()).unwrap_or(set);
    let key = ObjectRef::from_obj(set.as_ref());
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = set.name_any();
    let ns = set.namespace().unwrap_or_default();
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let collisions = set.status.as_ref().and_then(|s| s.collision_count);
    let update_revision = format!("{name}-{}", pod_template_hash(&spec.template, collisions));
    let hash = update_revision
        .trim_start_matches(&format!("{name}-"))
        .to_string();

    let owned = ctx.pod_writes.list(&ctx.pods, |p| {
        p.metadata.namespace.as_deref() == Some(ns.as_str()) && is_controlled_by(&p.metadata, &uid)
    });
    let live_hashes: BTreeSet<String> = owned
        .iter()
        .filter_map(|p| revision_of(p).map(String::from))
        .collect();
    sync_owner_history(
        &ctx.client,
        set.as_ref(),
        &spec.template,
        spec.revision_history_limit,
        &hash,
        &live_hashes,
    )
    .await
    .map_err(api_err("sync controller revisions"))?;

    let by_ordinal: BTreeMap<i32, Arc<Pod>> = owned
        .iter()
        .filter_map(|p| Some((ordinal(&name, p)?, p.clone())))
        .collect();
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let mut events: Vec<(&str, &str, String)> = Vec::new();
    let result = step(
        &ctx,
        &set,
        &pods_api,
        &by_ordinal,
        replicas,
        parallel,
        &hash,
        &mut events,
    )
    .await;

    let owned_now = ctx.pod_writes.list(&ctx.pods, |p| {
        p.metadata.namespace.as_deref() == Some(ns.as_str()) && is_controlled_by(&p.metadata, &uid)
    });
    let status = calculate_status(&set, &owned_now, &update_revision, &hash, ctx.clock.now());
    update_status(&ctx, &set, status).await?;
    for (type_, reason, message) in events {
        ctx.events
            .record(set.as_ref(), type_, reason, message)
            .await;
    }
    result?;
    ctx.backoff.reset(&key);
    Ok(Action::await_change())
}

/// One step of upstream's monotonic update: failed pods are replaced, missing pods created
/// (in order unless `Parallel`), condemned pods deleted from the highest ordinal, then one pod
/// of an old revision replaced.
#[allow(clippy::too_many_arguments)]
async fn step(
    ctx: &Context,
    set: &StatefulSet,
    api: &Api<Pod>,
    by_ordinal: &BTreeMap<i32, Arc<Pod>>,
    replicas: i32,
    parallel: bool,
    hash: &str,
    events: &mut Vec<(&'static str, &'static str, String)>,
) -> Result<()> {
    // Failed pods are deleted, to be recreated with the same name.
    for p in by_ordinal.values() {
        if phase(p) == "Failed" && p.metadata.deletion_timestamp.is_none() {
            delete_pod(ctx, api, p, events).await?;
            if !parallel {
                return Ok(());
            }
        }
    }
    for i in 0..replicas {
        match by_ordinal.get(&i) {
            None => {
                create_claims(ctx, set, i).await?;
                create_pod(ctx, api, set, i, hash, events).await?;
                if !parallel {
                    return Ok(());
                }
            }
            Some(p) if !parallel && !running_and_ready(p) => return Ok(()),
            Some(_) => {}
        }
    }
    let condemned: Vec<&Arc<Pod>> = by_ordinal
        .range(replicas..)
        .rev()
        .map(|(_, p)| p)
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    if by_ordinal
        .range(replicas..)
        .any(|(_, p)| p.metadata.deletion_timestamp.is_some())
        && !parallel
    {
        return Ok(());
    }
    for p in &condemned {
        delete_pod(ctx, api, p, events).await?;
        if !parallel {
            return Ok(());
        }
    }
    if !condemned.is_empty() {
        return Ok(());
    }
    let strategy = set.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    if strategy
        .and_then(|s| s.type_.as_deref())
        .is_some_and(|t| t == "OnDelete")
    {
        return Ok(());
    }
    let partition = strategy
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    let all_ready = (0..replicas).all(|i| by_ordinal.get(&i).is_some_and(|p| running_and_ready(p)));
    if !all_ready {
        return Ok(());
    }
    if let Some(p) = (partition..replicas)
        .rev()
        .filter_map(|i| by_ordinal.get(&i))
        .find(|p| revision_of(p) != Some(hash))
    {
        delete_pod(ctx, api, p, events).await?;
    }
    Ok(())
}

/// The claim name of template `claim` for pod `<set>-<ordinal>`.
fn claim_name(claim: &str, set: &str, ordinal: i32) -> String {
    format!("{claim}-{set}-{ordinal}")
}

/// Creates the pod's PersistentVolumeClaims that do not exist yet.
async fn create_claims(ctx: &Context, set: &StatefulSet, ordinal: i32) -> Result<()> {
    let templates = set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.clone())
        .unwrap_or_default();
    let ns = set.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let selector_labels = set
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    for t in templates {
        let tmeta = t.metadata.clone();
        let mut labels = tmeta.labels.unwrap_or_default();
        labels.extend(selector_labels.clone());
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(claim_name(
                    tmeta.name.as_deref().unwrap_or_default(),
                    &set.name_any(),
                    ordinal,
                )),
                namespace: Some(ns.clone()),
                labels: Some(labels),
                annotations: tmeta.annotations,
                ..Default::default()
            },
            spec: t.spec.clone(),
            status: None,
        };
        match api.create(&PostParams::default(), &claim).await {
            Ok(_) => {}
            Err(e) if is_already_exists(&e) => {}
            Err(e) => return Err(api_err("create persistent volume claim")(e)),
        }
    }
    Ok(())
}

/// Upstream's `newVersionedStatefulSetPod`: the template with the stable identity and claims.
async fn create_pod(
    ctx: &Context,
    api: &Api<Pod>,
    set: &StatefulSet,
    ordinal: i32,
    hash: &str,
    events: &mut Vec<(&'static str, &'static str, String)>,
) -> Result<()> {
    let spec = set.spec.clone().unwrap_or_default();
    let name = format!("{}-{ordinal}", set.name_any());
    let tmeta = spec.template.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), hash.into());
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    let mut pod_spec = spec.template.spec.clone().unwrap_or_default();
    pod_spec.hostname = Some(name.clone());
    pod_spec.subdomain = spec.service_name.clone().filter(|s| !s.is_empty());
    let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
    for t in spec.volume_claim_templates.iter().flatten() {
        let claim = t.metadata.name.clone().unwrap_or_default();
        volumes.retain(|v| v.name != claim);
        volumes.push(Volume {
            name: claim.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&claim, &set.name_any(), ordinal),
                read_only: None,
            }),
            ..Default::default()
        });
    }
    if volumes.is_empty() {
        pod_spec.volumes = None;
    }
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: set.namespace(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            owner_references: Some(vec![controller_ref(set)]),
            ..Default::default()
        },
        spec: Some(pod_spec),
        status: None,
    };
    match api.create(&PostParams::default(), &pod).await {
        Ok(created) => {
            ctx.pod_writes.mutation(created);
            events.push((
                "Normal",
                "SuccessfulCreate",
                format!(
                    "create Pod {name} in StatefulSet {} successful",
                    set.name_any()
                ),
            ));
            Ok(())
        }
        Err(e) => {
            events.push((
                "Warning",
                "FailedCreate",
                format!(
                    "create Pod {name} in StatefulSet {} failed error: {e}",
                    set.name_any()
                ),
            ));
            Err(api_err(format!("create pod {name}"))(e))
        }
    }
}

async fn delete_pod(
    ctx: &Context,
    api: &Api<Pod>,
    pod: &Pod,
    events: &mut Vec<(&'static str, &'static str, String)>,
) -> Result<()> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    let set = crate::controller_ref::controller_of(&pod.metadata)
        .map(|r| r.name.clone())
        .unwrap_or_default();
    match api.delete(&pod.name_any(), &params).await {
        Ok(response) => match response.left() {
            Some(p) if p.metadata.deletion_timestamp.is_some() => ctx.pod_writes.mutation(p),
            _ => ctx.pod_writes.deletion(pod),
        },
        Err(e) if is_not_found(&e) => ctx.pod_writes.deletion(pod),
        Err(e) => return Err(api_err(format!("delete pod {}", pod.name_any()))(e)),
    }
    events.push((
        "Normal",
        "SuccessfulDelete",
        format!(
            "delete Pod {} in StatefulSet {set} successful",
            pod.name_any()
        ),
    ));
    Ok(())
}

/// Upstream's status: replicas, ready, available, current and updated counts, and the
/// revisions (`currentRevision` becomes `updateRevision` once every pod runs it).
fn calculate_status(
    set: &StatefulSet,
    pods: &[Arc<Pod>],
    update_revision: &str,
    hash: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> StatefulSetStatus {
    let spec = set.spec.clone().unwrap_or_default();
    let replicas_wanted = spec.replicas.unwrap_or(1).max(0);
    let live: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let old = set.status.clone().unwrap_or_default();
    let mut current_revision = old
        .current_revision
        .clone()
        .unwrap_or_else(|| update_revision.to_string());
    let current_hash = current_revision
        .trim_start_matches(&format!("{}-", set.name_any()))
        .to_string();
    let updated = live.iter().filter(|p| revision_of(p) == Some(hash)).count() as i32;
    let ready = live.iter().filter(|p| is_pod_ready(p)).count() as i32;
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let available = live
        .iter()
        .filter(|p| is_pod_available(p, min_ready, now))
        .count() as i32;
    if updated == replicas_wanted
        && ready == replicas_wanted
        && live.len() as i32 == replicas_wanted
    {
        current_revision = update_revision.to_string();
    }
    let current = if current_revision == update_revision {
        updated
    } else {
        live.iter()
            .filter(|p| revision_of(p) == Some(current_hash.as_str()))
            .count() as i32
    };
    let nonzero = |n: i32| (n > 0).then_some(n);
    StatefulSetStatus {
        replicas: live.len() as i32,
        ready_replicas: nonzero(ready),
        available_replicas: Some(available),
        current_replicas: nonzero(current),
        updated_replicas: nonzero(updated),
        current_revision: Some(current_revision),
        update_revision: Some(update_revision.to_string()),
        observed_generation: set.metadata.generation,
        collision_count: old.collision_count,
        conditions: old.conditions,
    }
}

async fn update_status(ctx: &Context, set: &StatefulSet, status: StatefulSetStatus) -> Result<()> {
    if set.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<StatefulSet> =
        Api::namespaced(ctx.client.clone(), &set.namespace().unwrap_or_default());
    let patch = crate::reconcile::status_merge_patch(
        &status,
        &[
            "replicas",
            "readyReplicas",
            "availableReplicas",
            "currentReplicas",
            "updatedReplicas",
            "currentRevision",
            "updateRevision",
            "observedGeneration",
        ],
    );
    match api
        .patch_status(
            &set.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(updated) => {
            ctx.set_writes.mutation(updated);
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(api_err("update statefulset status")(e)),
    }
}
