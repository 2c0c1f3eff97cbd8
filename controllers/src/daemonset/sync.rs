//! One DaemonSet reconcile (upstream's `syncDaemonSet`): record the template as a revision,
//! put a pod on every node that should run one and remove it from the others, roll out a new
//! template, and write the status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::placement::{self, Placement};
use super::revision::{self, REVISION_HASH_LABEL};
use super::{Context, Error, Result, api_err};
use crate::controller_ref::{controller_ref, is_controlled_by};
use crate::pod_state::{is_pod_available, is_pod_ready};
use crate::reconcile::is_not_found;

/// The label with the DaemonSet generation a pod was created from (deprecated upstream, still
/// set).
const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// The daemon pods of one node.
#[derive(Default)]
struct NodePods {
    placement: Option<Placement>,
    pods: Vec<Arc<Pod>>,
}

/// Upstream's `syncDaemonSet`.
pub(crate) async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action> {
    ctx.pods
        .wait_until_ready()
        .await
        .map_err(|_| Error::InformerStopped)?;
    ctx.nodes
        .wait_until_ready()
        .await
        .map_err(|_| Error::InformerStopped)?;
    let ds = ctx.ds_writes.get(ds.clone()).unwrap_or(ds);
    let key = ObjectRef::from_obj(ds.as_ref());
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ds.namespace().unwrap_or_default();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let selector = crate::api_values::label_selector(ds.spec.as_ref().map(|s| &s.selector))
        .map_err(Error::Selector)?;
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let hash = revision::current_hash(&ds);

    let candidates = ctx.pod_writes.list(&ctx.pods, |p| {
        p.metadata.namespace.as_deref() == Some(ns.as_str())
    });
    let ds_api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
    let (name, ds_uid) = (ds.name_any(), ds.metadata.uid.clone());
    let can_adopt = || async move {
        match ds_api.get(&name).await {
            Ok(fresh) => {
                Ok(fresh.metadata.uid == ds_uid && fresh.metadata.deletion_timestamp.is_none())
            }
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    };
    let owned = crate::controller_ref::claim(
        &pods_api,
        ds.as_ref(),
        &selector,
        candidates,
        &ctx.pod_writes,
        can_adopt,
    )
    .await
    .map_err(api_err("claim pods"))?;
    let live_hashes: BTreeSet<String> = owned
        .iter()
        .filter_map(|p| p.labels().get(REVISION_HASH_LABEL).cloned())
        .collect();
    revision::sync_history(&ctx.client, &ds, &hash, &live_hashes)
        .await
        .map_err(api_err("sync controller revisions"))?;

    let template = daemon_pod_spec(&ds);
    let nodes = ctx.nodes.state();
    let by_node = group_by_node(&nodes, &owned, &template);
    let now = ctx.clock.now();
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);

    let (create, delete) = manage_plan(&by_node);
    let mut events: Vec<(&str, &str, String)> = Vec::new();
    let mut result = Ok(());
    if !create.is_empty() || !delete.is_empty() {
        result = apply(&ctx, &pods_api, &ds, &hash, &create, &delete, &mut events).await;
    } else if is_rolling(&ds) {
        let (create, delete) = rolling_plan(&ds, &by_node, &hash, min_ready, now);
        result = apply(&ctx, &pods_api, &ds, &hash, &create, &delete, &mut events).await;
    }

    let owned_now: Vec<Arc<Pod>> = ctx.pod_writes.list(&ctx.pods, |p| {
        p.metadata.namespace.as_deref() == Some(ns.as_str())
            && is_controlled_by(&p.metadata, &uid)
            && p.metadata.deletion_timestamp.is_none()
    });
    let by_node = group_by_node(&nodes, &owned_now, &template);
    let status = calculate_status(&ds, &by_node, &hash, min_ready, now);
    update_status(&ctx, &ds, status).await?;
    for (type_, reason, message) in events {
        ctx.events.record(ds.as_ref(), type_, reason, message).await;
    }
    result?;
    ctx.backoff.reset(&key);
    let next_available = owned_now
        .iter()
        .filter_map(|p| crate::pod_state::until_available(p, min_ready, now))
        .min();
    Ok(match next_available {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// The template's pod spec with the daemon tolerations, as placement sees it.
fn daemon_pod_spec(ds: &DaemonSet) -> PodSpec {
    let mut spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    placement::add_daemon_tolerations(&mut spec);
    spec
}

/// The DaemonSet's live pods by node, with each node's placement (`None` for a node that no
/// longer exists).
fn group_by_node(
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
    template: &PodSpec,
) -> BTreeMap<String, NodePods> {
    let mut out: BTreeMap<String, NodePods> = BTreeMap::new();
    for n in nodes {
        out.entry(n.name_any()).or_default().placement =
            Some(placement::node_should_run_daemon_pod(n, template));
    }
    for p in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        if let Some(node) = placement::node_of_daemon_pod(p) {
            out.entry(node).or_default().pods.push(p.clone());
        }
    }
    for np in out.values_mut() {
        np.pods.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
        });
    }
    out
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Upstream's `podsShouldBeOnNode` over every node: the nodes that need a pod, and the pods
/// to delete (failed pods, extra pods, pods on nodes that should not run them).
fn manage_plan(by_node: &BTreeMap<String, NodePods>) -> (Vec<String>, Vec<Arc<Pod>>) {
    let mut create = Vec::new();
    let mut delete = Vec::new();
    for (node, np) in by_node {
        let Some(placement) = np.placement else {
            continue;
        };
        let (failed, live): (Vec<_>, Vec<_>) =
            np.pods.iter().cloned().partition(|p| phase(p) == "Failed");
        delete.extend(failed);
        if !placement.should_continue_running {
            delete.extend(live);
            continue;
        }
        if placement.should_run && live.is_empty() {
            create.push(node.clone());
        } else if live.len() > 1 {
            // A surge leaves two pods briefly; more than that, or two of one revision, is
            // surplus: keep the oldest of each revision.
            let mut seen = BTreeSet::new();
            for p in &live {
                let h = p
                    .labels()
                    .get(REVISION_HASH_LABEL)
                    .cloned()
                    .unwrap_or_default();
                if !seen.insert(h) {
                    delete.push(p.clone());
                }
            }
        }
    }
    (create, delete)
}

fn is_rolling(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

/// An int-or-percent of `total`, rounded up as upstream's `GetScaledValueFromIntOrPercent`.
fn scaled(v: Option<&IntOrString>, total: usize, default: usize) -> usize {
    match v {
        None => default,
        Some(IntOrString::Int(n)) => (*n).max(0) as usize,
        Some(IntOrString::String(s)) => {
            let pct: usize = s.trim_end_matches('%').parse().unwrap_or(0);
            (pct * total).div_ceil(100)
        }
    }
}

/// Upstream's `rollingUpdate`: with `maxSurge` 0, delete old pods while at most
/// `maxUnavailable` nodes lack an available pod (old unavailable pods go first, for free); with
/// `maxSurge`, start the new pod beside the old one and delete the old one once the new one is
/// available.
fn rolling_plan(
    ds: &DaemonSet,
    by_node: &BTreeMap<String, NodePods>,
    hash: &str,
    min_ready: i32,
    now: DateTime<Utc>,
) -> (Vec<String>, Vec<Arc<Pod>>) {
    let desired = by_node
        .values()
        .filter(|n| n.placement.is_some_and(|p| p.should_run))
        .count();
    let ru = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref());
    let mut max_surge = scaled(ru.and_then(|r| r.max_surge.as_ref()), desired, 0);
    let mut max_unavailable = scaled(ru.and_then(|r| r.max_unavailable.as_ref()), desired, 1);
    if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    if max_surge > 0 {
        max_unavailable = 0;
    } else {
        max_surge = 0;
    }
    let is_new = |p: &Pod| p.labels().get(REVISION_HASH_LABEL).map(String::as_str) == Some(hash);
    let available = |p: &Pod| is_pod_available(p, min_ready, now);
    let mut create = Vec::new();
    let mut delete = Vec::new();
    let eligible: Vec<(&String, &NodePods)> = by_node
        .iter()
        .filter(|(_, n)| n.placement.is_some_and(|p| p.should_continue_running))
        .collect();
    if max_surge == 0 {
        let mut unavailable = eligible
            .iter()
            .filter(|(_, n)| !n.pods.iter().any(|p| available(p)))
            .count();
        let mut old_available = Vec::new();
        for (_, n) in &eligible {
            for p in n.pods.iter().filter(|p| !is_new(p)) {
                if available(p) {
                    old_available.push(p.clone());
                } else {
                    delete.push(p.clone());
                }
            }
        }
        for p in old_available {
            if unavailable >= max_unavailable {
                break;
            }
            delete.push(p);
            unavailable += 1;
        }
    } else {
        let mut surging = eligible
            .iter()
            .filter(|(_, n)| n.pods.iter().any(|p| is_new(p)) && n.pods.iter().any(|p| !is_new(p)))
            .count();
        for (node, n) in &eligible {
            let new_pod = n.pods.iter().find(|p| is_new(p));
            let old: Vec<&Arc<Pod>> = n.pods.iter().filter(|p| !is_new(p)).collect();
            if old.is_empty() {
                continue;
            }
            match new_pod {
                Some(p) if available(p) => delete.extend(old.into_iter().cloned()),
                Some(_) => {}
                None if !old.iter().any(|p| available(p)) => create.push((*node).clone()),
                None if surging < max_surge => {
                    create.push((*node).clone());
                    surging += 1;
                }
                None => {}
            }
        }
    }
    (create, delete)
}

/// Creates a pod on each of `nodes` and deletes `delete`, recording events.
async fn apply(
    ctx: &Context,
    api: &Api<Pod>,
    ds: &DaemonSet,
    hash: &str,
    nodes: &[String],
    delete: &[Arc<Pod>],
    events: &mut Vec<(&'static str, &'static str, String)>,
) -> Result<()> {
    let created = join_all(nodes.iter().map(|n| create_pod(ctx, api, ds, hash, n))).await;
    let deleted = join_all(delete.iter().map(|p| delete_pod(ctx, api, p))).await;
    let mut first = None;
    for r in created {
        match r {
            Ok(name) => events.push(("Normal", "SuccessfulCreate", format!("Created pod: {name}"))),
            Err(e) => {
                if let Error::Api { source, .. } = &e {
                    events.push((
                        "Warning",
                        "FailedCreate",
                        format!("Error creating: {source}"),
                    ));
                }
                first.get_or_insert(e);
            }
        }
    }
    for (p, r) in delete.iter().zip(deleted) {
        match r {
            Ok(()) => events.push((
                "Normal",
                "SuccessfulDelete",
                format!("Deleted pod: {}", p.name_any()),
            )),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    first.map_or(Ok(()), Err)
}

async fn create_pod(
    ctx: &Context,
    api: &Api<Pod>,
    ds: &DaemonSet,
    hash: &str,
    node: &str,
) -> Result<String> {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), hash.into());
    if let Some(g) = ds.metadata.generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
    }
    let mut spec = template.spec.unwrap_or_default();
    placement::add_daemon_tolerations(&mut spec);
    placement::pin_to_node(&mut spec, node);
    let pod = Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_ref(ds)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    };
    let created = api
        .create(&PostParams::default(), &pod)
        .await
        .map_err(api_err(format!("create pod on node {node}")))?;
    let name = created.name_any();
    ctx.pod_writes.mutation(created);
    Ok(name)
}

async fn delete_pod(ctx: &Context, api: &Api<Pod>, pod: &Pod) -> Result<()> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&pod.name_any(), &params).await {
        Ok(response) => match response.left() {
            Some(p) if p.metadata.deletion_timestamp.is_some() => ctx.pod_writes.mutation(p),
            _ => ctx.pod_writes.deletion(pod),
        },
        Err(e) if is_not_found(&e) => ctx.pod_writes.deletion(pod),
        Err(e) => return Err(api_err(format!("delete pod {}", pod.name_any()))(e)),
    }
    Ok(())
}

/// Upstream's `updateDaemonSetStatus`, counted per node.
fn calculate_status(
    ds: &DaemonSet,
    by_node: &BTreeMap<String, NodePods>,
    hash: &str,
    min_ready: i32,
    now: DateTime<Utc>,
) -> DaemonSetStatus {
    let mut st = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let (mut desired, mut current, mut misscheduled, mut ready, mut available, mut updated) =
        (0, 0, 0, 0, 0, 0);
    for np in by_node.values() {
        let should_run = np.placement.is_some_and(|p| p.should_run);
        let live: Vec<&Arc<Pod>> = np.pods.iter().filter(|p| phase(p) != "Failed").collect();
        if should_run {
            desired += 1;
            if let Some(newest) = live.last() {
                current += 1;
                if is_pod_ready(newest) {
                    ready += 1;
                    if is_pod_available(newest, min_ready, now) {
                        available += 1;
                    }
                }
                if newest.labels().get(REVISION_HASH_LABEL).map(String::as_str) == Some(hash) {
                    updated += 1;
                }
            }
        } else if !live.is_empty() {
            misscheduled += 1;
        }
    }
    st.desired_number_scheduled = desired;
    st.current_number_scheduled = current;
    st.number_misscheduled = misscheduled;
    st.number_ready = ready;
    st.number_available = Some(available).filter(|n| *n > 0);
    st.number_unavailable = Some(desired - available).filter(|n| *n > 0);
    st.updated_number_scheduled = Some(updated).filter(|n| *n > 0);
    st
}

/// Writes the status if it changed, through the status subresource.
async fn update_status(ctx: &Context, ds: &DaemonSet, status: DaemonSetStatus) -> Result<()> {
    if ds.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<DaemonSet> =
        Api::namespaced(ctx.client.clone(), &ds.namespace().unwrap_or_default());
    let patch = crate::reconcile::status_merge_patch(
        &status,
        &[
            "desiredNumberScheduled",
            "currentNumberScheduled",
            "numberMisscheduled",
            "numberReady",
            "numberAvailable",
            "numberUnavailable",
            "updatedNumberScheduled",
            "observedGeneration",
        ],
    );
    match api
        .patch_status(
            &ds.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(updated) => {
            ctx.ds_writes.mutation(updated);
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(api_err("update daemonset status")(e)),
    }
}
