//! The API side of a preemption (upstream's `prepareCandidate` and `PreemptPod`): each victim
//! gets a `DisruptionTarget` condition and is deleted, with a `Preempted` event; pods of lower
//! priority nominated to the same node lose their nomination; the preemptor gets
//! `status.nominatedNodeName`.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kybernetes_core::Clock;
use serde_json::json;

use super::{DISRUPTION_TARGET, PREEMPTION_BY_SCHEDULER, Preemption};
use crate::error::{Error, Result};
use crate::events::{EventRecorder, EventType};
use crate::status::{full_name, pod_api};

/// Marks `victim` as a disruption target and deletes it. A victim already gone is fine.
async fn preempt_pod(
    client: &kube::Client,
    clock: &Clock,
    recorder: &EventRecorder,
    preemptor: &Pod,
    victim: &Pod,
    node: &str,
) -> Result<()> {
    let api = pod_api(client.clone(), victim);
    let name = victim.metadata.name.clone().unwrap_or_default();
    let scheduler = crate::scheduling_loop::scheduler_name(preemptor);
    let condition = json!({"status": {"conditions": [{
        "type": DISRUPTION_TARGET,
        "status": "True",
        "reason": PREEMPTION_BY_SCHEDULER,
        "message": format!("{scheduler}: preempting to accommodate a higher priority pod"),
        "lastTransitionTime": clock.now_rfc3339(),
    }]}});
    let action = |what: &str| format!("{what} of preemption victim {}", full_name(victim));
    match api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Strategic(&condition),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(source) => {
            return Err(Error::Api {
                action: action("set the DisruptionTarget condition"),
                source,
            });
        }
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: victim.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => return Ok(()),
        Err(source) => {
            return Err(Error::Api {
                action: action("delete"),
                source,
            });
        }
    }
    tracing::debug!(victim = %full_name(victim), preemptor = %full_name(preemptor), node, "preempted pod");
    recorder
        .record(
            victim,
            EventType::Normal,
            "Preempted",
            "Preempting",
            format!(
                "Preempted by pod {} on node {node}",
                preemptor.metadata.uid.as_deref().unwrap_or_default()
            ),
        )
        .await;
    Ok(())
}

/// Sets (or, with `None`, clears) a pod's `status.nominatedNodeName`. A pod already gone is
/// fine.
pub(crate) async fn set_nominated_node(
    client: &kube::Client,
    pod: &Pod,
    node: Option<&str>,
) -> Result<()> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let patch = json!({"status": {"nominatedNodeName": node}});
    match pod_api(client.clone(), pod)
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::Api {
            action: format!("set the nominated node of pod {}", full_name(pod)),
            source,
        }),
    }
}

/// Carries out `preemption` for `preemptor`: victims not yet being deleted are preempted,
/// `lower_nominated` lose their nomination, and the preemptor is nominated to the node.
/// Every step is tried; the first error is returned.
pub(crate) async fn prepare_candidate(
    client: kube::Client,
    clock: Clock,
    recorder: Arc<EventRecorder>,
    preemptor: Arc<Pod>,
    preemption: Preemption,
    lower_nominated: Vec<Arc<Pod>>,
) -> Result<()> {
    let node = preemption.node.as_str();
    let victims = preemption
        .victims
        .iter()
        .filter(|v| v.metadata.deletion_timestamp.is_none())
        .map(|v| preempt_pod(&client, &clock, &recorder, &preemptor, v, node));
    let mut first_error = None;
    for result in futures::future::join_all(victims).await {
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    for p in &lower_nominated {
        if let Err(e) = set_nominated_node(&client, p, None).await {
            tracing::warn!(error = %e, "could not clear a lower-priority pod's nomination");
        }
    }
    if let Err(e) = set_nominated_node(&client, &preemptor, Some(node)).await {
        first_error.get_or_insert(e);
    }
    first_error.map_or(Ok(()), Err)
}
