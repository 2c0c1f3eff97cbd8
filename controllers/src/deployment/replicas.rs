//! Replica arithmetic, after upstream's `deployment/util/deployment_util.go`: maxSurge and
//! maxUnavailable fenceposts, replica counts over ReplicaSets, the new ReplicaSet's next size,
//! the desired/max replicas annotations and proportional scaling shares.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Error;

/// The number of replicas the deployment wanted when a ReplicaSet was last scaled.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// The deployment's replicas plus maxSurge when a ReplicaSet was last scaled.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";

/// `spec.replicas` of a deployment (defaulted to 1, as the API server does).
pub fn deployment_replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `spec.replicas` of a ReplicaSet.
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `status.replicas` of a ReplicaSet: the pods it has.
pub fn rs_actual(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

/// `status.availableReplicas` of a ReplicaSet.
pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// `status.readyReplicas` of a ReplicaSet.
pub fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

/// The available pods a ReplicaSet will keep: never more than `spec.replicas`, because a
/// ReplicaSet whose status predates a scale-down is about to lose the difference. Upstream
/// reads `status.availableReplicas` alone; bounding it keeps maxUnavailable even when the
/// ReplicaSet controller has not caught up yet.
pub fn rs_available_kept(rs: &ReplicaSet) -> i32 {
    rs_available(rs).min(rs_replicas(rs))
}

/// The pods a ReplicaSet may have right now: the larger of `spec.replicas` and
/// `status.replicas`, since a ReplicaSet just scaled down still has its old pods until its
/// controller deletes them. Upstream counts `spec.replicas` alone; this keeps maxSurge
/// during that window.
pub fn rs_pods_upper_bound(rs: &ReplicaSet) -> i32 {
    rs_replicas(rs).max(rs_actual(rs))
}

/// Sum of `spec.replicas` (upstream's `GetReplicaCountForReplicaSets`).
pub fn sum_replicas<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter().map(rs_replicas).sum()
}

/// Sum of `status.replicas` (upstream's `GetActualReplicaCountForReplicaSets`).
pub fn sum_actual<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter().map(rs_actual).sum()
}

/// Sum of `status.availableReplicas` (upstream's `GetAvailableReplicaCountForReplicaSets`).
pub fn sum_available<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter().map(rs_available).sum()
}

/// Sum of `status.readyReplicas`.
pub fn sum_ready<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter().map(rs_ready).sum()
}

/// The ReplicaSets with `spec.replicas > 0` (upstream's `FilterActiveReplicaSets`).
pub fn active(rss: &[ReplicaSet]) -> Vec<ReplicaSet> {
    rss.iter()
        .filter(|rs| rs_replicas(rs) > 0)
        .cloned()
        .collect()
}

/// Whether the deployment uses the RollingUpdate strategy (the default).
pub fn is_rolling_update(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

/// maxSurge and maxUnavailable resolved against the deployment's replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fenceposts {
    /// Pods allowed above `spec.replicas` (rounded up from a percentage).
    pub surge: i32,
    /// Pods allowed to be unavailable (rounded down from a percentage, capped at replicas).
    pub unavailable: i32,
}

/// Resolves maxSurge and maxUnavailable (upstream's `ResolveFenceposts`, `MaxSurge` and
/// `MaxUnavailable`): percentages of `spec.replicas`, surge rounding up and unavailable down;
/// if both resolve to 0, unavailable becomes 1. Both set to 0 literally is invalid, as
/// upstream's validation says. A Recreate deployment has no fenceposts.
///
/// ```
/// use kybernetes_controllers::deployment::replicas::{Fenceposts, fenceposts};
/// let d: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(serde_json::json!({
///     "spec": {"replicas": 10, "selector": {}, "template": {},
///              "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}
/// })).unwrap();
/// assert_eq!(fenceposts(&d).unwrap(), Fenceposts { surge: 3, unavailable: 2 });
/// ```
pub fn fenceposts(d: &Deployment) -> Result<Fenceposts, Error> {
    if !is_rolling_update(d) {
        return Ok(Fenceposts {
            surge: 0,
            unavailable: 0,
        });
    }
    let desired = deployment_replicas(d);
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.clone())
        .unwrap_or_default();
    let pct = IntOrString::String("25%".into());
    let max_surge = ru.max_surge.unwrap_or_else(|| pct.clone());
    let max_unavailable = ru.max_unavailable.unwrap_or(pct);
    if is_literal_zero(&max_surge) && is_literal_zero(&max_unavailable) {
        return Err(Error::InvalidStrategy(
            "maxSurge and maxUnavailable may not both be 0".into(),
        ));
    }
    let surge = scaled_value(&max_surge, desired, true)?;
    let mut unavailable = scaled_value(&max_unavailable, desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    if desired == 0 {
        unavailable = 0;
    }
    Ok(Fenceposts {
        surge,
        unavailable: unavailable.min(desired),
    })
}

fn is_literal_zero(v: &IntOrString) -> bool {
    match v {
        IntOrString::Int(n) => *n == 0,
        IntOrString::String(s) => s.trim_end_matches('%').parse::<i64>() == Ok(0),
    }
}

/// Upstream's `GetScaledValueFromIntOrPercent`.
fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, Error> {
    crate::api_values::scaled_int_or_percent(v, total, round_up).map_err(Error::InvalidStrategy)
}

/// The size the new ReplicaSet should have next (upstream's `NewRSNewReplicas`). With
/// RollingUpdate it grows until all pods reach `replicas + maxSurge`; the pods of a
/// ReplicaSet are bounded by [`rs_pods_upper_bound`].
pub fn new_rs_new_replicas(
    d: &Deployment,
    f: Fenceposts,
    all: &[&ReplicaSet],
    new_rs: &ReplicaSet,
) -> i32 {
    let desired = deployment_replicas(d);
    if !is_rolling_update(d) {
        return desired;
    }
    let current: i32 = all.iter().map(|rs| rs_pods_upper_bound(rs)).sum();
    let max_total = desired + f.surge;
    let new_replicas = rs_replicas(new_rs);
    if current >= max_total {
        return new_replicas;
    }
    let scale_up = (max_total - current).min(desired - new_replicas).max(0);
    new_replicas + scale_up
}

fn annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    rs.metadata.annotations.as_ref()?.get(key)?.parse().ok()
}

/// The desired-replicas annotation (upstream's `GetDesiredReplicasAnnotation`).
pub fn desired_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation(rs, DESIRED_REPLICAS_ANNOTATION)
}

/// Whether the desired/max replicas annotations differ from these values.
pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    annotation(rs, DESIRED_REPLICAS_ANNOTATION) != Some(desired)
        || annotation(rs, MAX_REPLICAS_ANNOTATION) != Some(max)
}

/// Sets the desired/max replicas annotations; true if they changed.
pub fn set_replicas_annotations(
    annotations: &mut BTreeMap<String, String>,
    desired: i32,
    max: i32,
) -> bool {
    let mut changed = false;
    for (key, value) in [
        (DESIRED_REPLICAS_ANNOTATION, desired),
        (MAX_REPLICAS_ANNOTATION, max),
    ] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.to_string(), value);
            changed = true;
        }
    }
    changed
}

/// Whether `rs` holds every replica of the deployment, all available (upstream's
/// `IsSaturated`).
pub fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else { return false };
    let desired = deployment_replicas(d);
    desired_replicas_annotation(rs) == Some(desired)
        && rs_replicas(rs) == desired
        && rs_available(rs) == desired
}

/// A ReplicaSet's share of `to_add` replicas when a deployment is scaled mid-rollout
/// (upstream's `GetReplicaSetProportion`).
pub fn proportion(rs: &ReplicaSet, d: &Deployment, f: Fenceposts, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = fraction(rs, d, f);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Upstream's `getReplicaSetFraction`: how much `rs` grows or shrinks when the deployment goes
/// from the size in its max-replicas annotation to `replicas + maxSurge`.
fn fraction(rs: &ReplicaSet, d: &Deployment, f: Fenceposts) -> i32 {
    let desired = deployment_replicas(d);
    if desired == 0 {
        return -rs_replicas(rs);
    }
    let deployment_replicas = desired + f.surge;
    let annotated = annotation(rs, MAX_REPLICAS_ANNOTATION)
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let size = f64::from(rs_replicas(rs)) * f64::from(deployment_replicas) / f64::from(annotated);
    size.round() as i32 - rs_replicas(rs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(
        replicas: i32,
        surge: serde_json::Value,
        unavailable: serde_json::Value,
    ) -> Deployment {
        serde_json::from_value(json!({
            "spec": {"replicas": replicas, "selector": {}, "template": {},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}
        }))
        .unwrap_or_default()
    }

    #[test]
    fn surge_rounds_up_and_unavailable_rounds_down() {
        let f = fenceposts(&deployment(20, json!("25%"), json!("25%"))).ok();
        assert_eq!(
            f,
            Some(Fenceposts {
                surge: 5,
                unavailable: 5
            })
        );
        let f = fenceposts(&deployment(3, json!("25%"), json!("25%"))).ok();
        assert_eq!(
            f,
            Some(Fenceposts {
                surge: 1,
                unavailable: 0
            })
        );
        let f = fenceposts(&deployment(1, json!(0), json!("10%"))).ok();
        assert_eq!(
            f,
            Some(Fenceposts {
                surge: 0,
                unavailable: 1
            })
        );
    }

    #[test]
    fn both_fenceposts_zero_is_invalid() {
        assert!(fenceposts(&deployment(3, json!(0), json!("0%"))).is_err());
        assert!(fenceposts(&deployment(3, json!("x"), json!(1))).is_err());
    }

    #[test]
    fn proportional_share_follows_max_replicas_annotation() {
        let d = deployment(30, json!(3), json!(0));
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"annotations": {MAX_REPLICAS_ANNOTATION: "13"}},
            "spec": {"replicas": 5, "selector": {}}
        }))
        .unwrap_or_default();
        let f = Fenceposts {
            surge: 3,
            unavailable: 0,
        };
        // 5 * 33 / 13 = 12.69 -> 13, so +8 (capped by what is left to add).
        assert_eq!(proportion(&rs, &d, f, 20, 0), 8);
        assert_eq!(proportion(&rs, &d, f, 20, 15), 5);
    }
}
