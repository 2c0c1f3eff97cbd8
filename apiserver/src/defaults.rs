//! Defaulting, as upstream's `SetDefaults_*` functions do for the fields clients rely on.
//! Applied on create and on every update, so a round-tripped object keeps its defaults.

use kybernetes_core::ResourceInfo;
use serde_json::{Map, Value, json};

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let m = v.as_object_mut()?;
    let e = m.entry(key.to_string()).or_insert_with(|| json!({}));
    if !e.is_object() {
        *e = json!({});
    }
    e.as_object_mut()
}

fn default(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.into(), value);
    }
}

/// Applies the defaults of `r` to `obj`.
pub fn apply(r: &ResourceInfo, obj: &mut Value) {
    match (r.group.as_str(), r.plural.as_str()) {
        ("", "pods") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                pod_spec(spec);
            }
        }
        ("", "namespaces") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                default(spec, "finalizers", json!(["kubernetes"]));
            }
        }
        ("", "services") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                service_spec(spec);
            }
        }
        ("", "secrets") => secret_string_data(obj),
        ("apps", "deployments") => workload(obj, true),
        ("apps", "replicasets") | ("", "replicationcontrollers") | ("apps", "statefulsets") => {
            workload(obj, false)
        }
        ("apps", "daemonsets") => {
            template_only(obj);
            daemon_set(obj);
        }
        ("batch", "jobs") => {
            template_only(obj);
            job(obj);
        }
        ("batch", "cronjobs") => cron_job(obj),
        _ => {}
    }
}

/// Upstream merges `stringData` into `data` (base64-encoded) and never stores `stringData`.
fn secret_string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let Some(Value::Object(string_data)) = map.remove("stringData") else {
        return;
    };
    let data = map.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    if let Some(data) = data.as_object_mut() {
        for (k, v) in string_data {
            if let Some(s) = v.as_str() {
                data.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(s)),
                );
            }
        }
    }
    if !map.contains_key("type") {
        map.insert("type".into(), json!("Opaque"));
    }
}

fn template_only(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
        && let Some(tspec) = spec
            .get_mut("template")
            .and_then(|t| t.get_mut("spec"))
            .and_then(Value::as_object_mut)
    {
        pod_spec(tspec);
    }
}

fn workload(obj: &mut Value, deployment: bool) {
    let Some(spec) = obj_mut(obj, "spec") else {
        return;
    };
    default(spec, "replicas", json!(1));
    if deployment {
        default(spec, "revisionHistoryLimit", json!(10));
        default(spec, "progressDeadlineSeconds", json!(600));
        let strategy = spec.entry("strategy").or_insert_with(|| json!({}));
        if let Some(s) = strategy.as_object_mut() {
            default(s, "type", json!("RollingUpdate"));
            if s.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                let ru = s.entry("rollingUpdate").or_insert_with(|| json!({}));
                if let Some(ru) = ru.as_object_mut() {
                    default(ru, "maxUnavailable", json!("25%"));
                    default(ru, "maxSurge", json!("25%"));
                }
            }
        }
    }
    if let Some(tspec) = spec
        .get_mut("template")
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        pod_spec(tspec);
    }
}

fn pod_spec(spec: &mut Map<String, Value>) {
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "securityContext", json!({}));
    for key in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(key).and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                container(c);
            }
        }
    }
}

fn container(c: &mut Map<String, Value>) {
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    let tag_latest = {
        let last = image.rsplit('/').next().unwrap_or("");
        !last.contains('@') && (!last.contains(':') || last.ends_with(":latest"))
    };
    default(
        c,
        "imagePullPolicy",
        json!(if tag_latest { "Always" } else { "IfNotPresent" }),
    );
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(p, "protocol", json!("TCP"));
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

fn service_spec(spec: &mut Map<String, Value>) {
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                default(p, "targetPort", port);
            }
        }
    }
}

/// The status a new object starts with, for resources whose status the server initialises.
pub fn initial_status(r: &ResourceInfo, obj: &mut Value) {
    match (r.group.as_str(), r.plural.as_str()) {
        ("", "pods") => {
            let qos = qos_class(obj);
            obj["status"] = json!({ "phase": "Pending", "qosClass": qos });
        }
        ("", "namespaces") => obj["status"] = json!({ "phase": "Active" }),
        _ => {}
    }
}

/// The pod's QoS class as upstream computes it (BestEffort, Burstable or Guaranteed).
pub fn qos_class(pod: &Value) -> &'static str {
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        if req.is_some_and(|m| !m.is_empty()) || lim.is_some_and(|m| !m.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let l = lim.and_then(|m| m.get(res));
            let q = req.and_then(|m| m.get(res)).or(l);
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Upstream's `SetDefaults_Job` and the Job strategy's `generateSelector`: unless
/// `manualSelector` is true, the pod template is labelled with the Job's uid and name (new and
/// legacy keys) and the selector is the uid label.
fn job(obj: &mut Value) {
    let uid = obj
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .map(String::from);
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(String::from);
    let Some(spec) = obj_mut(obj, "spec") else {
        return;
    };
    if spec.get("completions").is_none_or(Value::is_null)
        && spec.get("parallelism").is_none_or(Value::is_null)
    {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    default(spec, "parallelism", json!(1));
    let per_index = spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null());
    default(
        spec,
        "backoffLimit",
        json!(if per_index { i32::MAX } else { 6 }),
    );
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    let has_policy = spec.get("podFailurePolicy").is_some_and(|v| !v.is_null());
    default(
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
    let Some(template) = obj_mut_in(spec, "template") else {
        return;
    };
    let Some(meta) = obj_mut_in(template, "metadata") else {
        return;
    };
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    if let Some(labels) = labels.as_object_mut() {
        default(labels, "batch.kubernetes.io/controller-uid", json!(uid));
        default(labels, "controller-uid", json!(uid));
        if let Some(name) = &name {
            default(labels, "batch.kubernetes.io/job-name", json!(name));
            default(labels, "job-name", json!(name));
        }
    }
    default(
        spec,
        "selector",
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
}

fn obj_mut_in<'a>(m: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    let e = m.entry(key.to_string()).or_insert_with(|| json!({}));
    if !e.is_object() {
        *e = json!({});
    }
    e.as_object_mut()
}

/// Upstream's `SetDefaults_CronJob`.
fn cron_job(obj: &mut Value) {
    let Some(spec) = obj_mut(obj, "spec") else {
        return;
    };
    default(spec, "concurrencyPolicy", json!("Allow"));
    default(spec, "suspend", json!(false));
    default(spec, "successfulJobsHistoryLimit", json!(3));
    default(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(tspec) = spec
        .get_mut("jobTemplate")
        .and_then(|t| t.get_mut("spec"))
        .and_then(|s| s.get_mut("template"))
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        pod_spec(tspec);
    }
}

/// Upstream's `SetDefaults_DaemonSet`: a rolling update of one pod at a time, ten revisions.
fn daemon_set(obj: &mut Value) {
    let Some(spec) = obj_mut(obj, "spec") else {
        return;
    };
    default(spec, "revisionHistoryLimit", json!(10));
    let strategy = spec.entry("updateStrategy").or_insert_with(|| json!({}));
    if let Some(s) = strategy.as_object_mut() {
        default(s, "type", json!("RollingUpdate"));
        if s.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            let ru = s.entry("rollingUpdate").or_insert_with(|| json!({}));
            if let Some(ru) = ru.as_object_mut() {
                default(ru, "maxUnavailable", json!(1));
                default(ru, "maxSurge", json!(0));
            }
        }
    }
}
