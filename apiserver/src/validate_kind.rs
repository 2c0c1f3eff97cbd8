//! Kind-specific validation: the rules clients hit most often, with upstream's field paths
//! and messages.

use std::collections::HashSet;

use kybernetes_core::ResourceInfo;
use kybernetes_core::selector::LabelSelector;
use kybernetes_core::status::StatusCause;
use kybernetes_core::validation;
use serde_json::Value;

use crate::object;

fn required(field: &str) -> StatusCause {
    StatusCause {
        reason: "FieldValueRequired".into(),
        message: "Required value".into(),
        field: field.into(),
    }
}

fn invalid(field: &str, message: impl Into<String>) -> StatusCause {
    StatusCause {
        reason: "FieldValueInvalid".into(),
        message: message.into(),
        field: field.into(),
    }
}

/// Returns every violation of the kind's rules.
pub fn validate(r: &ResourceInfo, obj: &Value) -> Vec<StatusCause> {
    let mut out = Vec::new();
    match (r.group.as_str(), r.plural.as_str()) {
        ("", "pods") => pod_spec(obj.get("spec"), "spec", &mut out),
        ("apps", "deployments") => {
            workload(obj, &mut out);
            rolling_update(obj, &mut out);
        }
        ("apps", "replicasets" | "statefulsets" | "daemonsets") => workload(obj, &mut out),
        ("", "services") => service(obj, &mut out),
        ("", "configmaps" | "secrets") => data_keys(obj, &mut out),
        ("batch", "jobs") => job_spec(obj.get("spec"), "spec", &mut out),
        ("batch", "cronjobs") => cron_job(obj, &mut out),
        _ => {}
    }
    out
}

fn pod_spec(spec: Option<&Value>, path: &str, out: &mut Vec<StatusCause>) {
    let Some(spec) = spec else {
        out.push(required(path));
        return;
    };
    let containers = spec.get("containers").and_then(Value::as_array);
    match containers {
        None => out.push(required(&format!("{path}.containers"))),
        Some(cs) if cs.is_empty() => out.push(required(&format!("{path}.containers"))),
        Some(cs) => {
            let mut names = HashSet::new();
            for (i, c) in cs.iter().enumerate() {
                let p = format!("{path}.containers[{i}]");
                match c.get("name").and_then(Value::as_str) {
                    None | Some("") => out.push(required(&format!("{p}.name"))),
                    Some(n) => {
                        for e in validation::is_dns1123_label(n) {
                            out.push(invalid(
                                &format!("{p}.name"),
                                format!("Invalid value: {n:?}: {e}"),
                            ));
                        }
                        if !names.insert(n.to_string()) {
                            out.push(StatusCause {
                                reason: "FieldValueDuplicate".into(),
                                message: format!("Duplicate value: {n:?}"),
                                field: format!("{p}.name"),
                            });
                        }
                    }
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    out.push(required(&format!("{p}.image")));
                }
            }
        }
    }
    if let Some(rp) = spec.get("restartPolicy").and_then(Value::as_str)
        && !matches!(rp, "Always" | "OnFailure" | "Never")
    {
        out.push(StatusCause {
            reason: "FieldValueNotSupported".into(),
            message: format!(
                "Unsupported value: {rp:?}: supported values: \"Always\", \"OnFailure\", \"Never\""
            ),
            field: format!("{path}.restartPolicy"),
        });
    }
}

fn workload(obj: &Value, out: &mut Vec<StatusCause>) {
    let spec = obj.get("spec");
    let selector = spec.and_then(|s| s.get("selector"));
    let template_labels = spec
        .and_then(|s| s.pointer("/template/metadata/labels"))
        .map(|l| object::labels(&serde_json::json!({"metadata": {"labels": l}})))
        .unwrap_or_default();
    match selector {
        None => out.push(required("spec.selector")),
        Some(sel) => match LabelSelector::from_json(sel) {
            Err(e) => out.push(invalid("spec.selector", format!("Invalid value: {e}"))),
            Ok(s) if s.is_empty() => out.push(invalid(
                "spec.selector",
                "Invalid value: empty selector is invalid for deployment",
            )),
            Ok(s) => {
                if !s.matches(&template_labels) {
                    out.push(invalid(
                        "spec.template.metadata.labels",
                        format!("Invalid value: {template_labels:?}: `selector` does not match template `labels`"),
                    ));
                }
            }
        },
    }
    if let Some(n) = spec.and_then(|s| s.get("replicas")).and_then(Value::as_i64)
        && n < 0
    {
        out.push(invalid(
            "spec.replicas",
            format!("Invalid value: {n}: must be greater than or equal to 0"),
        ));
    }
    pod_spec(
        spec.and_then(|s| s.pointer("/template/spec")),
        "spec.template.spec",
        out,
    );
}

/// An int-or-string: a non-negative integer or a percentage.
fn int_or_percent(v: &Value) -> Result<(i64, bool), String> {
    match v {
        Value::Number(n) => n.as_i64().filter(|n| *n >= 0).map(|n| (n, false)).ok_or_else(|| format!("{n}: must be greater than or equal to 0")),
        Value::String(s) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .filter(|p| (0..=100).contains(p))
            .map(|p| (p, true))
            .ok_or_else(|| format!("{s:?}: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%')")),
        other => Err(format!("{other}: must be an integer or percentage")),
    }
}

fn rolling_update(obj: &Value, out: &mut Vec<StatusCause>) {
    let Some(ru) = obj.pointer("/spec/strategy/rollingUpdate") else {
        return;
    };
    let field = |f: &str| format!("spec.strategy.rollingUpdate.{f}");
    let surge = ru.get("maxSurge").map(int_or_percent);
    let unavailable = ru.get("maxUnavailable").map(int_or_percent);
    for (name, v) in [("maxSurge", &surge), ("maxUnavailable", &unavailable)] {
        if let Some(Err(e)) = v {
            out.push(invalid(&field(name), format!("Invalid value: {e}")));
        }
    }
    if let (Some(Ok((0, _))), Some(Ok((0, _)))) = (&surge, &unavailable) {
        out.push(invalid(
            &field("maxUnavailable"),
            "Invalid value: 0: may not be 0 when `maxSurge` is 0",
        ));
    }
    if let Some(Ok((p, true))) = &unavailable
        && *p > 100
    {
        out.push(invalid(
            &field("maxUnavailable"),
            "Invalid value: must not be greater than 100%",
        ));
    }
    if obj.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate") {
        out.push(StatusCause {
            reason: "FieldValueForbidden".into(),
            message: "Forbidden: may not be specified when strategy `type` is 'Recreate'".into(),
            field: "spec.strategy.rollingUpdate".into(),
        });
    }
}

fn service(obj: &Value, out: &mut Vec<StatusCause>) {
    let spec = obj.get("spec");
    let ty = spec
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let headless = spec
        .and_then(|s| s.get("clusterIP"))
        .and_then(Value::as_str)
        == Some("None");
    let ports = spec.and_then(|s| s.get("ports")).and_then(Value::as_array);
    if ty != "ExternalName" && !headless && ports.is_none_or(|p| p.is_empty()) {
        out.push(required("spec.ports"));
    }
    for (i, p) in ports.into_iter().flatten().enumerate() {
        match p.get("port").and_then(Value::as_i64) {
            Some(n) if (1..=65535).contains(&n) => {}
            Some(n) => out.push(invalid(
                &format!("spec.ports[{i}].port"),
                format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
            )),
            None => out.push(required(&format!("spec.ports[{i}].port"))),
        }
    }
}

fn data_keys(obj: &Value, out: &mut Vec<StatusCause>) {
    for field in ["data", "binaryData", "stringData"] {
        if let Some(m) = obj.get(field).and_then(Value::as_object) {
            for k in m.keys() {
                let ok = !k.is_empty()
                    && k.len() <= 253
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    && k != "."
                    && k != ".."
                    && !k.starts_with("..");
                if !ok {
                    out.push(invalid(
                        &format!("{field}[{k}]"),
                        format!("Invalid value: {k:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name')"),
                    ));
                }
            }
        }
    }
}

fn non_negative(spec: &Value, key: &str, path: &str, out: &mut Vec<StatusCause>) {
    if let Some(n) = spec.get(key).and_then(Value::as_i64)
        && n < 0
    {
        out.push(invalid(
            &format!("{path}.{key}"),
            format!("Invalid value: {n}: must be greater than or equal to 0"),
        ));
    }
}

/// Upstream's `ValidateJobSpec` (the rules clients hit): non-negative counts, a selector that
/// matches the template, `restartPolicy` `OnFailure` or `Never`, `completions` for `Indexed`.
fn job_spec(spec: Option<&Value>, path: &str, out: &mut Vec<StatusCause>) {
    let Some(spec) = spec else {
        out.push(required(path));
        return;
    };
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        non_negative(spec, key, path, out);
    }
    if let Some(n) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64)
        && n == 0
    {
        out.push(invalid(
            &format!("{path}.activeDeadlineSeconds"),
            "Invalid value: 0: must be greater than 0",
        ));
    }
    let mode = spec.get("completionMode").and_then(Value::as_str);
    match mode {
        None | Some("NonIndexed") => {}
        Some("Indexed") => {
            if spec.get("completions").is_none_or(Value::is_null) {
                out.push(StatusCause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value: when completion mode is Indexed".into(),
                    field: format!("{path}.completions"),
                });
            }
        }
        Some(other) => out.push(StatusCause {
            reason: "FieldValueNotSupported".into(),
            message: format!(
                "Unsupported value: {other:?}: supported values: \"NonIndexed\", \"Indexed\""
            ),
            field: format!("{path}.completionMode"),
        }),
    }
    let template_labels = spec
        .pointer("/template/metadata/labels")
        .map(|l| object::labels(&serde_json::json!({"metadata": {"labels": l}})))
        .unwrap_or_default();
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    match spec.get("selector") {
        None if manual => out.push(required(&format!("{path}.selector"))),
        None => {}
        Some(sel) => match LabelSelector::from_json(sel) {
            Err(e) => out.push(invalid(&format!("{path}.selector"), format!("Invalid value: {e}"))),
            Ok(s) if !s.matches(&template_labels) => out.push(invalid(
                &format!("{path}.template.metadata.labels"),
                format!("Invalid value: {template_labels:?}: `selector` does not match template `labels`"),
            )),
            Ok(_) => {}
        },
    }
    let tspec = spec.pointer("/template/spec");
    pod_spec(tspec, &format!("{path}.template.spec"), out);
    let restart = tspec
        .and_then(|t| t.get("restartPolicy"))
        .and_then(Value::as_str)
        .unwrap_or("Always");
    if !matches!(restart, "OnFailure" | "Never") {
        out.push(StatusCause {
            reason: "FieldValueNotSupported".into(),
            message: format!(
                "Unsupported value: {restart:?}: supported values: \"OnFailure\", \"Never\""
            ),
            field: format!("{path}.template.spec.restartPolicy"),
        });
    } else if restart != "Never" && spec.get("podFailurePolicy").is_some_and(|p| !p.is_null()) {
        out.push(invalid(
            &format!("{path}.template.spec.restartPolicy"),
            format!("Invalid value: {restart:?}: only \"Never\" is supported when podFailurePolicy is specified"),
        ));
    }
}

/// Upstream's `ValidateCronJobSpec`: a schedule that parses, a known time zone, the
/// concurrency policy, non-negative limits, and the job template as a Job spec.
fn cron_job(obj: &Value, out: &mut Vec<StatusCause>) {
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
    job_spec(
        spec.pointer("/jobTemplate/spec"),
        "spec.jobTemplate.spec",
        out,
    );
}
