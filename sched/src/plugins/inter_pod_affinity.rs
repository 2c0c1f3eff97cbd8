//! InterPodAffinity: `spec.affinity.podAffinity` and `podAntiAffinity`, required (Filter) and
//! preferred (Score), and the required anti-affinity of pods already placed toward the
//! incoming one, with upstream's messages and scoring.

use std::sync::{Arc, OnceLock};

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{FilterPlugin, MAX_NODE_SCORE, ScorePlugin};
use crate::pod_info::PodInfo;
use crate::snapshot::{
    CountKey, DomainCounts, NodeInfo, PodSelector, TermKind, bump, existing_terms,
};
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
    /// The selectors of the required affinity terms (a pod counts if all select it).
    affinity_selectors: Vec<PodSelector>,
    /// No pod anywhere matches every required affinity term.
    no_affinity_match: bool,
    /// The incoming pod matches all its own required affinity terms (first of a group).
    matches_own_affinity: bool,
    /// Per required anti-affinity term: its selector and the domains holding pods it selects.
    anti: Vec<(PodSelector, Domains)>,
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
        st.affinity_selectors = all;
        st.no_affinity_match = st.affinity.iter().all(|(_, c)| c.is_empty());
    }
    for (kind, term) in &own {
        let kind = *kind;
        let sel = || vec![term.selector.clone()];
        match kind {
            TermKind::RequiredAntiAffinity => {
                let counts = counts_of(info, sel(), &term.topology_key);
                st.anti.push((term.selector.clone(), counts))
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

/// Counts `other` (`delta` 1) or stops counting it (-1) on `node` in the PreFilter state
/// (upstream's `preFilterState.updateWithPod`).
fn update(info: &mut PodInfo<'_>, other: &Pod, node: &NodeInfo, delta: i64) {
    state(info);
    let Some(mut st) = info.inter_pod_affinity.take() else {
        return;
    };
    let pod = info.pod();
    let snapshot = info.snapshot();
    let labels = node.labels();
    let own_ns_labels =
        snapshot.namespace_labels(pod.metadata.namespace.as_deref().unwrap_or_default());
    for (kind, term) in existing_terms(other) {
        if kind != TermKind::RequiredAntiAffinity || !term.selector.matches(pod, own_ns_labels) {
            continue;
        }
        if let Some(tv) = labels.get(&term.topology_key) {
            bump_existing(&mut st.existing_anti, &term.topology_key, tv, delta);
        }
    }
    let ns_labels =
        snapshot.namespace_labels(other.metadata.namespace.as_deref().unwrap_or_default());
    if !st.affinity_selectors.is_empty()
        && st
            .affinity_selectors
            .iter()
            .all(|s| s.matches(other, ns_labels))
    {
        for (tk, counts) in &mut st.affinity {
            if let Some(tv) = labels.get(tk) {
                bump(Arc::make_mut(counts), tv, delta);
            }
        }
        st.no_affinity_match = st.affinity.iter().all(|(_, c)| c.is_empty());
    }
    for (selector, (tk, counts)) in &mut st.anti {
        if selector.matches(other, ns_labels)
            && let Some(tv) = labels.get(tk)
        {
            bump(Arc::make_mut(counts), tv, delta);
        }
    }
    info.inter_pod_affinity = OnceLock::from(st);
}

/// Adds `delta` to domain `tv` of topology key `tk` among the existing pods' anti-affinity
/// counts. The filter only asks whether any group holds the domain, so one group of the key
/// may take a pod of another: a pod added goes to the first group of its key (or a new one),
/// a pod removed comes off a group that holds the domain.
fn bump_existing(existing: &mut Vec<Domains>, tk: &str, tv: &str, delta: i64) {
    let group = existing
        .iter_mut()
        .find(|(k, c)| k == tk && (delta > 0 || c.contains_key(tv)));
    match group {
        Some((_, counts)) => bump(Arc::make_mut(counts), tv, delta),
        None if delta > 0 => {
            let mut counts = DomainCounts::new();
            bump(&mut counts, tv, delta);
            existing.push((tk.to_string(), Arc::new(counts)));
        }
        None => {}
    }
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
                    None => return Err(Rejection::unresolvable(AFFINITY_RULES_NOT_MATCH)),
                    Some(false) => pods_exist = false,
                    Some(true) => {}
                }
            }
            // The first pod of a group that selects itself may go anywhere, or it could
            // never start.
            let first_of_group = st.no_affinity_match && st.matches_own_affinity;
            if !pods_exist && !first_of_group {
                // Upstream: removing pods (preemption) cannot make a missing pod appear.
                return Err(Rejection::unresolvable(AFFINITY_RULES_NOT_MATCH));
            }
        }
        if st.anti.iter().any(|(_, d)| has(d, node) == Some(true)) {
            return Err(ANTI_AFFINITY_RULES_NOT_MATCH.into());
        }
        if st.existing_anti.iter().any(|d| has(d, node) == Some(true)) {
            return Err(EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH.into());
        }
        Ok(())
    }

    fn add_pod(&self, pod: &mut PodInfo<'_>, other: &Pod, node: &NodeInfo) {
        update(pod, other, node, 1);
    }

    fn remove_pod(&self, pod: &mut PodInfo<'_>, other: &Pod, node: &NodeInfo) {
        update(pod, other, node, -1);
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
