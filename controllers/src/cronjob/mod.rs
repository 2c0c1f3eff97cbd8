//! The CronJob controller (upstream's `pkg/controller/cronjob`, the v2 controller): creates a
//! Job for each scheduled time, named `<cronjob>-<minutes since the epoch>`, honouring
//! `concurrencyPolicy`, `startingDeadlineSeconds`, `suspend`, `timeZone` and the history
//! limits; keeps `status.active`, `lastScheduleTime` and `lastSuccessfulTime`.
//!
//! Each reconcile (`reconcile`, upstream's `syncCronJob`) reconciles the active list with
//! the Jobs it owns, prunes finished Jobs beyond the history limits, then runs the most recent
//! missed schedule time, if any, and comes back at the next one. Time comes from the cluster
//! [`Clock`], so a paused test clock runs a day of schedules in moments.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) {
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let handle = kybernetes_controllers::spawn_cronjob(client, kybernetes_core::Clock::new(), shutdown.clone());
//! shutdown.cancel();
//! handle.await.ok();
//! # }
//! ```

pub mod schedule;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kybernetes_core::Clock;
use kybernetes_core::cron::Schedule;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use crate::api_values::to_time;
use crate::controller_ref::{controller_of, controller_ref, is_controlled_by};
use crate::job::status::{condition, is_finished, true_condition};
use crate::mutation_cache::{MutationCache, ObservedRevision};
use crate::reconcile::{ErrorBackoff, is_already_exists, is_not_found};
use schedule::{MISSED_TIMES_WARNING, job_name, most_recent};

/// The annotation with the scheduled time a Job was created for (upstream's).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
const MUTATION_TTL: Duration = Duration::from_secs(300);
const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(60);
/// Upstream wakes a little after the scheduled time, so the time has surely passed.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

/// The errors of a CronJob reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("failed to {action}")]
    Api {
        /// What the controller was doing.
        action: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The Job informer stopped.
    #[error("the job informer stopped")]
    InformerStopped,
}

/// A CronJob reconcile result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn api_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Api { action, source }
}

/// What every CronJob reconcile shares.
pub(crate) struct Context {
    client: Client,
    clock: Clock,
    /// This controller's event writer, with its own correlator.
    events: crate::event_recorder::EventRecorder,
    jobs: Store<Job>,
    job_writes: MutationCache<Job>,
    cronjob_writes: MutationCache<CronJob>,
    backoff: ErrorBackoff<ObjectRef<CronJob>>,
}

/// Starts the CronJob controller; it stops when `shutdown` is cancelled.
pub fn spawn_cronjob(client: Client, clock: Clock, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(run(client, clock, shutdown).instrument(info_span!("cronjob_controller")))
}

/// Keeps what the controller reads of a Job: metadata and status.
fn strip_job(job: &mut Job) {
    job.metadata.managed_fields = None;
    job.spec = None;
}

async fn run(client: Client, clock: Clock, shutdown: CancellationToken) {
    let controller = Controller::new(
        Api::<CronJob>::all(client.clone()),
        watcher::Config::default(),
    );
    let (jobs, writer) = reflector::store();
    let observed = ObservedRevision::default();
    let job_events = crate::mutation_cache::observed_watch(
        Api::<Job>::all(client.clone()),
        strip_job,
        writer,
        observed.clone(),
    );
    let ctx = Arc::new(Context {
        events: crate::event_recorder::EventRecorder::new(client.clone(), clock.clone()),
        client,
        clock,
        jobs,
        job_writes: MutationCache::new(observed, MUTATION_TTL),
        cronjob_writes: MutationCache::new(ObservedRevision::default(), MUTATION_TTL),
        backoff: ErrorBackoff::new(MAX_ERROR_BACKOFF),
    });
    let controller = controller
        .watches_stream(job_events, |job| {
            let ns = job.namespace().unwrap_or_default();
            controller_of(&job.metadata)
                .filter(|r| r.kind == "CronJob" && r.api_version.starts_with("batch/"))
                .map(|r| ObjectRef::new(&r.name).within(&ns))
        })
        .run(reconcile, error_policy, ctx);
    crate::reconcile::run_until_shutdown(
        controller,
        &shutdown,
        |e| debug!(error = %e, "cronjob controller"),
    )
    .await;
    debug!("cronjob controller stopped");
}

fn error_policy(cj: Arc<CronJob>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next_delay(ObjectRef::from_obj(cj.as_ref()));
    warn!(cronjob = %cj.name_any(), namespace = ?cj.namespace(), error = %error, source = ?std::error::Error::source(error), ?delay, "sync failed");
    Action::requeue(delay)
}

type Events = Vec<(&'static str, &'static str, String)>;

/// Upstream's `syncCronJob`.
pub(crate) async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action> {
    ctx.jobs
        .wait_until_ready()
        .await
        .map_err(|_| Error::InformerStopped)?;
    let cj = ctx.cronjob_writes.get(cj.clone()).unwrap_or(cj);
    let key = ObjectRef::from_obj(cj.as_ref());
    let ns = cj.namespace().unwrap_or_default();
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let jobs = ctx.job_writes.list(&ctx.jobs, |j| {
        j.metadata.namespace.as_deref() == Some(ns.as_str()) && is_controlled_by(&j.metadata, &uid)
    });
    let mut st = cj.status.clone().unwrap_or_default();
    let mut events: Events = Vec::new();
    reconcile_active(&mut st, &jobs, &mut events);

    let result = schedule_next(&ctx, &cj, &jobs, &mut st, &mut events).await;
    write_status(&ctx, &cj, &st).await?;
    for (type_, reason, message) in events {
        ctx.events.record(cj.as_ref(), type_, reason, message).await;
    }
    let action = result?;
    ctx.backoff.reset(&key);
    Ok(action)
}

/// Keeps `status.active` in step with the owned Jobs, and `lastSuccessfulTime` with the
/// completed ones. A running Job missing from the list (the status write after its creation
/// was lost) is put back, so `Forbid` still sees it.
fn reconcile_active(st: &mut CronJobStatus, jobs: &[Arc<Job>], events: &mut Events) {
    let mut active = st.active.take().unwrap_or_default();
    for j in jobs {
        let uid = j.metadata.uid.clone();
        let listed = active.iter().any(|r| r.uid == uid);
        let finished = is_finished(j);
        if !listed && !finished {
            active.push(job_reference(j));
        } else if listed && finished {
            active.retain(|r| r.uid != uid);
            let cond = if true_condition(j, condition::COMPLETE).is_some() {
                condition::COMPLETE
            } else {
                condition::FAILED
            };
            events.push((
                "Normal",
                "SawCompletedJob",
                format!("Saw completed job: {}, condition: {cond}", j.name_any()),
            ));
        }
        if true_condition(j, condition::COMPLETE).is_some()
            && let Some(done) = j.status.as_ref().and_then(|s| s.completion_time.clone())
            && st
                .last_successful_time
                .as_ref()
                .is_none_or(|t| t.0 < done.0)
        {
            st.last_successful_time = Some(done);
        }
    }
    active.retain(|r| {
        let present = jobs.iter().any(|j| j.metadata.uid == r.uid);
        if !present {
            events.push((
                "Normal",
                "MissingJob",
                format!(
                    "Active job went missing: {}",
                    r.name.clone().unwrap_or_default()
                ),
            ));
        }
        present
    });
    st.active = Some(active);
}

fn job_reference(j: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: j.metadata.name.clone(),
        namespace: j.metadata.namespace.clone(),
        uid: j.metadata.uid.clone(),
        resource_version: j.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// Prunes history, then runs the most recent schedule time if it is due and allowed.
async fn schedule_next(
    ctx: &Context,
    cj: &CronJob,
    jobs: &[Arc<Job>],
    st: &mut CronJobStatus,
    events: &mut Events,
) -> Result<Action> {
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = cj.spec.clone().unwrap_or_default();
    let jobs_api: Api<Job> =
        Api::namespaced(ctx.client.clone(), &cj.namespace().unwrap_or_default());
    prune_history(
        ctx,
        &jobs_api,
        jobs,
        spec.successful_jobs_history_limit.unwrap_or(3),
        condition::COMPLETE,
        events,
    )
    .await?;
    prune_history(
        ctx,
        &jobs_api,
        jobs,
        spec.failed_jobs_history_limit.unwrap_or(1),
        condition::FAILED,
        events,
    )
    .await?;
    if spec.suspend == Some(true) {
        debug!(cronjob = %cj.name_any(), "not starting job because the cronjob is suspended");
        return Ok(Action::await_change());
    }
    let schedule = match Schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            let reason = match e {
                kybernetes_core::cron::CronError::UnknownTimeZone(_) => "UnknownTimeZone",
                kybernetes_core::cron::CronError::Syntax(_) => "UnparseableSchedule",
            };
            events.push((
                "Warning",
                reason,
                format!("unparseable schedule: {:?} : {e}", spec.schedule),
            ));
            return Ok(Action::await_change());
        }
    };
    let now = ctx.clock.now();
    let next = requeue_at_next(&schedule, now);
    let earliest = st
        .last_schedule_time
        .as_ref()
        .or(cj.metadata.creation_timestamp.as_ref())
        .map(crate::api_values::from_time)
        .unwrap_or(now);
    let recent = most_recent(&schedule, earliest, now, spec.starting_deadline_seconds);
    if recent.missed > MISSED_TIMES_WARNING {
        events.push((
            "Warning",
            "TooManyMissedTimes",
            format!(
                "too many missed start times: {}. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
                recent.missed
            ),
        ));
    }
    let Some(scheduled) = recent.time else {
        return Ok(next);
    };
    if let Some(sds) = spec.starting_deadline_seconds
        && scheduled + chrono::Duration::seconds(sds) < now
    {
        events.push((
            "Warning",
            "MissSchedule",
            format!(
                "Missed scheduled time to start a job: {}",
                scheduled.to_rfc2822()
            ),
        ));
        return Ok(next);
    }
    let name = job_name(&cj.name_any(), scheduled);
    let active = st.active.get_or_insert_with(Vec::new);
    if active
        .iter()
        .any(|r| r.name.as_deref() == Some(name.as_str()))
        || st
            .last_schedule_time
            .as_ref()
            .map(crate::api_values::from_time)
            == Some(scheduled)
    {
        return Ok(next);
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            events.push((
                "Normal",
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            ));
            return Ok(next);
        }
        Some("Replace") => {
            for r in std::mem::take(active) {
                let job_name = r.name.clone().unwrap_or_default();
                delete_job(ctx, &jobs_api, &job_name, r.uid.clone()).await?;
                events.push((
                    "Normal",
                    "SuccessfulDelete",
                    format!("Deleted job {job_name}"),
                ));
            }
        }
        _ => {}
    }
    let job = job_from_template(cj, &name, scheduled, &schedule);
    let created = match jobs_api.create(&PostParams::default(), &job).await {
        Ok(j) => j,
        Err(e) if is_already_exists(&e) => {
            let existing = jobs_api
                .get(&name)
                .await
                .map_err(api_err("get the existing job"))?;
            if !is_controlled_by(&existing.metadata, cj.metadata.uid.as_deref().unwrap_or("")) {
                events.push((
                    "Warning",
                    "FailedCreate",
                    format!("Error creating job: {e}"),
                ));
                return Err(api_err("create job")(e));
            }
            existing
        }
        Err(e) => {
            events.push((
                "Warning",
                "FailedCreate",
                format!("Error creating job: {e}"),
            ));
            return Err(api_err("create job")(e));
        }
    };
    events.push(("Normal", "SuccessfulCreate", format!("Created job {name}")));
    if !is_finished(&created) && !active.iter().any(|r| r.uid == created.metadata.uid) {
        active.push(job_reference(&created));
    }
    ctx.job_writes.mutation(created);
    st.last_schedule_time = Some(to_time(scheduled));
    Ok(next)
}

fn requeue_at_next(schedule: &Schedule, now: DateTime<Utc>) -> Action {
    match schedule.next_after(now) {
        Some(t) => Action::requeue((t - now).to_std().unwrap_or_default() + NEXT_SCHEDULE_DELTA),
        None => Action::await_change(),
    }
}

/// The Job for `scheduled` (upstream's `getJobFromTemplate2`).
fn job_from_template(
    cj: &CronJob,
    name: &str,
    scheduled: DateTime<Utc>,
    schedule: &Schedule,
) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        scheduled.with_timezone(&schedule.time_zone()).to_rfc3339(),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: cj.namespace(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(cj)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Deletes the oldest finished Jobs of one kind (`Complete` or `Failed`) beyond `limit`.
async fn prune_history(
    ctx: &Context,
    api: &Api<Job>,
    jobs: &[Arc<Job>],
    limit: i32,
    type_: &str,
    events: &mut Events,
) -> Result<()> {
    let mut finished: Vec<&Arc<Job>> = jobs
        .iter()
        .filter(|j| true_condition(j, type_).is_some() && j.metadata.deletion_timestamp.is_none())
        .collect();
    let limit = limit.max(0) as usize;
    if finished.len() <= limit {
        return Ok(());
    }
    finished.sort_by_key(|j| {
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .or(j.metadata.creation_timestamp.as_ref())
            .map(|t| t.0)
    });
    let surplus = finished.len() - limit;
    for j in finished.into_iter().take(surplus) {
        delete_job(ctx, api, &j.name_any(), j.metadata.uid.clone()).await?;
        events.push((
            "Normal",
            "SuccessfulDelete",
            format!("Deleted job {}", j.name_any()),
        ));
    }
    Ok(())
}

/// Deletes a Job and, in the background, its pods.
async fn delete_job(ctx: &Context, api: &Api<Job>, name: &str, uid: Option<String>) -> Result<()> {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(kube::api::Preconditions {
            uid,
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(resp) => {
            match resp.left() {
                Some(j) if j.metadata.deletion_timestamp.is_some() => ctx.job_writes.mutation(j),
                Some(j) => ctx.job_writes.deletion(&j),
                None => {
                    if let Some(j) = ctx
                        .jobs
                        .get(&ObjectRef::new(name).within(api_namespace(api)))
                    {
                        ctx.job_writes.deletion(j.as_ref());
                    }
                }
            }
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(api_err(format!("delete job {name}"))(e)),
    }
}

fn api_namespace(api: &Api<Job>) -> &str {
    api.namespace().unwrap_or_default()
}

/// Writes the status if it changed, through the status subresource.
async fn write_status(ctx: &Context, cj: &CronJob, st: &CronJobStatus) -> Result<()> {
    let normalize = |s: &CronJobStatus| CronJobStatus {
        active: s.active.clone().filter(|a| !a.is_empty()),
        ..s.clone()
    };
    let current = cj.status.clone().unwrap_or_default();
    if normalize(st) == normalize(&current) {
        return Ok(());
    }
    let st = normalize(st);
    let mut patch = crate::reconcile::status_merge_patch(
        &st,
        &["active", "lastScheduleTime", "lastSuccessfulTime"],
    );
    if st.active.is_none() {
        patch["status"]["active"] = Value::Null;
    }
    let api: Api<CronJob> =
        Api::namespaced(ctx.client.clone(), &cj.namespace().unwrap_or_default());
    match api
        .patch_status(
            &cj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(updated) => {
            ctx.cronjob_writes.mutation(updated);
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(api_err("update cronjob status")(e)),
    }
}
