//! CronJobs: defaults, and validation of the schedule, time zone, concurrency policy, limits
//! and the job template.

use kybernetes_core::status::StatusCause;
use serde_json::{Value, json};

use super::job::{non_negative, validate_job_spec};
use super::pod_template::default_pod_spec;
use super::{Strategy, default_field, invalid, object_field, required};

/// The strategy of batch/v1 cronjobs.
#[derive(Clone, Copy, Debug, Default)]
pub struct CronJobStrategy;

impl Strategy for CronJobStrategy {
    fn default(&self, obj: &mut Value) {
        default_cron_job(obj);
    }

    fn validate(&self, obj: &Value) -> Vec<StatusCause> {
        let mut out = Vec::new();
        validate_cron_job(obj, &mut out);
        out
    }
}

/// Upstream's `SetDefaults_CronJob`.
fn default_cron_job(obj: &mut Value) {
    let Some(spec) = object_field(obj, "spec") else {
        return;
    };
    default_field(spec, "concurrencyPolicy", json!("Allow"));
    default_field(spec, "suspend", json!(false));
    default_field(spec, "successfulJobsHistoryLimit", json!(3));
    default_field(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(tspec) = spec
        .get_mut("jobTemplate")
        .and_then(|t| t.get_mut("spec"))
        .and_then(|s| s.get_mut("template"))
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        default_pod_spec(tspec);
    }
}

/// Upstream's `ValidateCronJobSpec`: a schedule that parses, a known time zone, the
/// concurrency policy, non-negative limits, and the job template as a Job spec.
fn validate_cron_job(obj: &Value, out: &mut Vec<StatusCause>) {
    let Some(spec) = obj.get("spec") else {
        out.push(required("spec"));
        return;
    };
    let tz = spec.get("timeZone").and_then(Value::as_str);
    if let Some(name) = tz
        && kybernetes_core::cron::time_zone(Some(name)).is_err()
    {
        out.push(invalid(
            "spec.timeZone",
            format!("Invalid value: {name:?}: unknown time zone {name}"),
        ));
    }
    match spec.get("schedule").and_then(Value::as_str) {
        None | Some("") => out.push(required("spec.schedule")),
        Some(schedule) => {
            if let Err(kybernetes_core::cron::CronError::Syntax(e)) =
                kybernetes_core::cron::Schedule::parse(schedule, None)
            {
                out.push(invalid(
                    "spec.schedule",
                    format!("Invalid value: {schedule:?}: {e}"),
                ));
            }
        }
    }
    match spec.get("concurrencyPolicy").and_then(Value::as_str) {
        None | Some("Allow" | "Forbid" | "Replace") => {}
        Some(other) => out.push(StatusCause {
            reason: "FieldValueNotSupported".into(),
            message: format!(
                "Unsupported value: {other:?}: supported values: \"Allow\", \"Forbid\", \"Replace\""
            ),
            field: "spec.concurrencyPolicy".into(),
        }),
    }
    for key in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        non_negative(spec, key, "spec", out);
    }
    validate_job_spec(
        spec.pointer("/jobTemplate/spec"),
        "spec.jobTemplate.spec",
        out,
    );
}
