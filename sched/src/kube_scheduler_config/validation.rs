//! Upstream's `ValidateKubeSchedulerConfiguration`, for the fields outside the plugin sets
//! (those are checked while each profile's framework is built).

use std::collections::HashMap;

use super::{API_VERSION, FieldError, KIND, KubeSchedulerConfiguration};

/// Upstream's `validatePercentageOfNodesToScore`.
fn percentage(field: String, value: Option<i32>, errors: &mut Vec<FieldError>) {
    if let Some(v) = value.filter(|v| !(0..=100).contains(v)) {
        errors.push(FieldError {
            field,
            detail: format!("Invalid value: {v}: not in valid range [0-100]"),
        });
    }
}

/// Every problem outside the plugin sets.
pub(super) fn validate(config: &KubeSchedulerConfiguration) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(v) = config.api_version.as_deref().filter(|v| *v != API_VERSION) {
        errors.push(FieldError {
            field: "apiVersion".to_string(),
            detail: format!("Unsupported value: {v:?}: supported values: {API_VERSION:?}"),
        });
    }
    if let Some(k) = config.kind.as_deref().filter(|k| *k != KIND) {
        errors.push(FieldError {
            field: "kind".to_string(),
            detail: format!("Unsupported value: {k:?}: supported values: {KIND:?}"),
        });
    }
    if let Some(p) = config.parallelism.filter(|p| *p <= 0) {
        errors.push(FieldError {
            field: "parallelism".to_string(),
            detail: format!("Invalid value: {p}: should be an integer value greater than zero"),
        });
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, profile) in config.profiles.iter().enumerate() {
        let path = format!("profiles[{i}]");
        let name = profile.name();
        if name.is_empty() {
            errors.push(FieldError {
                field: format!("{path}.schedulerName"),
                detail: "Required value".to_string(),
            });
        }
        percentage(
            format!("{path}.percentageOfNodesToScore"),
            profile.percentage_of_nodes_to_score,
            &mut errors,
        );
        if let Some(first) = names.insert(name, i) {
            errors.push(FieldError {
                field: format!("{path}.schedulerName"),
                detail: format!("Duplicate value: \"profiles[{first}].schedulerName\""),
            });
        }
    }
    common_queue_sort(config, &mut errors);
    percentage(
        "percentageOfNodesToScore".to_string(),
        config.percentage_of_nodes_to_score,
        &mut errors,
    );
    let initial = config.pod_initial_backoff_seconds.unwrap_or(1);
    let max = config.pod_max_backoff_seconds.unwrap_or(10);
    if initial <= 0 {
        errors.push(FieldError {
            field: "podInitialBackoffSeconds".to_string(),
            detail: format!("Invalid value: {initial}: must be greater than 0"),
        });
    }
    if max < initial {
        errors.push(FieldError {
            field: "podMaxBackoffSeconds".to_string(),
            detail: format!(
                "Invalid value: {max}: must be greater than or equal to PodInitialBackoffSeconds"
            ),
        });
    }
    errors
}

/// Upstream's `validateCommonQueueSort`: the profiles share one queue, so they must sort it
/// the same way.
fn common_queue_sort(config: &KubeSchedulerConfiguration, errors: &mut Vec<FieldError>) {
    let queue_sort = |i: usize| {
        config
            .profiles
            .get(i)
            .and_then(|p| p.plugins.as_ref())
            .map(|p| p.queue_sort.clone())
            .unwrap_or_default()
    };
    let first = queue_sort(0);
    for i in 1..config.profiles.len() {
        if queue_sort(i) != first {
            errors.push(FieldError {
                field: format!("profiles[{i}].plugins.queueSort"),
                detail: "Invalid value: must be the same for all profiles".to_string(),
            });
        }
    }
}
