//! The batch group's printers: jobs and cron jobs.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{
    Printer, TableColumn, age, condition_true, container_cells, format_label_selector,
    human_duration, int, items, name, since, text,
};

/// (group, resource, printer) of each kind here.
pub static PRINTERS: &[(&str, &str, Printer)] = &[
    ("batch", "jobs", Printer::new(JOB_COLUMNS, job)),
    ("batch", "cronjobs", Printer::new(CRONJOB_COLUMNS, cronjob)),
];

const CONTAINERS: TableColumn = TableColumn::wide(
    "Containers",
    "string",
    "Names of each container in the template.",
);
const IMAGES: TableColumn = TableColumn::wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);
const SELECTOR: TableColumn = TableColumn::wide(
    "Selector",
    "string",
    "A label query over pods that should match the pod count.",
);

static JOB_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new("Status", "string", "Status of the job."),
    TableColumn::new(
        "Completions",
        "string",
        "The number of pods which reached phase Succeeded.",
    ),
    TableColumn::new("Duration", "string", "Time required to complete the job."),
    TableColumn::AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn job(j: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let succeeded = int(j, "/status/succeeded");
    let completions = match j.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int(j, "/spec/parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let time = |field: &str| {
        j.pointer(field)
            .and_then(Value::as_str)
            .and_then(kybernetes_core::clock::parse_time)
    };
    let duration = match (time("/status/startTime"), time("/status/completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.signed_duration_since(start)),
        (Some(start), Some(end)) => human_duration(end.signed_duration_since(start)),
    };
    let conditions = "/status/conditions";
    let deleting = j
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null());
    let status = if condition_true(j, conditions, "Complete") {
        "Complete"
    } else if condition_true(j, conditions, "Failed") {
        "Failed"
    } else if deleting {
        "Terminating"
    } else if condition_true(j, conditions, "Suspended") {
        "Suspended"
    } else if condition_true(j, conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (containers, images) = container_cells(j.pointer("/spec/template/spec"));
    vec![
        json!(name(j)),
        json!(status),
        json!(completions),
        json!(duration),
        json!(age(j, now)),
        json!(containers),
        json!(images),
        json!(format_label_selector(j.pointer("/spec/selector"))),
    ]
}

static CRONJOB_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new(
        "Schedule",
        "string",
        "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
    ),
    TableColumn::new(
        "Timezone",
        "string",
        "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
    ),
    TableColumn::new(
        "Suspend",
        "boolean",
        "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.",
    ),
    TableColumn::new(
        "Active",
        "integer",
        "A list of pointers to currently running jobs.",
    ),
    TableColumn::new(
        "Last Schedule",
        "string",
        "Information when was the last time the job was successfully scheduled.",
    ),
    TableColumn::AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn cronjob(cj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let last_schedule = match cj
        .pointer("/status/lastScheduleTime")
        .and_then(Value::as_str)
    {
        Some(t) => since(Some(t), now),
        None => "<none>".into(),
    };
    let time_zone = cj
        .pointer("/spec/timeZone")
        .and_then(Value::as_str)
        .unwrap_or("<none>");
    // printBoolPtr: True, False or <unset>.
    let suspend = match cj.pointer("/spec/suspend").and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let template = "/spec/jobTemplate/spec";
    let (containers, images) = container_cells(cj.pointer(&format!("{template}/template/spec")));
    vec![
        json!(name(cj)),
        json!(text(cj, "/spec/schedule")),
        json!(time_zone),
        json!(suspend),
        json!(items(cj, "/status/active").len()),
        json!(last_schedule),
        json!(age(cj, now)),
        json!(containers),
        json!(images),
        json!(format_label_selector(
            cj.pointer(&format!("{template}/selector"))
        )),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::table::builtin;

    fn now() -> DateTime<Utc> {
        kybernetes_core::clock::parse_time("2024-05-01T12:00:00Z").expect("time")
    }

    #[test]
    fn jobs_show_status_completions_and_duration() {
        let jobs = builtin("batch", "jobs");
        let running = json!({"metadata": {"name": "j"}, "spec": {"parallelism": 2},
            "status": {"succeeded": 0, "startTime": "2024-05-01T11:59:00Z"}});
        assert_eq!(
            jobs.row(&running, now()).cells[1..4],
            [json!("Running"), json!("0/1 of 2"), json!("60s")]
        );
        let done = json!({"metadata": {"name": "j"}, "spec": {"completions": 1},
            "status": {"succeeded": 1, "startTime": "2024-05-01T11:00:00Z", "completionTime": "2024-05-01T11:00:07Z",
                "conditions": [{"type": "Complete", "status": "True"}]}});
        assert_eq!(
            jobs.row(&done, now()).cells[1..4],
            [json!("Complete"), json!("1/1"), json!("7s")]
        );
    }

    #[test]
    fn cron_jobs_show_schedule_and_last_run() {
        let cj = json!({"metadata": {"name": "c"}, "spec": {"schedule": "*/5 * * * *", "suspend": false},
            "status": {"active": [{"name": "c-1"}], "lastScheduleTime": "2024-05-01T11:55:00Z"}});
        let c = builtin("batch", "cronjobs").row(&cj, now()).cells;
        assert_eq!(
            c[1..6],
            [
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("5m")
            ]
        );
    }
}
