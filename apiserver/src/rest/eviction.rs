//! `pods/eviction` (upstream's `EvictionREST`): a pod delete that honours the
//! PodDisruptionBudget covering the pod.
//!
//! The rules, as upstream:
//! - a pod that is finished, pending or already terminating disrupts nothing: it is deleted
//!   without looking at budgets (guarded by its resourceVersion unless terminal or terminating);
//! - more than one budget selecting the pod is a 500, which the subresource does not support;
//! - a pod that is not Ready may go without spending the budget when the budget's
//!   `unhealthyPodEvictionPolicy` is `AlwaysAllow`, or (the default `IfHealthyBudget`) when the
//!   budget has its desired healthy pods anyway;
//! - otherwise the budget must allow a disruption: the eviction decrements
//!   `status.disruptionsAllowed` and records the pod in `status.disruptedPods` (a conditional
//!   write, retried on conflict), then deletes the pod. A budget with no disruption left, or
//!   one the disruption controller has not processed since its last change, is a 429
//!   `TooManyRequests` with a `DisruptionBudget` cause, which `kubectl drain` retries.

use std::sync::Arc;

use http::StatusCode;
use kybernetes_core::selector::LabelSelector;
use kybernetes_core::status::{StatusCause, success_status};
use kybernetes_core::{ApiError, ResourceInfo};
use kybernetes_store::ListOptions;
use serde_json::{Value, json};
use tracing::debug;

use super::decode::parse_json;
use super::{delete, store_err, write};
use crate::Inner;
use crate::object::{self, meta_str};
use crate::registry::{RequestScope, before};
use crate::request::DeleteOptions;
use crate::response::{self, ApiResponse};

/// How often a conflicting pod delete or budget write is retried (upstream's
/// `EvictionsRetry` steps).
const EVICTION_RETRIES: usize = 20;
/// A budget whose `disruptedPods` grew past this many entries refuses evictions until the
/// disruption controller has caught up (upstream's `MaxDisruptedPodSize`).
const MAX_DISRUPTED_PODS: usize = 2000;
/// The message of every 429 from a budget.
const VIOLATES_BUDGET: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

/// POST `pods/{name}/eviction`.
pub async fn evict(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    body: &bytes::Bytes,
) -> Result<ApiResponse, ApiError> {
    let name = scope.name();
    let eviction = parse_json(body)?;
    if let Some(n) = meta_str(&eviction, "name").filter(|n| !n.is_empty())
        && n != name
    {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let opts_body = match eviction.get("deleteOptions") {
        Some(d) if !d.is_null() => serde_json::to_vec(d)
            .map_err(|e| ApiError::bad_request(format!("invalid deleteOptions: {e}")))?,
        _ => Vec::new(),
    };
    let mut opts = DeleteOptions::parse(&Default::default(), &opts_body)?;
    opts.dry_run |= scope.dry_run;
    evict_pod(inner, scope, &opts).await?;
    Ok(response::json(
        StatusCode::CREATED,
        &success_status("", "pods", name, None),
    ))
}

async fn evict_pod(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    opts: &DeleteOptions,
) -> Result<(), ApiError> {
    let pods = &*scope.resource;
    let name = scope.name();
    // A pod that disrupts nothing is deleted at once; the delete is retried on conflicts
    // unless the client set its own resourceVersion precondition.
    let mut pod = Value::Null;
    for attempt in 0..EVICTION_RETRIES {
        pod = get(inner, pods, scope.ns(), name).await?;
        if !can_ignore_budget(&pod) {
            break;
        }
        let mut o = opts.clone();
        if enforce_resource_version(&pod) && o.precondition_rv.is_none() {
            o.precondition_rv = meta_str(&pod, "resourceVersion").map(String::from);
        }
        match delete::delete(inner, scope, &o).await {
            Ok(_) => return Ok(()),
            Err(e) if e.code == 409 && opts.precondition_rv.is_none() => {
                debug!(
                    attempt,
                    pod = name,
                    "eviction raced with a pod update; retrying"
                );
            }
            Err(e) => return Err(e),
        }
    }
    if can_ignore_budget(&pod) {
        return Err(ApiError::conflict(
            "",
            "pods",
            name,
            "too many concurrent updates; try again",
        ));
    }

    let budgets = budgets_of(inner, &pod).await?;
    if budgets.len() > 1 {
        return Err(ApiError::new(
            500,
            "",
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        ));
    }
    // Whether the delete must be guarded by the pod's resourceVersion: an unready pod let go
    // without spending the budget must not have become ready in between.
    let mut guard_unready = false;
    if let Some((budget, pdbs, pdb_scope)) = budgets.into_iter().next() {
        let budget_name = meta_str(&budget, "name").unwrap_or("").to_string();
        if !is_ready(&pod) && unhealthy_may_go(&budget) {
            guard_unready = true;
        } else {
            spend_budget(inner, &pdbs, &pdb_scope, budget, name, opts.dry_run).await?;
        }
        let mut o = opts.clone();
        if guard_unready {
            o.precondition_rv = opts
                .precondition_rv
                .clone()
                .or_else(|| meta_str(&pod, "resourceVersion").map(String::from));
        }
        return match delete::delete(inner, scope, &o).await {
            Ok(_) => Ok(()),
            // The unready pod changed since it was read: the client retries, as on a 429.
            Err(e) if e.code == 409 && guard_unready && opts.precondition_rv.is_none() => {
                Err(too_many_requests(&format!(
                    "The disruption budget {budget_name} is still being processed by the server."
                )))
            }
            Err(e) => Err(e),
        };
    }
    delete::delete(inner, scope, opts).await.map(|_| ())
}

/// Upstream's `canIgnorePDB`: finished, pending and terminating pods disrupt nothing.
fn can_ignore_budget(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending")
        || meta_str(pod, "deletionTimestamp").is_some()
}

/// Upstream's `shouldEnforceResourceVersion`: every pod but finished or terminating ones could
/// become ready while the eviction runs.
fn enforce_resource_version(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && meta_str(pod, "deletionTimestamp").is_none()
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Whether the pod's Ready condition is True (upstream's `IsPodReady`, its notion of healthy).
fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn status_i64(budget: &Value, field: &str) -> i64 {
    budget
        .get("status")
        .and_then(|s| s.get(field))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// Whether an unready pod may be evicted without spending the budget.
fn unhealthy_may_go(budget: &Value) -> bool {
    if budget.pointer("/spec/unhealthyPodEvictionPolicy") == Some(&json!("AlwaysAllow")) {
        return true;
    }
    let desired = status_i64(budget, "desiredHealthy");
    status_i64(budget, "currentHealthy") >= desired && desired > 0
}

fn too_many_requests(cause: &str) -> ApiError {
    let mut e = ApiError::new(429, "TooManyRequests", VIOLATES_BUDGET);
    e.causes.push(StatusCause {
        reason: "DisruptionBudget".into(),
        message: cause.into(),
        field: String::new(),
    });
    e
}

async fn get(
    inner: &Arc<Inner>,
    r: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    let kv = inner
        .store
        .get(&r.key(ns, name))
        .await
        .map_err(|e| store_err(r, name, e))?
        .ok_or_else(|| ApiError::not_found(&r.group, &r.plural, name))?;
    object::decode(&kv)
}

/// The budgets of the pod's namespace whose selector matches it (an empty selector matches
/// every pod, an invalid one none), with the resource and the status scope to write them.
async fn budgets_of(
    inner: &Arc<Inner>,
    pod: &Value,
) -> Result<Vec<(Value, Arc<ResourceInfo>, RequestScope)>, ApiError> {
    let Some(pdbs) = inner
        .registry
        .lookup("policy", "v1", "poddisruptionbudgets")
    else {
        return Ok(Vec::new());
    };
    let ns = meta_str(pod, "namespace");
    let labels = object::labels(pod);
    let listed = inner
        .store
        .list(&pdbs.namespace_prefix(ns), ListOptions::default())
        .await
        .map_err(|e| store_err(&pdbs, "", e))?;
    let strategy = inner.strategies.lookup(&pdbs);
    let mut out = Vec::new();
    for kv in &listed.items {
        let budget = object::decode(kv)?;
        let selector = budget.pointer("/spec/selector").unwrap_or(&Value::Null);
        let Ok(selector) = LabelSelector::from_json(selector) else {
            continue;
        };
        if !selector.matches(&labels) {
            continue;
        }
        let mut scope = RequestScope::internal(pdbs.clone(), strategy.clone(), "update", ns);
        scope.name = meta_str(&budget, "name").map(String::from);
        scope.subresource = Some("status".into());
        out.push((budget, pdbs.clone(), scope));
    }
    Ok(out)
}

/// Upstream's `checkAndDecrement`, retried with a fresh budget while its status write
/// conflicts.
async fn spend_budget(
    inner: &Arc<Inner>,
    pdbs: &ResourceInfo,
    pdb_scope: &RequestScope,
    mut budget: Value,
    pod_name: &str,
    dry_run: bool,
) -> Result<(), ApiError> {
    let budget_name = pdb_scope.name().to_string();
    for attempt in 0..EVICTION_RETRIES {
        if attempt > 0 {
            budget = get(inner, pdbs, pdb_scope.ns(), &budget_name).await?;
        }
        let observed = status_i64(&budget, "observedGeneration");
        let generation = budget
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if observed < generation {
            return Err(too_many_requests(&format!(
                "The disruption budget {budget_name} is still being processed by the server."
            )));
        }
        let allowed = status_i64(&budget, "disruptionsAllowed");
        if allowed < 0 {
            return Err(ApiError::forbidden(format!(
                "poddisruptionbudgets.policy {budget_name:?} is forbidden: pdb disruptions allowed is negative"
            )));
        }
        let disrupted = budget
            .pointer("/status/disruptedPods")
            .and_then(Value::as_object)
            .map_or(0, serde_json::Map::len);
        if disrupted > MAX_DISRUPTED_PODS {
            return Err(ApiError::forbidden(format!(
                "poddisruptionbudgets.policy {budget_name:?} is forbidden: DisruptedPods map too big - too many evictions not confirmed by PDB controller"
            )));
        }
        if allowed == 0 {
            return Err(too_many_requests(&format!(
                "The disruption budget {budget_name} needs {} healthy pods and has {} currently",
                status_i64(&budget, "desiredHealthy"),
                status_i64(&budget, "currentHealthy"),
            )));
        }
        if dry_run {
            return Ok(());
        }
        let mut updated = budget.clone();
        spend_one(&mut updated, pod_name, &inner.clock.now_rfc3339());
        let precondition = meta_str(&budget, "resourceVersion").and_then(|rv| rv.parse().ok());
        let result = write::guaranteed_update(inner, pdb_scope, precondition, |old| {
            Ok(before::prepare_for_status_update(old, &updated))
        })
        .await;
        match result {
            Ok(_) => return Ok(()),
            Err(e) if e.code == 409 => {
                debug!(attempt, budget = %budget_name, "budget changed while evicting; retrying");
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::new(
        504,
        "Timeout",
        format!("couldn't update PodDisruptionBudget {budget_name:?} due to conflicts"),
    ))
}

/// Takes one disruption from the budget's status and records the pod as disrupted at `now`.
fn spend_one(budget: &mut Value, pod_name: &str, now: &str) {
    if !budget.get("status").is_some_and(Value::is_object) {
        budget["status"] = json!({});
    }
    let status = &mut budget["status"];
    let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0) - 1;
    status["disruptionsAllowed"] = json!(allowed);
    if allowed == 0 {
        set_insufficient_pods(status, now);
    }
    if !status.get("disruptedPods").is_some_and(Value::is_object) {
        status["disruptedPods"] = json!({});
    }
    status["disruptedPods"][pod_name] = json!(now);
}

/// Upstream's `UpdateDisruptionAllowedCondition` after the eviction spent the last
/// disruption: the condition goes False (`InsufficientPods`); its transition time changes only
/// if its status does, as `SetStatusCondition` does.
fn set_insufficient_pods(status: &mut Value, now: &str) {
    let observed = status["observedGeneration"].clone();
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    let Some(conds) = status["conditions"].as_array_mut() else {
        return;
    };
    let fresh = json!({
        "type": "DisruptionAllowed",
        "status": "False",
        "reason": "InsufficientPods",
        "message": "",
        "observedGeneration": observed,
        "lastTransitionTime": now,
    });
    match conds.iter_mut().find(|c| c["type"] == "DisruptionAllowed") {
        Some(c) if c["status"] == "False" => c["reason"] = json!("InsufficientPods"),
        Some(c) => *c = fresh,
        None => conds.push(fresh),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spending_the_last_disruption_records_the_pod_and_turns_the_condition_false() {
        let mut budget = json!({"status": {
            "disruptionsAllowed": 1,
            "observedGeneration": 3,
            "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods",
                            "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        }});
        spend_one(&mut budget, "web-1", "2026-01-02T00:00:00Z");
        let status = &budget["status"];
        assert_eq!(status["disruptionsAllowed"], 0);
        assert_eq!(status["disruptedPods"]["web-1"], "2026-01-02T00:00:00Z");
        let c = &status["conditions"][0];
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some("False"), Some("InsufficientPods"))
        );
        assert_eq!(c["lastTransitionTime"], "2026-01-02T00:00:00Z");
        assert_eq!(c["observedGeneration"], 3);
    }

    #[test]
    fn pending_finished_and_terminating_pods_disrupt_nothing() {
        assert!(can_ignore_budget(&json!({"status": {"phase": "Pending"}})));
        assert!(can_ignore_budget(
            &json!({"status": {"phase": "Succeeded"}})
        ));
        assert!(can_ignore_budget(
            &json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Running"}})
        ));
        assert!(!can_ignore_budget(&json!({"status": {"phase": "Running"}})));
        assert!(enforce_resource_version(
            &json!({"status": {"phase": "Pending"}})
        ));
        assert!(!enforce_resource_version(
            &json!({"status": {"phase": "Failed"}})
        ));
    }
}
