//! One Job reconcile (upstream's `syncJob`): count finished pods through the tracking
//! finalizer, decide whether the Job failed, succeeded or is suspended, else create and delete
//! pods, and write the status.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use serde_json::{Value, json};
use tracing::debug;

use super::failure_policy::{PolicyAction, match_pod_failure_policy};
use super::pods as jobpods;
use super::status::{
    self, COMPLETIONS_REACHED, Failure, condition, parse_indexes, pod_failure_backoff,
    set_condition,
};
use super::tracking::{classify_new_finished, release_all_finalizers, track_finished_pods};
use super::{Context, Error, Result, api_err};
use crate::api_values::to_time;
use crate::controller_ref::is_controlled_by;
use crate::pod_state::{is_pod_active, is_pod_ready};
use crate::reconcile::is_not_found;

/// At most this many pods are created or deleted by one reconcile (upstream's
/// `MaxPodCreateDeletePerSync`).
const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;

/// The Job's spec, with upstream's defaults for what is unset.
pub(super) struct Spec {
    pub(super) completions: Option<i32>,
    pub(super) parallelism: i32,
    pub(super) backoff_limit: i32,
    pub(super) indexed: bool,
    pub(super) suspend: bool,
    pub(super) active_deadline: Option<i64>,
    pub(super) on_failure: bool,
    /// A pod failure policy is set: a deleted pod counts as failed only once it has failed.
    pub(super) only_replace_failed: bool,
}

impl Spec {
    pub(super) fn of(job: &Job) -> Spec {
        let s = job.spec.clone().unwrap_or_default();
        let restart = s
            .template
            .spec
            .as_ref()
            .and_then(|p| p.restart_policy.clone());
        Spec {
            completions: s.completions,
            parallelism: s.parallelism.unwrap_or(1).max(0),
            backoff_limit: s.backoff_limit.unwrap_or(6).max(0),
            indexed: s.completion_mode.as_deref() == Some("Indexed"),
            suspend: s.suspend.unwrap_or(false),
            active_deadline: s.active_deadline_seconds,
            on_failure: restart.as_deref() == Some("OnFailure"),
            only_replace_failed: s.pod_failure_policy.is_some()
                || s.pod_replacement_policy.as_deref() == Some("Failed"),
        }
    }
}

/// Upstream's `syncJob`.
pub(crate) async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action> {
    ctx.pods
        .wait_until_ready()
        .await
        .map_err(|_| Error::InformerStopped)?;
    let job = ctx.job_writes.get(job.clone()).unwrap_or(job);
    let key = ObjectRef::from_obj(job.as_ref());
    let ns = job.namespace().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let selector =
        crate::api_values::label_selector(job.spec.as_ref().and_then(|s| s.selector.as_ref()))
            .map_err(Error::Selector)?;

    if job.metadata.deletion_timestamp.is_some() {
        // The garbage collector removes the pods; only their finalizers are left to us.
        release_all_finalizers(&ctx, &pods_api, &uid, &ns).await?;
        return Ok(Action::await_change());
    }

    let candidates = ctx.pod_writes.list(&ctx.pods, |p| {
        p.metadata.namespace.as_deref() == Some(ns.as_str())
    });
    let pods = claim_pods(&ctx, &job, &selector, candidates).await?;
    let spec = Spec::of(&job);
    let now = ctx.clock.now();

    if status::is_finished(&job) {
        release_all_finalizers(&ctx, &pods_api, &uid, &ns).await?;
        ctx.backoff.reset(&key);
        return Ok(Action::await_change());
    }

    let mut st = job.status.clone().unwrap_or_default();
    let finished = classify_new_finished(&job, &spec, &pods, &st);
    track_finished_pods(&ctx, &job, &pods_api, &pods, &mut st, &finished).await?;

    let active: Vec<Arc<Pod>> = ctx
        .pod_writes
        .list(&ctx.pods, |p| {
            is_controlled_by(&p.metadata, &uid) && is_pod_active(p)
        })
        .into_iter()
        .filter(|p| selector.matches(p.labels()))
        .collect();
    let terminating = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && !jobpods::is_terminal(p))
        .count();

    // Terminal conditions wait until no pod of the Job runs or awaits counting, as upstream.
    let pods_gone = active.is_empty() && terminating == 0 && uncounted_is_empty(&st);
    let mut conditions = st.conditions.clone().unwrap_or_default();
    let mut events: Vec<(&str, &str, String)> = Vec::new();
    let mut requeue: Option<Duration> = None;
    let active_after;

    let failure = existing_condition(&job, condition::FAILURE_TARGET)
        .or(finished.fail_job.clone())
        .or_else(|| past_backoff_limit(&spec, &st, &pods).then(Failure::backoff_limit))
        .or_else(|| {
            let deadline = deadline_remaining(&spec, &st, now)?;
            if deadline.is_zero() {
                Some(Failure::deadline())
            } else {
                requeue = Some(deadline);
                None
            }
        });
    let success = existing_condition(&job, condition::SUCCESS_CRITERIA_MET).is_some()
        || completions_reached(&spec, &st, active.len());

    if let Some(failure) = failure {
        requeue = None;
        set_condition(
            &mut conditions,
            condition::FAILURE_TARGET,
            "True",
            failure.reason,
            &failure.message,
            now,
        );
        delete_pods(&ctx, &pods_api, &active, &mut events).await?;
        active_after = 0;
        if pods_gone
            && set_condition(
                &mut conditions,
                condition::FAILED,
                "True",
                failure.reason,
                &failure.message,
                now,
            )
        {
            events.push(("Warning", failure.reason, failure.message.clone()));
        }
    } else if success {
        let (reason, message) = COMPLETIONS_REACHED;
        set_condition(
            &mut conditions,
            condition::SUCCESS_CRITERIA_MET,
            "True",
            reason,
            message,
            now,
        );
        delete_pods(&ctx, &pods_api, &active, &mut events).await?;
        active_after = 0;
        if pods_gone
            && set_condition(
                &mut conditions,
                condition::COMPLETE,
                "True",
                reason,
                message,
                now,
            )
        {
            st.completion_time = Some(to_time(now));
            events.push(("Normal", "Completed", "Job completed".into()));
        }
    } else if spec.suspend {
        delete_pods(&ctx, &pods_api, &active, &mut events).await?;
        active_after = 0;
        if set_condition(
            &mut conditions,
            condition::SUSPENDED,
            "True",
            "JobSuspended",
            "Job suspended",
            now,
        ) {
            events.push(("Normal", "Suspended", "Job suspended".into()));
        }
    } else {
        let was_suspended = conditions
            .iter()
            .any(|c| c.type_ == condition::SUSPENDED && c.status == "True");
        if was_suspended {
            set_condition(
                &mut conditions,
                condition::SUSPENDED,
                "False",
                "JobResumed",
                "Job resumed",
                now,
            );
            events.push(("Normal", "Resumed", "Job resumed".into()));
            // Resuming restarts the activeDeadlineSeconds timer, as upstream.
            st.start_time = Some(to_time(now));
        }
        if st.start_time.is_none() {
            st.start_time = Some(to_time(now));
            if let Some(ads) = spec.active_deadline {
                requeue = Some(Duration::from_secs(ads.max(0) as u64));
            }
        }
        let backoff = remaining_backoff(&job, &pods, now);
        let outcome = manage_pods(
            &ctx,
            &job,
            &spec,
            &pods_api,
            &st,
            &active,
            backoff,
            &mut events,
        )
        .await;
        active_after = outcome.active;
        if let Some(wait) = outcome.wait {
            requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
        }
        if let Err(e) = outcome.result {
            record_events(&ctx, &job, events).await;
            return Err(e);
        }
    }

    let ready = active.iter().filter(|p| is_pod_ready(p)).count();
    st.active = Some(active_after as i32);
    st.ready = Some(if active_after == 0 {
        0
    } else {
        ready.min(active_after) as i32
    });
    st.terminating = Some(terminating as i32);
    st.conditions = (!conditions.is_empty()).then_some(conditions);
    write_status(&ctx, &job, st).await?;
    record_events(&ctx, &job, events).await;
    ctx.backoff.reset(&key);
    Ok(match requeue {
        Some(after) => Action::requeue(after.max(Duration::from_millis(10))),
        None => Action::await_change(),
    })
}

fn existing_condition(job: &Job, type_: &str) -> Option<Failure> {
    let c = status::true_condition(job, type_)?;
    let reason = match c.reason.as_deref() {
        Some("BackoffLimitExceeded") => "BackoffLimitExceeded",
        Some("DeadlineExceeded") => "DeadlineExceeded",
        Some("PodFailurePolicy") => "PodFailurePolicy",
        Some("MaxFailedIndexesExceeded") => "MaxFailedIndexesExceeded",
        Some("FailedIndexes") => "FailedIndexes",
        Some("CompletionsReached") => "CompletionsReached",
        _ => "JobFailed",
    };
    Some(Failure {
        reason,
        message: c.message.clone().unwrap_or_default(),
    })
}

fn uncounted_is_empty(st: &JobStatus) -> bool {
    st.uncounted_terminated_pods.as_ref().is_none_or(|u| {
        u.succeeded.as_ref().is_none_or(Vec::is_empty)
            && u.failed.as_ref().is_none_or(Vec::is_empty)
    })
}

/// Upstream's `pastBackoffLimitOnFailure` and the `failed > backoffLimit` check.
fn past_backoff_limit(spec: &Spec, st: &JobStatus, pods: &[Arc<Pod>]) -> bool {
    if spec.on_failure {
        let restarts: i32 = pods
            .iter()
            .filter(|p| is_pod_active(p))
            .map(|p| jobpods::restarts(p))
            .sum();
        if restarts + st.failed.unwrap_or(0) > spec.backoff_limit {
            return true;
        }
    }
    st.failed.unwrap_or(0) > spec.backoff_limit
}

/// How long until `activeDeadlineSeconds` passes (zero once it has), if set and started.
fn deadline_remaining(spec: &Spec, st: &JobStatus, now: DateTime<Utc>) -> Option<Duration> {
    if spec.suspend {
        return None;
    }
    let ads = spec.active_deadline?;
    let start = crate::api_values::from_time(st.start_time.as_ref()?);
    let deadline = start + chrono::Duration::seconds(ads);
    Some((deadline - now).to_std().unwrap_or(Duration::ZERO))
}

fn completions_reached(spec: &Spec, st: &JobStatus, active: usize) -> bool {
    let succeeded = st.succeeded.unwrap_or(0);
    if spec.indexed {
        let want = spec.completions.unwrap_or(1);
        return parse_indexes(st.completed_indexes.as_deref()).len() as i32 >= want;
    }
    match spec.completions {
        Some(c) => succeeded >= c,
        None => succeeded > 0 && active == 0,
    }
}

/// How long the next pod must wait after the recent failures (upstream's back-off record):
/// 10 s doubling per failure since the last success, counted from the last failure.
fn remaining_backoff(job: &Job, pods: &[Arc<Pod>], now: DateTime<Utc>) -> Duration {
    let policy = job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref());
    let last_success = pods
        .iter()
        .filter(|p| jobpods::phase(p) == "Succeeded")
        .filter_map(|p| jobpods::finish_time(p))
        .max();
    let failures: Vec<DateTime<Utc>> = pods
        .iter()
        .filter(|p| jobpods::phase(p) == "Failed")
        .filter(|p| {
            !matches!(
                policy.and_then(|pol| match_pod_failure_policy(pol, p)),
                Some(PolicyAction::Ignore)
            )
        })
        .filter_map(|p| jobpods::finish_time(p))
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    let Some(last) = failures.iter().max() else {
        return Duration::ZERO;
    };
    let wait = pod_failure_backoff(failures.len() as u32);
    let ready_at = *last + chrono::Duration::from_std(wait).unwrap_or_default();
    (ready_at - now).to_std().unwrap_or(Duration::ZERO)
}

/// What `manage_pods` did.
struct Managed {
    /// Active pods after this reconcile's creations and deletions.
    active: usize,
    /// Wake up after this long (the back-off before the next pod).
    wait: Option<Duration>,
    result: Result<()>,
}

/// Upstream's `manageJob`: creates pods up to `parallelism` (and the remaining completions),
/// deletes the surplus; creation waits out the failure back-off.
#[allow(clippy::too_many_arguments)]
async fn manage_pods(
    ctx: &Context,
    job: &Job,
    spec: &Spec,
    api: &Api<Pod>,
    st: &JobStatus,
    active: &[Arc<Pod>],
    backoff: Duration,
    events: &mut Vec<(&'static str, &'static str, String)>,
) -> Managed {
    let succeeded = st.succeeded.unwrap_or(0);
    let (to_delete, to_create): (Vec<Arc<Pod>>, Vec<Option<i32>>) = if spec.indexed {
        indexed_plan(spec, st, active)
    } else {
        let want = match spec.completions {
            None if succeeded > 0 => active.len() as i32,
            None => spec.parallelism,
            Some(c) => (c - succeeded).clamp(0, spec.parallelism),
        }
        .max(0) as usize;
        if active.len() > want {
            let surplus = (active.len() - want).min(MAX_POD_CREATE_DELETE_PER_SYNC);
            (
                crate::pod_state::pods_to_delete(active.to_vec(), active, surplus),
                Vec::new(),
            )
        } else {
            (Vec::new(), vec![None; want - active.len()])
        }
    };
    let mut out = Managed {
        active: active.len(),
        wait: None,
        result: Ok(()),
    };
    if !to_delete.is_empty() {
        out.result = delete_pods(ctx, api, &to_delete, events).await;
        out.active -= to_delete.len();
        return out;
    }
    if to_create.is_empty() {
        return out;
    }
    if !backoff.is_zero() {
        debug!(job = %job.name_any(), ?backoff, "waiting out the pod failure back-off");
        out.wait = Some(backoff);
        return out;
    }
    let to_create: Vec<Option<i32>> = to_create
        .into_iter()
        .take(MAX_POD_CREATE_DELETE_PER_SYNC)
        .collect();
    let results = join_all(
        to_create
            .iter()
            .map(|index| create_pod(ctx, api, job, *index)),
    )
    .await;
    for r in results {
        match r {
            Ok(name) => {
                out.active += 1;
                events.push(("Normal", "SuccessfulCreate", format!("Created pod: {name}")));
            }
            Err(e) => {
                if let Error::Api { source, .. } = &e {
                    events.push((
                        "Warning",
                        "FailedCreate",
                        format!("Error creating: {source}"),
                    ));
                }
                if out.result.is_ok() {
                    out.result = Err(e);
                }
            }
        }
    }
    out
}

/// For an `Indexed` Job: the pods to delete (duplicate, out-of-range or already completed
/// indexes) and the missing indexes to create, lowest first, up to `parallelism`.
fn indexed_plan(
    spec: &Spec,
    st: &JobStatus,
    active: &[Arc<Pod>],
) -> (Vec<Arc<Pod>>, Vec<Option<i32>>) {
    let completions = spec.completions.unwrap_or(1);
    let done = parse_indexes(st.completed_indexes.as_deref());
    let mut seen = BTreeSet::new();
    let mut delete = Vec::new();
    let mut keep = 0usize;
    let mut sorted: Vec<&Arc<Pod>> = active.iter().collect();
    sorted.sort_by_key(|p| std::cmp::Reverse(is_pod_ready(p)));
    for p in sorted {
        match jobpods::completion_index(p) {
            Some(i) if i < completions && !done.contains(&i) && seen.insert(i) => keep += 1,
            _ => delete.push(p.clone()),
        }
    }
    if !delete.is_empty() {
        return (delete, Vec::new());
    }
    let room = (spec.parallelism.max(0) as usize).saturating_sub(keep);
    let missing = (0..completions)
        .filter(|i| !done.contains(i) && !seen.contains(i))
        .take(room)
        .map(Some)
        .collect();
    (Vec::new(), missing)
}

async fn create_pod(
    ctx: &Context,
    api: &Api<Pod>,
    job: &Job,
    index: Option<i32>,
) -> Result<String> {
    let pod = jobpods::pod_from_template(job, index);
    let created = api
        .create(&PostParams::default(), &pod)
        .await
        .map_err(api_err("create pod"))?;
    let name = created.name_any();
    ctx.pod_writes.mutation(created);
    Ok(name)
}

/// Deletes pods (gracefully); they count as failed once they are terminating, as upstream.
async fn delete_pods(
    ctx: &Context,
    api: &Api<Pod>,
    pods: &[Arc<Pod>],
    events: &mut Vec<(&'static str, &'static str, String)>,
) -> Result<()> {
    let results = join_all(pods.iter().map(|p| delete_pod(ctx, api, p))).await;
    let mut first = None;
    for (p, r) in pods.iter().zip(results) {
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
            Some(p) => ctx.pod_writes.mutation(p),
            None => ctx.pod_writes.deletion(pod),
        },
        Err(e) if is_not_found(&e) => ctx.pod_writes.deletion(pod),
        Err(e) => return Err(api_err(format!("delete pod {}", pod.name_any()))(e)),
    }
    Ok(())
}

/// Upstream's `claimPods` for Jobs: adopts matching orphans, releases owned pods that no longer
/// match; finished pods are claimed too.
async fn claim_pods(
    ctx: &Context,
    job: &Job,
    selector: &kybernetes_core::selector::LabelSelector,
    candidates: Vec<Arc<Pod>>,
) -> Result<Vec<Arc<Pod>>> {
    let ns = job.namespace().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let name = job.name_any();
    let uid = job.metadata.uid.clone();
    let can_adopt = || async move {
        match jobs_api.get(&name).await {
            Ok(fresh) => {
                Ok(fresh.metadata.uid == uid && fresh.metadata.deletion_timestamp.is_none())
            }
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    };
    crate::controller_ref::claim(
        &pods_api,
        job,
        selector,
        candidates,
        &ctx.pod_writes,
        can_adopt,
    )
    .await
    .map_err(api_err("claim pods"))
}

/// Writes the status through the status subresource, if it changed.
pub(super) async fn write_status(ctx: &Context, job: &Job, st: JobStatus) -> Result<()> {
    let current = job.status.clone().unwrap_or_default();
    if normalized(&st) == normalized(&current) {
        return Ok(());
    }
    let mut patch = crate::reconcile::status_merge_patch(
        &st,
        &[
            "active",
            "ready",
            "terminating",
            "succeeded",
            "failed",
            "startTime",
            "completionTime",
            "completedIndexes",
            "conditions",
        ],
    );
    let uncounted = st.uncounted_terminated_pods.clone().unwrap_or_default();
    let list = |v: Option<Vec<String>>| match v {
        Some(v) if !v.is_empty() => json!(v),
        _ => Value::Null,
    };
    patch["status"]["uncountedTerminatedPods"] = json!({
        "succeeded": list(uncounted.succeeded),
        "failed": list(uncounted.failed),
    });
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    match api
        .patch_status(
            &job.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(updated) => {
            ctx.job_writes.mutation(updated);
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(api_err("update job status")(e)),
    }
}

/// The status with empty uncounted lists dropped, for comparison.
fn normalized(st: &JobStatus) -> JobStatus {
    let mut st = st.clone();
    let u = st.uncounted_terminated_pods.take().unwrap_or_default();
    let keep = |v: Option<Vec<String>>| v.filter(|v| !v.is_empty());
    st.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: keep(u.succeeded),
        failed: keep(u.failed),
    });
    st.conditions = st.conditions.map(|cs| {
        cs.into_iter()
            .map(|c| JobCondition {
                last_probe_time: None,
                ..c
            })
            .collect()
    });
    st
}

async fn record_events(ctx: &Context, job: &Job, events: Vec<(&str, &str, String)>) {
    for (type_, reason, message) in events {
        ctx.events.record(job, type_, reason, message).await;
    }
}
