//! The pods of a Job: what the controller reads from them (phase, completion index, finish
//! time) and the pod it creates from the template.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use crate::api_values::from_time;
use crate::controller_ref::controller_ref;

/// The finalizer that keeps a finished pod until the Job has counted it (upstream's
/// `batch.kubernetes.io/job-tracking`).
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The annotation and label that carry an `Indexed` Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The environment variable that carries the completion index into the containers.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// The pod's phase, or "".
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Succeeded or Failed.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Whether the pod still carries the tracking finalizer.
pub fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

/// Whether the Job counts the pod as failed (upstream's `isPodFailed`): it failed, or (unless a
/// pod failure policy asks to wait for the phase) it is being deleted before succeeding.
pub fn is_failed(pod: &Pod, only_replace_failed: bool) -> bool {
    if phase(pod) == "Failed" {
        return true;
    }
    !only_replace_failed && pod.metadata.deletion_timestamp.is_some() && phase(pod) != "Succeeded"
}

/// The pod's completion index, from the annotation (or the label), if valid.
pub fn completion_index(pod: &Pod) -> Option<i32> {
    pod.annotations()
        .get(COMPLETION_INDEX)
        .or_else(|| pod.labels().get(COMPLETION_INDEX))
        .and_then(|v| v.parse().ok())
        .filter(|i: &i32| *i >= 0)
}

/// When the pod finished: the latest `finishedAt` of its terminated containers, else its
/// creation time.
pub fn finish_time(pod: &Pod) -> Option<DateTime<Utc>> {
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(from_time)
        .max();
    finished.or_else(|| pod.metadata.creation_timestamp.as_ref().map(from_time))
}

/// The sum of container restarts (the failures of an `OnFailure` Job's pods).
pub fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum())
}

/// The pod the Job creates (upstream's `GetPodFromTemplate` plus the Job's additions): the
/// tracking finalizer, and for an `Indexed` Job the completion index as annotation, label and
/// environment variable, and the hostname `$(job)-$(index)`.
pub fn pod_from_template(job: &Job, index: Option<i32>) -> Pod {
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    let mut finalizers = tmeta.finalizers.unwrap_or_default();
    finalizers.push(TRACKING_FINALIZER.into());
    let mut spec = template.spec.unwrap_or_default();
    let job_name = job.name_any();
    let generate_name = match index {
        Some(i) => {
            annotations.insert(COMPLETION_INDEX.into(), i.to_string());
            labels.insert(COMPLETION_INDEX.into(), i.to_string());
            if spec.hostname.as_deref().is_none_or(str::is_empty) {
                spec.hostname = Some(format!("{job_name}-{i}"));
            }
            let env = index_env();
            for c in spec
                .containers
                .iter_mut()
                .chain(spec.init_containers.iter_mut().flatten())
            {
                let vars = c.env.get_or_insert_with(Vec::new);
                if !vars.iter().any(|v| v.name == COMPLETION_INDEX_ENV) {
                    vars.push(env.clone());
                }
            }
            format!("{job_name}-{i}-")
        }
        None => format!("{job_name}-"),
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.namespace(),
            labels: non_empty(labels),
            annotations: non_empty(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![controller_ref(job)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn index_env() -> EnvVar {
    EnvVar {
        name: COMPLETION_INDEX_ENV.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
            }),
            ..Default::default()
        }),
    }
}

fn non_empty(m: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!m.is_empty()).then_some(m)
}
