//! `spec.podFailurePolicy` (upstream's `pkg/controller/job/pod_failure_policy.go`): the first rule
//! that matches a failed pod decides what its failure means for the Job.

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::ResourceExt;

/// What a matched rule asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyAction {
    /// Fail the whole Job at once; the message names the container or condition and the rule.
    FailJob(String),
    /// Fail the pod's index (`backoffLimitPerIndex` Jobs).
    FailIndex,
    /// The failure is not counted against `backoffLimit`.
    Ignore,
    /// The failure counts as usual (also the answer when no rule matches).
    Count,
}

/// Upstream's `matchPodFailurePolicy`: the action of the first rule that matches `pod`, which
/// must have failed. `None` when no rule matches (the failure counts as usual).
pub fn match_pod_failure_policy(policy: &PodFailurePolicy, pod: &Pod) -> Option<PolicyAction> {
    for (index, rule) in policy.rules.iter().enumerate() {
        if let Some(req) = &rule.on_exit_codes {
            if let Some(c) = matching_container(pod, req) {
                let code = terminated_exit_code(c).unwrap_or_default();
                let message = format!(
                    "Container {} for pod {}/{} failed with exit code {code} matching {} rule at index {index}",
                    c.name,
                    pod.namespace().unwrap_or_default(),
                    pod.name_any(),
                    rule.action
                );
                return Some(action(&rule.action, message));
            }
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let conditions = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_deref())
                .unwrap_or_default();
            for pattern in patterns {
                // The API server defaults an empty status to True.
                let want = match pattern.status.as_str() {
                    "" => "True",
                    s => s,
                };
                if let Some(c) = conditions
                    .iter()
                    .find(|c| c.type_ == pattern.type_ && c.status == want)
                {
                    let message = format!(
                        "Pod {}/{} has condition {} matching {} rule at index {index}",
                        pod.namespace().unwrap_or_default(),
                        pod.name_any(),
                        c.type_,
                        rule.action
                    );
                    return Some(action(&rule.action, message));
                }
            }
        }
    }
    None
}

fn action(name: &str, message: String) -> PolicyAction {
    match name {
        "FailJob" => PolicyAction::FailJob(message),
        "FailIndex" => PolicyAction::FailIndex,
        "Ignore" => PolicyAction::Ignore,
        _ => PolicyAction::Count,
    }
}

fn terminated_exit_code(c: &ContainerStatus) -> Option<i32> {
    c.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code)
}

/// The first container (init containers included) that terminated with a non-zero exit code
/// the requirement matches; exit code 0 never matches, as upstream.
fn matching_container<'a>(
    pod: &'a Pod,
    req: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<&'a ContainerStatus> {
    let status = pod.status.as_ref()?;
    let all = status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten());
    all.filter(|c| req.container_name.as_ref().is_none_or(|n| *n == c.name))
        .find(|c| {
            terminated_exit_code(c).is_some_and(|code| {
                code != 0
                    && match req.operator.as_str() {
                        "In" => req.values.contains(&code),
                        "NotIn" => !req.values.contains(&code),
                        _ => false,
                    }
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failed_pod(exit: i32, conditions: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default"},
            "status": {"phase": "Failed", "conditions": conditions,
                "containerStatuses": [{"name": "main", "image": "i", "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"terminated": {"exitCode": exit}}}]}
        }))
        .expect("pod")
    }

    fn policy(rules: serde_json::Value) -> PodFailurePolicy {
        serde_json::from_value(json!({ "rules": rules })).expect("policy")
    }

    #[test]
    fn exit_code_in_rule_fails_the_job_and_names_container_and_rule() {
        let p = policy(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}
        ]));
        assert_eq!(
            match_pod_failure_policy(&p, &failed_pod(42, json!([]))),
            Some(PolicyAction::FailJob(
                "Container main for pod default/p failed with exit code 42 matching FailJob rule at index 1".into()
            ))
        );
        assert_eq!(
            match_pod_failure_policy(&p, &failed_pod(1, json!([]))),
            None
        );
    }

    #[test]
    fn disruption_condition_is_ignored_and_not_in_skips_exit_code_zero() {
        let p = policy(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [5]}}
        ]));
        let disrupted = failed_pod(0, json!([{"type": "DisruptionTarget", "status": "True"}]));
        assert_eq!(
            match_pod_failure_policy(&p, &disrupted),
            Some(PolicyAction::Ignore)
        );
        assert_eq!(
            match_pod_failure_policy(&p, &failed_pod(0, json!([]))),
            None
        );
        assert_eq!(
            match_pod_failure_policy(&p, &failed_pod(3, json!([]))),
            Some(PolicyAction::Count)
        );
    }
}
