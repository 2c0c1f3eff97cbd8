//! TaintToleration: a node's taints repel pods that do not tolerate them.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::framework::{FilterPlugin, MAX_NODE_SCORE, ScorePlugin, default_normalize_score};
use crate::pod_info::PodInfo;
use crate::snapshot::NodeInfo;
use crate::unschedulable::Rejection;

/// Upstream's TaintToleration plugin.
///
/// Filter: a `NoSchedule` or `NoExecute` taint the pod does not tolerate rejects the node.
/// Score: fewer untolerated `PreferNoSchedule` taints score higher (default weight 3).
#[derive(Clone, Copy, Debug, Default)]
pub struct TaintToleration;

/// Upstream's `ToleratesTaint`: whether one toleration tolerates one taint. An empty effect
/// matches every effect, an empty key with `Exists` matches every taint, and `Equal` (the
/// default operator) compares values.
///
/// ```
/// use k8s_openapi::api::core::v1::{Taint, Toleration};
/// use kybernetes_sched::plugins::tolerates;
/// let taint = Taint { key: "gpu".into(), value: Some("true".into()), effect: "NoSchedule".into(), ..Default::default() };
/// let exists = Toleration { key: Some("gpu".into()), operator: Some("Exists".into()), ..Default::default() };
/// let other_value = Toleration { key: Some("gpu".into()), value: Some("false".into()), ..Default::default() };
/// assert!(tolerates(&exists, &taint));
/// assert!(!tolerates(&other_value, &taint));
/// ```
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    if let Some(key) = toleration.key.as_deref().filter(|k| !k.is_empty())
        && key != taint.key
    {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

/// Upstream's `FindMatchingUntoleratedTaint`: the first taint accepted by `applies` that no
/// toleration tolerates.
pub fn find_untolerated_taint<'t>(
    taints: &'t [Taint],
    tolerations: &[Toleration],
    applies: impl Fn(&Taint) -> bool,
) -> Option<&'t Taint> {
    taints
        .iter()
        .filter(|t| applies(t))
        .find(|taint| !tolerations.iter().any(|tol| tolerates(tol, taint)))
}

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &str {
        "TaintToleration"
    }

    fn filter(&self, pod: &PodInfo<'_>, node: &NodeInfo) -> Result<(), Rejection> {
        let taints = node.taints();
        if taints.is_empty() {
            return Ok(());
        }
        let do_not_schedule = |t: &Taint| t.effect == "NoSchedule" || t.effect == "NoExecute";
        match find_untolerated_taint(taints, pod.tolerations(), do_not_schedule) {
            None => Ok(()),
            Some(taint) => Err(Rejection::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or_default()
            ))),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &str {
        "TaintToleration"
    }

    /// The number of `PreferNoSchedule` taints not tolerated by the pod's `PreferNoSchedule`
    /// (or effect-less) tolerations.
    fn score(&self, pod: &PodInfo<'_>, node: &NodeInfo) -> i64 {
        let prefer = |t: &&Toleration| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        };
        node.taints()
            .iter()
            .filter(|taint| taint.effect == "PreferNoSchedule")
            .filter(|taint| {
                !pod.tolerations()
                    .iter()
                    .filter(prefer)
                    .any(|tol| tolerates(tol, taint))
            })
            .count() as i64
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
    }

    fn weight(&self) -> i64 {
        3
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};
    use serde_json::json;

    fn tainted(effect: &str) -> NodeInfo {
        node(
            "a",
            json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": effect}]}}),
        )
    }

    #[test]
    fn untolerated_no_schedule_and_no_execute_taints_reject() {
        let p = pod(json!({}));
        let info = PodInfo::new(&p);
        for effect in ["NoSchedule", "NoExecute"] {
            assert_eq!(
                TaintToleration.filter(&info, &tainted(effect)),
                Err(Rejection::unresolvable(
                    "node(s) had untolerated taint {dedicated: db}"
                ))
            );
        }
        assert!(
            TaintToleration
                .filter(&info, &tainted("PreferNoSchedule"))
                .is_ok()
        );
    }

    #[test]
    fn equal_and_exists_tolerations_admit() {
        let equal = pod(
            json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}),
        );
        let exists = pod(json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}));
        let everything = pod(json!({"tolerations": [{"operator": "Exists"}]}));
        let wrong_value = pod(json!({"tolerations": [{"key": "dedicated", "value": "web"}]}));
        let wrong_effect = pod(
            json!({"tolerations": [{"key": "dedicated", "value": "db", "effect": "NoExecute"}]}),
        );
        let node = tainted("NoSchedule");
        assert!(TaintToleration.filter(&PodInfo::new(&equal), &node).is_ok());
        assert!(
            TaintToleration
                .filter(&PodInfo::new(&exists), &node)
                .is_ok()
        );
        assert!(
            TaintToleration
                .filter(&PodInfo::new(&everything), &node)
                .is_ok()
        );
        assert!(
            TaintToleration
                .filter(&PodInfo::new(&wrong_value), &node)
                .is_err()
        );
        assert!(
            TaintToleration
                .filter(&PodInfo::new(&wrong_effect), &node)
                .is_err()
        );
    }

    #[test]
    fn prefer_no_schedule_taints_lower_the_score() {
        let clean = node("a", json!({}));
        let two = node(
            "b",
            json!({"spec": {"taints": [
                {"key": "x", "effect": "PreferNoSchedule"},
                {"key": "y", "effect": "PreferNoSchedule"},
            ]}}),
        );
        let one = node(
            "c",
            json!({"spec": {"taints": [{"key": "x", "effect": "PreferNoSchedule"}]}}),
        );
        let p = pod(json!({}));
        let info = PodInfo::new(&p);
        let mut scores: Vec<i64> = [&clean, &two, &one]
            .iter()
            .map(|n| TaintToleration.score(&info, n))
            .collect();
        assert_eq!(scores, [0, 2, 1]);
        TaintToleration.normalize(&mut scores);
        assert_eq!(scores, [100, 0, 50]);
        let tolerant = pod(
            json!({"tolerations": [{"key": "x", "operator": "Exists", "effect": "PreferNoSchedule"}]}),
        );
        assert_eq!(TaintToleration.score(&PodInfo::new(&tolerant), &two), 1);
        let no_schedule_only = pod(
            json!({"tolerations": [{"key": "x", "operator": "Exists", "effect": "NoSchedule"}]}),
        );
        assert_eq!(
            TaintToleration.score(&PodInfo::new(&no_schedule_only), &two),
            2
        );
    }
}
