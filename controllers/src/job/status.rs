//! The Job's status vocabulary: its conditions with upstream's reasons and messages, the
//! interval form of `completedIndexes`, and the pod back-off (upstream's `backoffRecord`).

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{Job, JobCondition};

use crate::api_values::{from_time, to_time};

/// The first back-off after a failed pod (upstream's `DefaultJobPodFailureBackOff`).
pub const POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10);
/// The longest back-off (upstream's `MaxJobPodFailureBackOff` of the brief's era: 6 minutes).
pub const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(360);

/// `Complete`, `Failed`, `SuccessCriteriaMet`, `FailureTarget` and `Suspended`.
pub mod condition {
    /// The Job finished successfully.
    pub const COMPLETE: &str = "Complete";
    /// The Job failed.
    pub const FAILED: &str = "Failed";
    /// The Job met its success criteria; `Complete` follows once its pods are gone.
    pub const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
    /// The Job is failing; `Failed` follows once its pods are gone.
    pub const FAILURE_TARGET: &str = "FailureTarget";
    /// The Job is suspended.
    pub const SUSPENDED: &str = "Suspended";
}

/// A failure reason and message, as upstream writes them on `FailureTarget` and `Failed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// `BackoffLimitExceeded`, `DeadlineExceeded`, `PodFailurePolicy`, ...
    pub reason: &'static str,
    /// The message a person reads.
    pub message: String,
}

impl Failure {
    /// More failed pods than `backoffLimit` allows.
    pub fn backoff_limit() -> Self {
        Failure {
            reason: "BackoffLimitExceeded",
            message: "Job has reached the specified backoff limit".into(),
        }
    }

    /// Active for longer than `activeDeadlineSeconds`.
    pub fn deadline() -> Self {
        Failure {
            reason: "DeadlineExceeded",
            message: "Job was active longer than specified deadline".into(),
        }
    }

    /// A `FailJob` rule of the pod failure policy matched.
    pub fn pod_failure_policy(message: String) -> Self {
        Failure {
            reason: "PodFailurePolicy",
            message,
        }
    }

    /// More failed indexes than `maxFailedIndexes` allows.
    pub fn max_failed_indexes() -> Self {
        Failure {
            reason: "MaxFailedIndexesExceeded",
            message: "Job has exceeded the specified maximal number of failed indexes".into(),
        }
    }

    /// Every index finished, and some failed.
    pub fn failed_indexes() -> Self {
        Failure {
            reason: "FailedIndexes",
            message: "Job has failed indexes".into(),
        }
    }
}

/// The reason and message of `SuccessCriteriaMet` and `Complete` when completions are reached.
pub const COMPLETIONS_REACHED: (&str, &str) = (
    "CompletionsReached",
    "Reached expected number of succeeded pods",
);

/// The condition of type `type_` with status True, if present.
pub fn true_condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Whether the Job has finished: `Complete` or `Failed` is True (upstream's `IsJobFinished`).
pub fn is_finished(job: &Job) -> bool {
    true_condition(job, condition::COMPLETE).is_some()
        || true_condition(job, condition::FAILED).is_some()
}

/// When the Job finished: its `Complete` or `Failed` condition's transition time.
pub fn finish_time(job: &Job) -> Option<DateTime<Utc>> {
    true_condition(job, condition::COMPLETE)
        .or_else(|| true_condition(job, condition::FAILED))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(from_time)
}

/// Sets a condition as upstream's `ensureJobConditionStatus`: the transition time changes only
/// when the status does. Returns whether anything changed.
pub fn set_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) -> bool {
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status == status
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
        {
            return false;
        }
        if c.status != status {
            c.last_transition_time = Some(to_time(now));
        }
        c.status = status.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        c.last_probe_time = Some(to_time(now));
        return true;
    }
    conditions.push(JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(to_time(now)),
        last_transition_time: Some(to_time(now)),
    });
    true
}

/// Parses upstream's interval form of completed indexes (`"1,3-5,7"`); bad parts are skipped.
pub fn parse_indexes(s: Option<&str>) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.unwrap_or("").split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(i) = part.parse() {
                    out.insert(i);
                }
            }
        }
    }
    out
}

/// The interval form of a set of indexes, as upstream writes `completedIndexes`: every run of
/// two or more consecutive indexes is written `first-last`.
///
/// ```
/// use kybernetes_controllers::job::status::format_indexes;
/// assert_eq!(format_indexes(&[0, 1, 2, 4, 6, 7].into()), "0-2,4,6-7");
/// ```
pub fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        if end == start {
            parts.push(start.to_string());
        } else {
            parts.push(format!("{start}-{end}"));
        }
    }
    parts.join(",")
}

/// The back-off before the next pod after `failures` consecutive failures (since the last
/// success): 10 s doubling, capped at 6 minutes; zero without failures.
///
/// ```
/// use std::time::Duration;
/// use kybernetes_controllers::job::status::pod_failure_backoff;
/// assert_eq!(pod_failure_backoff(0), Duration::ZERO);
/// assert_eq!(pod_failure_backoff(3), Duration::from_secs(40));
/// assert_eq!(pod_failure_backoff(30), Duration::from_secs(360));
/// ```
pub fn pod_failure_backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let exp = (failures - 1).min(16);
    POD_FAILURE_BACKOFF
        .saturating_mul(1 << exp)
        .min(MAX_POD_FAILURE_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_round_trip_through_the_interval_form() {
        let set: BTreeSet<i32> = [0, 1, 2, 5, 7, 8].into();
        let s = format_indexes(&set);
        assert_eq!(s, "0-2,5,7-8");
        assert_eq!(parse_indexes(Some(&s)), set);
        assert!(parse_indexes(None).is_empty());
    }
}
