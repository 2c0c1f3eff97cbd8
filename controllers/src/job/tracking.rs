//! Counting finished pods exactly once through the `batch.kubernetes.io/job-tracking`
//! finalizer (upstream's `trackJobStatusAndRemoveFinalizers`): new finished pods are recorded
//! in `status.uncountedTerminatedPods`, lose their finalizer, then move into the counters.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::future::join_all;
use k8s_openapi::api::batch::v1::{Job, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

use super::failure_policy::{PolicyAction, match_pod_failure_policy};
use super::pods as jobpods;
use super::status::{Failure, format_indexes, parse_indexes};
use super::sync::{Spec, write_status};
use super::{Context, Result, api_err, remove_tracking_finalizer};
use crate::controller_ref::is_controlled_by;

/// The finished pods of this reconcile, sorted by what they mean for the Job.
#[derive(Default)]
pub(super) struct Finished {
    pub(super) succeeded: Vec<Arc<Pod>>,
    /// Failed pods that count against `backoffLimit`.
    pub(super) failed: Vec<Arc<Pod>>,
    /// Failed pods a pod failure policy `Ignore` rule matched.
    pub(super) ignored: Vec<Arc<Pod>>,
    /// A `FailJob` rule matched.
    pub(super) fail_job: Option<Failure>,
}

/// The pods that finished since they were last counted (they still carry the finalizer and are
/// not yet in `uncountedTerminatedPods`), with the pod failure policy applied to failures.
pub(super) fn classify_new_finished(
    job: &Job,
    spec: &Spec,
    pods: &[Arc<Pod>],
    st: &JobStatus,
) -> Finished {
    let uncounted = st.uncounted_terminated_pods.clone().unwrap_or_default();
    let known: BTreeSet<&String> = uncounted
        .succeeded
        .iter()
        .flatten()
        .chain(uncounted.failed.iter().flatten())
        .collect();
    let policy = job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref());
    let mut out = Finished::default();
    for pod in pods.iter().filter(|p| jobpods::has_tracking_finalizer(p)) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if known.contains(&uid) {
            continue;
        }
        if jobpods::phase(pod) == "Succeeded" {
            out.succeeded.push(pod.clone());
        } else if jobpods::is_failed(pod, spec.only_replace_failed) {
            let action = if jobpods::phase(pod) == "Failed" {
                policy.and_then(|p| match_pod_failure_policy(p, pod))
            } else {
                None
            };
            match action {
                Some(PolicyAction::Ignore) => out.ignored.push(pod.clone()),
                Some(PolicyAction::FailJob(message)) => {
                    out.fail_job
                        .get_or_insert(Failure::pod_failure_policy(message));
                    out.failed.push(pod.clone());
                }
                _ => out.failed.push(pod.clone()),
            }
        }
    }
    out
}

/// Steps 1–3 of the finalizer tracking: record the new finished pods as uncounted, remove
/// their finalizers, then move every uncounted pod into the counters.
pub(super) async fn track_finished_pods(
    ctx: &Context,
    job: &Job,
    api: &Api<Pod>,
    pods: &[Arc<Pod>],
    st: &mut JobStatus,
    finished: &Finished,
) -> Result<()> {
    let mut uncounted = st.uncounted_terminated_pods.clone().unwrap_or_default();
    let uids = |ps: &[Arc<Pod>]| -> Vec<String> {
        ps.iter().filter_map(|p| p.metadata.uid.clone()).collect()
    };
    let new_succeeded = uids(&finished.succeeded);
    let new_failed = uids(&finished.failed);
    if !new_succeeded.is_empty() || !new_failed.is_empty() {
        uncounted
            .succeeded
            .get_or_insert_with(Vec::new)
            .extend(new_succeeded);
        uncounted
            .failed
            .get_or_insert_with(Vec::new)
            .extend(new_failed);
        st.uncounted_terminated_pods = Some(uncounted.clone());
        write_status(ctx, job, st.clone()).await?;
    }

    // Remove the finalizer of every uncounted or ignored pod that still has it.
    let pending: BTreeSet<String> = uncounted
        .succeeded
        .iter()
        .flatten()
        .chain(uncounted.failed.iter().flatten())
        .cloned()
        .chain(uids(&finished.ignored))
        .collect();
    let to_release: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| jobpods::has_tracking_finalizer(p))
        .filter(|p| p.metadata.uid.as_ref().is_some_and(|u| pending.contains(u)))
        .collect();
    let results = join_all(to_release.iter().map(|p| remove_tracking_finalizer(api, p))).await;
    for r in results {
        if let Some(p) = r.map_err(api_err("remove the job-tracking finalizer"))? {
            ctx.pod_writes.mutation(p);
        }
    }

    // Every uncounted pod has lost its finalizer: count it.
    let succeeded_uids = uncounted.succeeded.take().unwrap_or_default();
    let failed_uids = uncounted.failed.take().unwrap_or_default();
    if succeeded_uids.is_empty() && failed_uids.is_empty() {
        st.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
        return Ok(());
    }
    let by_uid: BTreeMap<&str, &Arc<Pod>> = pods
        .iter()
        .filter_map(|p| Some((p.metadata.uid.as_deref()?, p)))
        .collect();
    if Spec::of(job).indexed {
        let completions = Spec::of(job).completions.unwrap_or(1);
        let mut done = parse_indexes(st.completed_indexes.as_deref());
        for uid in &succeeded_uids {
            if let Some(i) = by_uid
                .get(uid.as_str())
                .and_then(|p| jobpods::completion_index(p))
                && i < completions
            {
                done.insert(i);
            }
        }
        st.succeeded = Some(done.len() as i32);
        st.completed_indexes = Some(format_indexes(&done));
    } else {
        st.succeeded = Some(st.succeeded.unwrap_or(0) + succeeded_uids.len() as i32);
    }
    st.failed = Some(st.failed.unwrap_or(0) + failed_uids.len() as i32);
    st.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    Ok(())
}

/// Removes the tracking finalizer from every pod of the Job (a finished or deleted Job).
pub(super) async fn release_all_finalizers(
    ctx: &Context,
    api: &Api<Pod>,
    uid: &str,
    ns: &str,
) -> Result<()> {
    let pods = ctx.pod_writes.list(&ctx.pods, |p| {
        p.metadata.namespace.as_deref() == Some(ns)
            && is_controlled_by(&p.metadata, uid)
            && jobpods::has_tracking_finalizer(p)
    });
    for p in pods {
        if let Some(updated) = remove_tracking_finalizer(api, &p)
            .await
            .map_err(api_err("remove the job-tracking finalizer"))?
        {
            ctx.pod_writes.mutation(updated);
        }
    }
    Ok(())
}
