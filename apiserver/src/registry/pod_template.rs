//! Rules shared by pods and the workloads that stamp pods from a template: pod spec defaults
//! and validation, and the selector/template checks of workload controllers.

use std::collections::HashSet;

use kybernetes_core::selector::LabelSelector;
use kybernetes_core::status::StatusCause;
use kybernetes_core::validation;
use serde_json::{Map, Value, json};

use super::{default_field, invalid, object_field, required};
use crate::object;

/// Upstream's `SetDefaults_PodSpec` and `SetDefaults_Container` for the fields clients read.
pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    default_field(spec, "restartPolicy", json!("Always"));
    default_field(spec, "terminationGracePeriodSeconds", json!(30));
    default_field(spec, "dnsPolicy", json!("ClusterFirst"));
    default_field(spec, "schedulerName", json!("default-scheduler"));
    default_field(spec, "securityContext", json!({}));
    for key in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(key).and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                default_container(c);
            }
        }
    }
}

fn default_container(c: &mut Map<String, Value>) {
    default_field(c, "terminationMessagePath", json!("/dev/termination-log"));
    default_field(c, "terminationMessagePolicy", json!("File"));
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    let tag_latest = {
        let last = image.rsplit('/').next().unwrap_or("");
        !last.contains('@') && (!last.contains(':') || last.ends_with(":latest"))
    };
    default_field(
        c,
        "imagePullPolicy",
        json!(if tag_latest { "Always" } else { "IfNotPresent" }),
    );
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default_field(p, "protocol", json!("TCP"));
        }
    }
    // Upstream's SetDefaults_Pod: a resource with a limit but no request is requested at its limit.
    if let Some(resources) = c.get_mut("resources").and_then(Value::as_object_mut)
        && let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned()
        && !limits.is_empty()
    {
        let requests = resources.entry("requests").or_insert_with(|| json!({}));
        if let Some(requests) = requests.as_object_mut() {
            for (k, v) in limits {
                requests.entry(k).or_insert(v);
            }
        }
    }
}

/// Defaults the pod template of a workload (`spec.template.spec`).
pub fn default_template(obj: &mut Value) {
    if let Some(tspec) = obj
        .get_mut("spec")
        .and_then(|s| s.get_mut("template"))
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        default_pod_spec(tspec);
    }
}

/// Defaults `spec.replicas` to 1 and the pod template, as upstream does for every replicated
/// workload.
pub fn default_replicated(obj: &mut Value) {
    if let Some(spec) = object_field(obj, "spec") {
        default_field(spec, "replicas", json!(1));
    }
    default_template(obj);
}

/// Validates a pod spec found at `path`.
pub fn validate_pod_spec(spec: Option<&Value>, path: &str, out: &mut Vec<StatusCause>) {
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

/// Validates a workload's selector, replicas and pod template.
pub fn validate_workload(obj: &Value, out: &mut Vec<StatusCause>) {
    let spec = obj.get("spec");
    let selector = spec.and_then(|s| s.get("selector"));
    let template_labels = spec
        .and_then(|s| s.pointer("/template/metadata/labels"))
        .map(|l| object::labels(&json!({"metadata": {"labels": l}})))
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
    validate_pod_spec(
        spec.and_then(|s| s.pointer("/template/spec")),
        "spec.template.spec",
        out,
    );
}
