//! The deployment's status and conditions, after upstream's `deployment/progress.go` and
//! `sync.go`: replica counts summed over the ReplicaSets, the Available condition
//! (MinimumReplicasAvailable / MinimumReplicasUnavailable) and the Progressing condition with
//! `progressDeadlineSeconds` (NewReplicaSetCreated, FoundNewReplicaSet, ReplicaSetUpdated,
//! NewReplicaSetAvailable, ProgressDeadlineExceeded).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use kube::ResourceExt;
use kybernetes_core::Clock;

use super::replicas::{self, deployment_replicas};
use super::sync::all_of;
use super::{Result, Rollout};
use crate::api_values::{from_time, to_time};

/// The Progressing condition type.
pub const PROGRESSING: &str = "Progressing";
/// The Available condition type.
pub const AVAILABLE: &str = "Available";
/// The ReplicaFailure condition type.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
/// Progressing: a new ReplicaSet was created.
pub const NEW_RS_REASON: &str = "NewReplicaSetCreated";
/// Progressing: the new ReplicaSet already existed.
pub const FOUND_NEW_RS_REASON: &str = "FoundNewReplicaSet";
/// Progressing: the rollout moved forward.
pub const RS_UPDATED_REASON: &str = "ReplicaSetUpdated";
/// Progressing: the rollout is complete.
pub const NEW_RS_AVAILABLE_REASON: &str = "NewReplicaSetAvailable";
/// Progressing=False: no progress within `progressDeadlineSeconds`.
pub const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";
/// Progressing=Unknown: paused.
pub const PAUSED_REASON: &str = "DeploymentPaused";
/// Progressing=Unknown: resumed.
pub const RESUMED_REASON: &str = "DeploymentResumed";

/// Whether the deployment has a progress deadline (`progressDeadlineSeconds` set and not
/// MaxInt32).
pub fn has_progress_deadline(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .is_some_and(|p| p != i32::MAX)
}

/// A condition dated now.
pub fn new_condition(
    clock: &Clock,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
) -> DeploymentCondition {
    let now = to_time(clock.now());
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// The condition of this type, if any.
pub fn get_condition<'a>(
    status: &'a DeploymentStatus,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Upstream's `SetDeploymentCondition`: no change if status and reason are the same; the
/// transition time is kept if only the reason changed.
pub fn set_condition(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(current) = get_condition(status, &cond.type_) {
        if current.status == cond.status && current.reason == cond.reason {
            return;
        }
        if current.status == cond.status {
            cond.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &cond.type_.clone());
    status.conditions.get_or_insert_with(Vec::new).push(cond);
}

/// Removes the condition of this type.
pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conds) = status.conditions.as_mut() {
        conds.retain(|c| c.type_ != type_);
        if conds.is_empty() {
            status.conditions = None;
        }
    }
}

fn count(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// Upstream's `DeploymentComplete`: every replica updated and available, and the status is
/// about the current generation.
pub fn deployment_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let desired = deployment_replicas(d);
    status.updated_replicas.unwrap_or(0) == desired
        && status.replicas.unwrap_or(0) == desired
        && status.available_replicas.unwrap_or(0) == desired
        && status.observed_generation >= d.metadata.generation
}

/// Upstream's `DeploymentProgressing`: more updated, ready or available replicas, or fewer old
/// ones, than the last status said.
fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// When the Progressing condition's deadline passes, if it is running.
fn progress_deadline(
    d: &Deployment,
    status: &DeploymentStatus,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let seconds = d.spec.as_ref()?.progress_deadline_seconds?;
    let cond = get_condition(status, PROGRESSING)?;
    let from = from_time(cond.last_update_time.as_ref()?);
    Some(from + chrono::Duration::seconds(i64::from(seconds)))
}

/// Upstream's `DeploymentTimedOut`.
fn deployment_timed_out(d: &Deployment, status: &DeploymentStatus, clock: &Clock) -> bool {
    if !has_progress_deadline(d) {
        return false;
    }
    let Some(cond) = get_condition(status, PROGRESSING) else {
        return false;
    };
    match cond.reason.as_deref() {
        Some(NEW_RS_AVAILABLE_REASON) => false,
        Some(TIMED_OUT_REASON) => true,
        _ => progress_deadline(d, status).is_some_and(|deadline| deadline < clock.now()),
    }
}

impl Rollout<'_> {
    /// Upstream's `calculateStatus`.
    fn calculate_status(
        &self,
        all: &[ReplicaSet],
        new_rs: Option<&ReplicaSet>,
    ) -> DeploymentStatus {
        let available = replicas::sum_available(all);
        let total = replicas::sum_replicas(all);
        let mut status = self.d.status.clone().unwrap_or_default();
        status.observed_generation = self.d.metadata.generation;
        status.replicas = count(replicas::sum_actual(all));
        status.updated_replicas = count(new_rs.map_or(0, replicas::rs_actual));
        status.ready_replicas = count(replicas::sum_ready(all));
        status.available_replicas = count(available);
        status.unavailable_replicas = count((total - available).max(0));
        let cond = if available >= self.desired() - self.fence.unavailable {
            new_condition(
                &self.ctx.clock,
                AVAILABLE,
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            )
        } else {
            new_condition(
                &self.ctx.clock,
                AVAILABLE,
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            )
        };
        set_condition(&mut status, cond);
        status
    }

    /// Upstream's `syncDeploymentStatus`: the counts and Available, written if they changed.
    pub(super) async fn sync_deployment_status(
        &mut self,
        old: &[ReplicaSet],
        new_rs: Option<&ReplicaSet>,
    ) -> Result<()> {
        let status = self.calculate_status(&all_of(old, new_rs), new_rs);
        if Some(&status) == self.d.status.as_ref() {
            return Ok(());
        }
        self.write_status(status).await
    }

    /// Upstream's `syncRolloutStatus`: the counts, Available, Progressing (with the progress
    /// deadline) and ReplicaFailure, written if they changed; otherwise a requeue for when the
    /// deadline passes.
    pub(super) async fn sync_rollout_status(
        &mut self,
        old: &[ReplicaSet],
        new_rs: Option<&ReplicaSet>,
    ) -> Result<()> {
        let all = all_of(old, new_rs);
        let mut status = self.calculate_status(&all, new_rs);
        let clock = self.ctx.clock.clone();
        if !has_progress_deadline(&self.d) {
            remove_condition(&mut status, PROGRESSING);
        }
        let current = self
            .d
            .status
            .as_ref()
            .and_then(|s| get_condition(s, PROGRESSING))
            .cloned();
        let complete_already = status.replicas == status.updated_replicas
            && current
                .as_ref()
                .is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE_REASON));
        if has_progress_deadline(&self.d) && !complete_already {
            let rs_name = new_rs.map(|rs| rs.name_any());
            if deployment_complete(&self.d, &status) {
                let message = match &rs_name {
                    Some(n) => format!("ReplicaSet {n:?} has successfully progressed."),
                    None => format!("Deployment {:?} has successfully progressed.", self.name()),
                };
                set_condition(
                    &mut status,
                    new_condition(
                        &clock,
                        PROGRESSING,
                        "True",
                        NEW_RS_AVAILABLE_REASON,
                        message,
                    ),
                );
            } else if deployment_progressing(&self.d, &status) {
                let message = match &rs_name {
                    Some(n) => format!("ReplicaSet {n:?} is progressing."),
                    None => format!("Deployment {:?} is progressing.", self.name()),
                };
                // Progress moves lastUpdateTime even with the same reason.
                let mut cond =
                    new_condition(&clock, PROGRESSING, "True", RS_UPDATED_REASON, message);
                if let Some(current) = &current {
                    if current.status == "True" {
                        cond.last_transition_time = current.last_transition_time.clone();
                    }
                    remove_condition(&mut status, PROGRESSING);
                }
                set_condition(&mut status, cond);
            } else if deployment_timed_out(&self.d, &status, &clock) {
                let message = match &rs_name {
                    Some(n) => format!("ReplicaSet {n:?} has timed out progressing."),
                    None => format!("Deployment {:?} has timed out progressing.", self.name()),
                };
                set_condition(
                    &mut status,
                    new_condition(&clock, PROGRESSING, "False", TIMED_OUT_REASON, message),
                );
            }
        }
        match replica_failure(&all, new_rs) {
            Some(cond) => set_condition(&mut status, cond),
            None => remove_condition(&mut status, REPLICA_FAILURE),
        }
        if Some(&status) == self.d.status.as_ref() {
            self.requeue_stuck_deployment(&status);
            return Ok(());
        }
        self.write_status(status).await
    }

    /// Upstream's `requeueStuckDeployment`: look again when the progress deadline passes.
    fn requeue_stuck_deployment(&mut self, new_status: &DeploymentStatus) {
        let Some(current) = self
            .d
            .status
            .as_ref()
            .and_then(|s| get_condition(s, PROGRESSING))
        else {
            return;
        };
        if !has_progress_deadline(&self.d)
            || deployment_complete(&self.d, new_status)
            || current.reason.as_deref() == Some(TIMED_OUT_REASON)
        {
            return;
        }
        let Some(deadline) = self
            .d
            .status
            .as_ref()
            .and_then(|s| progress_deadline(&self.d, s))
        else {
            return;
        };
        let after = (deadline - self.ctx.clock.now())
            .to_std()
            .unwrap_or_default();
        self.requeue_after(if after < Duration::from_secs(1) {
            Duration::from_secs(1)
        } else {
            after + Duration::from_secs(1)
        });
    }
}

/// The ReplicaFailure condition of the new ReplicaSet, else of any old one (upstream's
/// `getReplicaFailures`).
fn replica_failure(all: &[ReplicaSet], new_rs: Option<&ReplicaSet>) -> Option<DeploymentCondition> {
    let failure = |rs: &ReplicaSet| {
        rs.status
            .as_ref()?
            .conditions
            .as_deref()?
            .iter()
            .find(|c| c.type_ == REPLICA_FAILURE)
            .map(|c| DeploymentCondition {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_update_time: c.last_transition_time.clone(),
                last_transition_time: c.last_transition_time.clone(),
            })
    };
    new_rs
        .and_then(failure)
        .or_else(|| all.iter().find_map(failure))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_the_same_status_and_reason_keeps_the_condition() {
        let clock = Clock::new();
        let mut status = DeploymentStatus::default();
        set_condition(
            &mut status,
            new_condition(&clock, PROGRESSING, "True", NEW_RS_REASON, "a".into()),
        );
        set_condition(
            &mut status,
            new_condition(&clock, PROGRESSING, "True", NEW_RS_REASON, "b".into()),
        );
        assert_eq!(
            get_condition(&status, PROGRESSING).and_then(|c| c.message.as_deref()),
            Some("a")
        );
        set_condition(
            &mut status,
            new_condition(&clock, PROGRESSING, "False", TIMED_OUT_REASON, "c".into()),
        );
        assert_eq!(status.conditions.as_ref().map(Vec::len), Some(1));
        assert_eq!(
            get_condition(&status, PROGRESSING).and_then(|c| c.reason.as_deref()),
            Some(TIMED_OUT_REASON)
        );
    }
}
