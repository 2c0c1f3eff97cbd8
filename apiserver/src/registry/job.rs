//! Jobs: defaults (with the generated selector and pod labels), validation, and the
//! `status.successful` field selector.

use kybernetes_core::selector::LabelSelector;
use kybernetes_core::status::StatusCause;
use serde_json::{Map, Value, json};

use super::pod_template::{default_template, validate_pod_spec};
use super::{Strategy, default_field, invalid, object_field, required};
use crate::object;

/// The strategy of batch/v1 jobs.
#[derive(Clone, Copy, Debug, Default)]
pub struct JobStrategy;

impl Strategy for JobStrategy {
    fn default(&self, obj: &mut Value) {
        default_template(obj);
        default_job(obj);
    }

    fn validate(&self, obj: &Value) -> Vec<StatusCause> {
        let mut out = Vec::new();
        validate_job_spec(obj.get("spec"), "spec", &mut out);
        out
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &["status.successful"]
    }
}

/// Upstream's `SetDefaults_Job` and the Job strategy's `generateSelector`: unless
/// `manualSelector` is true, the pod template is labelled with the Job's uid and name (new and
/// legacy keys) and the selector is the uid label.
fn default_job(obj: &mut Value) {
    let uid = obj
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .map(String::from);
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(String::from);
    let Some(spec) = object_field(obj, "spec") else {
        return;
    };
    if spec.get("completions").is_none_or(Value::is_null)
        && spec.get("parallelism").is_none_or(Value::is_null)
    {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    default_field(spec, "parallelism", json!(1));
    let per_index = spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null());
    default_field(
        spec,
        "backoffLimit",
        json!(if per_index { i32::MAX } else { 6 }),
    );
    default_field(spec, "completionMode", json!("NonIndexed"));
    default_field(spec, "suspend", json!(false));
    let has_policy = spec.get("podFailurePolicy").is_some_and(|v| !v.is_null());
    default_field(
        spec,
        "podReplacementPolicy",
        json!(if has_policy {
            "Failed"
        } else {
            "TerminatingOrFailed"
        }),
    );
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let Some(uid) = uid else {
        return;
    };
    let Some(template) = object_field_in(spec, "template") else {
        return;
    };
    let Some(meta) = object_field_in(template, "metadata") else {
        return;
    };
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    if let Some(labels) = labels.as_object_mut() {
        default_field(labels, "batch.kubernetes.io/controller-uid", json!(uid));
        default_field(labels, "controller-uid", json!(uid));
        if let Some(name) = &name {
            default_field(labels, "batch.kubernetes.io/job-name", json!(name));
            default_field(labels, "job-name", json!(name));
        }
    }
    default_field(
        spec,
        "selector",
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
}

/// The object under `key` of a map, created (or replaced, if not an object) as needed.
fn object_field_in<'a>(
    m: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    let e = m.entry(key.to_string()).or_insert_with(|| json!({}));
    if !e.is_object() {
        *e = json!({});
    }
    e.as_object_mut()
}

pub(crate) fn non_negative(spec: &Value, key: &str, path: &str, out: &mut Vec<StatusCause>) {
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
pub(crate) fn validate_job_spec(spec: Option<&Value>, path: &str, out: &mut Vec<StatusCause>) {
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
    validate_pod_spec(tspec, &format!("{path}.template.spec"), out);
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
