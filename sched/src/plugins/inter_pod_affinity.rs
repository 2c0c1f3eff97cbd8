//! InterPodAffinity: `spec.affinity.podAffinity` and `podAntiAffinity`, required (Filter) and
//! preferred (Score), and the required anti-affinity of pods already placed toward the
//! incoming one, with upstream's messages and scoring.

use std::sync::Arc;

use crate::framework::{FilterPlugin, MAX_NODE_SCORE, ScorePlugin};
use crate::pod_info::PodInfo;
use crate::snapshot::{CountKey, DomainCounts, NodeInfo, PodSelector, TermKind, existing_terms};
use crate::unschedulable::Rejection;

/// Upstream's `ErrReasonAffinityRulesNotMatch`.
pub const AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod affinity rules";
/// Upstream's `ErrReasonAntiAffinityRulesNotMatch`.
pub const ANTI_AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod anti-affinity rules";
/// Upstream's `ErrReasonExistingAntiAffinityRulesNotMatch`.
pub const EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Upstream's default `hardPodAffinityWeight`: how much an existing pod's required affinity
/// toward the incoming pod counts in scoring.
pub const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Upstream's InterPodAffinity plugin (default score weight 2).
#[derive(Clone, Copy, Debug, Default)]
pub struct InterPodAffinity;

/// Counts per domain of one topology key.
type Domains = (String, Arc<DomainCounts>);

/// What PreFilter and PreScore work out once per cycle.
#[derive(Clone, Debug, Default)]
pub struct InterPodAffinityState {
    /// Domains holding a placed pod whose required anti-affinity selects the incoming pod.
    existing_anti: Vec<Domains>,
    /// Per required affinity term: domains holding pods that match every term.
    affinity: Vec<Domains>,
    /// No pod anywhere matches every required affinity term.
    no_affinity_match: bool,
    /// The incoming pod matches all its own required affinity terms (first of a group).
    matches_own_affinity: bool,
    /// Per required anti-affinity term: domains holding pods it selects.
    anti: Vec<Domains>,
    /// Weighted domain counts whose sum is a node's raw score.
    scores: Vec<(String, i64, Arc<DomainCounts>)>,
}

fn state<'p>(pod: &'p PodInfo<'_>) -> &'p InterPodAffinityState {
    pod.inter_pod_affinity.get_or_init(|| compute(pod))
}

fn counts_of(pod: &PodInfo<'_>, selectors: Vec<PodSelector>, topology_key: &str) -> Domains {
    let key = CountKey {
        selectors,
        topology_key: topology_key.to_string(),
        skip_terminating: false,
    };
    (topology_key.to_string(), pod.snapshot().domain_counts(&key))
}

fn compute(info: &PodInfo<'_>) -> InterPodAffinityState {
    let pod = info.pod();
    let snapshot = info.snapshot();
    let ns_labels =
        snapshot.namespace_labels(pod.metadata.namespace.as_deref().unwrap_or_default());
    let mut st = InterPodAffinityState::default();
    let own = existing_terms(pod);
    let required: Vec<_> = own
        .iter()
        .filter(|(k, _)| *k == TermKind::RequiredAffinity)
        .map(|(_, t)| t)
        .collect();
    if !required.is_empty() {
        let all: Vec<PodSelector> = required.iter().map(|t| t.selector.clone()).collect();
        st.matches_own_affinity = all.iter().all(|s| s.matches(pod, ns_labels));
        st.affinity = required
            .iter()
            .map(|t| counts_of(info, all.clone(), &t.topology_key))
            .collect();
        st.no_affinity_match = st.affinity.iter().all(|(_, c)| c.is_empty());
    }
    for (kind, term) in &own {
        let kind = *kind;
        let sel = || vec![term.selector.clone()];
        match kind {
            TermKind::RequiredAntiAffinity => {
                st.anti.push(counts_of(info, sel(), &term.topology_key))
            }
            TermKind::RequiredAffinity => {}
            TermKind::PreferredAffinity(w) | TermKind::PreferredAntiAffinity(w) => {
                let sign = if matches!(kind, TermKind::PreferredAffinity(_)) {
                    1
                } else {
                    -1
                };
                let (tk, c) = counts_of(info, sel(), &term.topology_key);
                if !c.is_empty() && w != 0 {
                    st.scores.push((tk, sign * i64::from(w), c));
                }
            }
        }
    }
    snapshot.for_each_existing_term(|group| {
        if group.counts.is_empty() || !group.term.selector.matches(pod, ns_labels) {
            return;
        }
        let tk = group.term.topology_key.clone();
        let weight = match group.kind {
            TermKind::RequiredAntiAffinity => {
                st.existing_anti.push((tk, group.counts.clone()));
                return;
            }
            TermKind::RequiredAffinity => HARD_POD_AFFINITY_WEIGHT,
            TermKind::PreferredAffinity(w) => i64::from(w),
            TermKind::PreferredAntiAffinity(w) => -i64::from(w),
        };
        if weight != 0 {
            st.scores.push((tk, weight, group.counts.clone()));
        }
    });
    st
}

fn has(domains: &Domains, node: &NodeInfo) -> Option<bool> {
    node.labels()
        .get(&domains.0)
        .map(|tv| domains.1.contains_key(tv))
}

impl FilterPlugin for InterPodAffinity {
    fn name(&self) -> &str {
        "InterPodAffinity"
    }

    fn pre_filter(&self, pod: &PodInfo<'_>) -> bool {
        let st = state(pod);
        !(st.existing_anti.is_empty() && st.affinity.is_empty() && st.anti.is_empty())
    }

    fn filter(&self, pod: &PodInfo<'_>, node: &NodeInfo) -> Result<(), Rejection> {
        let st = state(pod);
        if !st.affinity.is_empty() {
            let mut pods_exist = true;
            for d in &st.affinity {
                match has(d, node) {
                    // Every topology key of the terms must be on the node.
                    None => return Err(AFFINITY_RULES_NOT_MATCH.into()),
                    Some(false) => pods_exist = false,
                    Some(true) => {}
                }
            }
            // The first pod of a group that selects itself may go anywhere, or it could
            // never start.
            let first_of_group = st.no_affinity_match && st.matches_own_affinity;
            if !pods_exist && !first_of_group {
                return Err(AFFINITY_RULES_NOT_MATCH.into());
            }
        }
        if st.anti.iter().any(|d| has(d, node) == Some(true)) {
            return Err(ANTI_AFFINITY_RULES_NOT_MATCH.into());
        }
        if st.existing_anti.iter().any(|d| has(d, node) == Some(true)) {
            return Err(EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH.into());
        }
        Ok(())
    }
}

impl ScorePlugin for InterPodAffinity {
    fn name(&self) -> &str {
        "InterPodAffinity"
    }

    fn pre_score(&self, pod: &PodInfo<'_>) -> bool {
        !state(pod).scores.is_empty()
    }

    fn score(&self, pod: &PodInfo<'_>, node: &NodeInfo) -> i64 {
        let labels = node.labels();
        state(pod)
            .scores
            .iter()
            .filter_map(|(tk, w, c)| labels.get(tk).and_then(|tv| c.get(tv)).map(|n| w * n))
            .sum()
    }

    /// Upstream's min–max scaling to `0..=100` (all 0 when every node scores the same).
    fn normalize(&self, scores: &mut [i64]) {
        let (Some(&min), Some(&max)) = (scores.iter().min(), scores.iter().max()) else {
            return;
        };
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64
            } else {
                0
            };
        }
    }

    fn weight(&self) -> i64 {
        2
    }
}
