//! PodTopologySpread: `spec.topologySpreadConstraints`, `DoNotSchedule` ones as a filter and
//! `ScheduleAnyway` ones as a score, with upstream's skew, `minDomains`, node inclusion
//! policies, `matchLabelKeys`, messages and scoring.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use k8s_openapi::api::core::v1::{Pod, Taint, TopologySpreadConstraint};

use crate::framework::{FilterPlugin, MAX_NODE_SCORE, ScorePlugin};
use crate::node_selector::NO_LABELS;
use crate::plugins::find_untolerated_taint;
use crate::pod_info::PodInfo;
use crate::snapshot::{
    CountKey, DomainCounts, NamespaceScope, NodeInfo, PodSelector, bump, selector_of,
    with_label_keys,
};
use crate::unschedulable::Rejection;

/// Upstream's `ErrReasonConstraintsNotMatch`.
pub const CONSTRAINTS_NOT_MATCH: &str = "node(s) didn't match pod topology spread constraints";
/// Upstream's `ErrReasonNodeLabelNotMatch`.
pub const NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// Upstream's PodTopologySpread plugin (default score weight 2).
///
/// A pod without constraints of its own is scored with upstream's system defaults
/// (`defaultingType: System`): `maxSkew` 3 over `kubernetes.io/hostname` and 5 over
/// `topology.kubernetes.io/zone`, both `ScheduleAnyway`, over the pods selected by the
/// Services, ReplicationControllers, ReplicaSets and StatefulSets that select it. So the
/// replicas of a Deployment spread over nodes and zones with no configuration.
///
/// Other defaults come from [`with_default_constraints`](PodTopologySpread::with_default_constraints)
/// (upstream's `defaultingType: List`).
///
/// ```
/// use kybernetes_sched::plugins::PodTopologySpread;
/// assert!(PodTopologySpread::default().system_defaults());
/// assert!(!PodTopologySpread::without_system_defaults().system_defaults());
/// let zones = PodTopologySpread::with_default_constraints([("topology.kubernetes.io/zone", 1)]);
/// assert_eq!(zones.default_constraints(), [("topology.kubernetes.io/zone".to_string(), 1)]);
/// ```
#[derive(Clone, Debug)]
pub struct PodTopologySpread {
    /// The `ScheduleAnyway` constraints (topology key, `maxSkew`) of a pod without its own.
    defaults: Arc<[(String, i64)]>,
    /// The defaults are upstream's system defaults (`defaultingType: System`): a node lacking
    /// one of their keys is still scored on the others.
    system: bool,
}

impl Default for PodTopologySpread {
    fn default() -> PodTopologySpread {
        PodTopologySpread {
            defaults: SYSTEM_DEFAULT_CONSTRAINTS
                .iter()
                .map(|(key, skew)| ((*key).to_string(), *skew))
                .collect(),
            system: true,
        }
    }
}

impl PodTopologySpread {
    /// Upstream's `defaultingType: List` with no `defaultConstraints`: pods without
    /// constraints are not spread by this plugin.
    pub fn without_system_defaults() -> PodTopologySpread {
        PodTopologySpread::with_default_constraints(std::iter::empty::<(String, i64)>())
    }

    /// Upstream's `defaultingType: List`: a pod without constraints of its own is scored
    /// with these `ScheduleAnyway` constraints (topology key, `maxSkew`), over the pods
    /// selected by the Services and controllers that select it.
    pub fn with_default_constraints<K: Into<String>>(
        constraints: impl IntoIterator<Item = (K, i64)>,
    ) -> PodTopologySpread {
        PodTopologySpread {
            defaults: constraints
                .into_iter()
                .map(|(key, skew)| (key.into(), skew))
                .collect(),
            system: false,
        }
    }

    /// Whether pods without constraints get the system default constraints.
    pub fn system_defaults(&self) -> bool {
        self.system
    }

    /// The default constraints (topology key, `maxSkew`) of pods without their own.
    pub fn default_constraints(&self) -> &[(String, i64)] {
        &self.defaults
    }
}

/// Upstream's system default constraints: topology key and `maxSkew`.
const SYSTEM_DEFAULT_CONSTRAINTS: [(&str, i64); 2] = [
    ("kubernetes.io/hostname", 3),
    ("topology.kubernetes.io/zone", 5),
];

/// One constraint, parsed.
#[derive(Clone, Debug)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    selector: PodSelector,
    min_domains: usize,
    /// `nodeAffinityPolicy: Honor` (the default): only nodes the pod's node selector and
    /// required node affinity accept count.
    affinity_honor: bool,
    /// `nodeTaintsPolicy: Honor`: only nodes whose taints the pod tolerates count.
    taints_honor: bool,
}

/// A constraint with the counts of its eligible domains.
#[derive(Clone, Debug)]
struct Counted {
    c: Constraint,
    counts: Arc<DomainCounts>,
    /// How many eligible domains there are.
    domains: usize,
    /// The fewest matching pods in an eligible domain (0 below `minDomains`).
    min_match: i64,
}

/// What PreFilter and PreScore work out once per cycle.
#[derive(Clone, Debug, Default)]
pub struct TopologySpreadState {
    /// `DoNotSchedule` constraints.
    hard: Vec<Counted>,
    /// Whether the pod matches each hard constraint's own selector.
    self_match: Vec<i64>,
    /// `ScheduleAnyway` constraints, with upstream's `log(domains + 2)` weights.
    soft: Vec<(Counted, f64)>,
    /// The soft constraints are the system defaults: a node lacking one's key is still scored
    /// on the others, where explicit constraints leave such a node out.
    system_defaulted: bool,
}

fn state<'p>(pod: &'p PodInfo<'_>) -> &'p TopologySpreadState {
    pod.topology_spread.get_or_init(|| compute(pod))
}

fn parse(info: &PodInfo<'_>, c: &TopologySpreadConstraint) -> Option<Constraint> {
    let pod = info.pod();
    let labels = with_label_keys(
        selector_of(c.label_selector.as_ref())?,
        pod,
        c.match_label_keys.as_deref().unwrap_or_default(),
        &[],
    );
    Some(Constraint {
        max_skew: i64::from(c.max_skew),
        topology_key: c.topology_key.clone(),
        selector: PodSelector {
            namespaces: NamespaceScope::only(pod.metadata.namespace.as_deref().unwrap_or_default()),
            labels,
        },
        min_domains: c.min_domains.map_or(1, |m| m.max(1) as usize),
        affinity_honor: c.node_affinity_policy.as_deref() != Some("Ignore"),
        taints_honor: c.node_taints_policy.as_deref() == Some("Honor"),
    })
}

fn compute(info: &PodInfo<'_>) -> TopologySpreadState {
    let constraints = info
        .pod()
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_deref())
        .unwrap_or_default();
    let (mut hard, mut soft) = (Vec::new(), Vec::new());
    for c in constraints {
        let Some(parsed) = parse(info, c) else {
            continue;
        };
        if c.when_unsatisfiable == "DoNotSchedule" {
            hard.push(parsed);
        } else {
            soft.push(parsed);
        }
    }
    let pod_labels = info.pod().metadata.labels.as_ref().unwrap_or(&NO_LABELS);
    let self_match = hard
        .iter()
        .map(|c| i64::from(c.selector.labels.matches(pod_labels)))
        .collect();
    TopologySpreadState {
        hard: count(info, hard, true),
        self_match,
        soft: weighted(count(info, soft, true)),
        system_defaulted: false,
    }
}

/// Upstream's `log(domains + 2)` weight of each soft constraint.
fn weighted(counted: Vec<Counted>) -> Vec<(Counted, f64)> {
    counted
        .into_iter()
        .map(|c| {
            let w = ((c.domains + 2) as f64).ln();
            (c, w)
        })
        .collect()
}

fn has_own_constraints(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .is_some_and(|c| !c.is_empty())
}

/// The default constraints of a pod without its own (upstream's `buildDefaultConstraints`),
/// counted; none when nothing selects the pod.
fn default_state(info: &PodInfo<'_>, plugin: &PodTopologySpread) -> TopologySpreadState {
    let pod = info.pod();
    let selector = info.snapshot().spreading_owners().default_selector(pod);
    let soft = match selector {
        Some(labels) if !plugin.defaults.is_empty() => {
            let constraints = plugin
                .defaults
                .iter()
                .map(|(key, skew)| Constraint {
                    max_skew: *skew,
                    topology_key: key.clone(),
                    selector: PodSelector {
                        namespaces: NamespaceScope::only(
                            pod.metadata.namespace.as_deref().unwrap_or_default(),
                        ),
                        labels: labels.clone(),
                    },
                    min_domains: 1,
                    affinity_honor: true,
                    taints_honor: false,
                })
                .collect();
            weighted(count(info, constraints, !plugin.system))
        }
        _ => Vec::new(),
    };
    TopologySpreadState {
        hard: Vec::new(),
        self_match: Vec::new(),
        soft,
        system_defaulted: plugin.system,
    }
}

/// The soft constraints the score uses: the pod's own, or the plugin's defaults when it has
/// none.
fn soft_state<'p>(
    pod: &'p PodInfo<'_>,
    plugin: &PodTopologySpread,
) -> Option<&'p TopologySpreadState> {
    if has_own_constraints(pod.pod()) {
        return Some(state(pod));
    }
    if plugin.defaults.is_empty() {
        return None;
    }
    Some(
        pod.default_topology_spread
            .get_or_init(|| default_state(pod, plugin)),
    )
}

fn has_all_keys(node: &NodeInfo, constraints: &[Constraint]) -> bool {
    let labels = node.labels();
    constraints
        .iter()
        .all(|c| labels.contains_key(&c.topology_key))
}

fn tolerated(info: &PodInfo<'_>, node: &NodeInfo) -> bool {
    let do_not_schedule = |t: &Taint| t.effect == "NoSchedule" || t.effect == "NoExecute";
    find_untolerated_taint(node.taints(), info.tolerations(), do_not_schedule).is_none()
}

/// Counts the matching pods per eligible domain of each constraint. Eligible nodes pass the
/// constraint's node inclusion policies and have its key, and, with `require_all_keys`,
/// every constraint's key (upstream's `requireAllTopologies`, off only for system defaults).
fn count(info: &PodInfo<'_>, constraints: Vec<Constraint>, require_all_keys: bool) -> Vec<Counted> {
    if constraints.is_empty() {
        return Vec::new();
    }
    let snapshot = info.snapshot();
    let node_affinity = info.required_affinity();
    let no_policy = constraints
        .iter()
        .all(|c| !c.taints_honor && (!c.affinity_honor || node_affinity.is_empty()));
    let domains: Vec<_> = constraints
        .iter()
        .map(|c| snapshot.domains(&c.topology_key))
        .collect();
    // Every node has every key when each key's domains cover all nodes.
    let all_keyed = !require_all_keys
        || constraints.len() == 1
        || domains
            .iter()
            .all(|d| d.values().sum::<usize>() == snapshot.num_nodes());
    if no_policy && all_keyed {
        // The common case: every node with the key is eligible, and the snapshot keeps the
        // counts current.
        return constraints
            .into_iter()
            .zip(domains)
            .map(|(c, d)| {
                let counts = snapshot.domain_counts(&CountKey {
                    selectors: vec![c.selector.clone()],
                    topology_key: c.topology_key.clone(),
                    skip_terminating: true,
                });
                counted(c, counts, d.len(), d.keys())
            })
            .collect();
    }
    // Policies or partly labelled nodes: one pass over nodes and pods.
    let eligible = |c: &Constraint, n: &NodeInfo| {
        (if require_all_keys {
            has_all_keys(n, &constraints)
        } else {
            n.labels().contains_key(&c.topology_key)
        }) && (!c.affinity_honor || node_affinity.matches(n))
            && (!c.taints_honor || tolerated(info, n))
    };
    let mut domain_sets: Vec<HashSet<&str>> = vec![HashSet::new(); constraints.len()];
    for n in snapshot.nodes() {
        for (i, c) in constraints.iter().enumerate() {
            if eligible(c, n)
                && let Some(tv) = n.labels().get(&c.topology_key)
            {
                domain_sets[i].insert(tv.as_str());
            }
        }
    }
    let mut counts: Vec<DomainCounts> = vec![HashMap::new(); constraints.len()];
    for (pod, n) in snapshot.placed_pods() {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let ns_labels =
            snapshot.namespace_labels(pod.metadata.namespace.as_deref().unwrap_or_default());
        for (i, c) in constraints.iter().enumerate() {
            if let Some(tv) = n.labels().get(&c.topology_key)
                && domain_sets[i].contains(tv.as_str())
                && eligible(c, n)
                && c.selector.matches(pod, ns_labels)
            {
                *counts[i].entry(tv.clone()).or_default() += 1;
            }
        }
    }
    constraints
        .into_iter()
        .zip(counts)
        .zip(&domain_sets)
        .map(|((c, counts), set)| counted(c, Arc::new(counts), set.len(), set.iter().copied()))
        .collect()
}

fn counted<'d, S: AsRef<str> + 'd>(
    c: Constraint,
    counts: Arc<DomainCounts>,
    domains: usize,
    names: impl Iterator<Item = S>,
) -> Counted {
    let mut counted = Counted {
        c,
        counts,
        domains,
        min_match: 0,
    };
    counted.min_match = min_match(&counted, names);
    counted
}

/// The fewest matching pods in an eligible domain of `k`, among the domains `names`.
fn min_match<'d, S: AsRef<str> + 'd>(k: &Counted, names: impl Iterator<Item = S>) -> i64 {
    if k.domains < k.c.min_domains || k.counts.len() < k.domains {
        // Too few domains count as a minimum of 0 (upstream's minDomains), and so does a
        // domain without any matching pod; neither needs a walk over the domains.
        return 0;
    }
    names
        .map(|d| k.counts.get(d.as_ref()).copied().unwrap_or(0))
        .min()
        .unwrap_or(0)
}

/// Counts `other` (`delta` 1) or stops counting it (-1) on `node` in the hard constraints'
/// state (upstream's `preFilterState.updateWithPod`). Pods being deleted were never counted.
fn update(info: &mut PodInfo<'_>, other: &Pod, node: &NodeInfo, delta: i64) {
    if other.metadata.deletion_timestamp.is_some() {
        return;
    }
    state(info);
    let Some(mut st) = info.topology_spread.take() else {
        return;
    };
    let labels = node.labels();
    if st
        .hard
        .iter()
        .all(|k| labels.contains_key(&k.c.topology_key))
    {
        let ns_labels = info
            .snapshot()
            .namespace_labels(other.metadata.namespace.as_deref().unwrap_or_default());
        for k in &mut st.hard {
            let eligible = (!k.c.affinity_honor || info.required_affinity().matches(node))
                && (!k.c.taints_honor || tolerated(info, node));
            if !eligible || !k.c.selector.matches(other, ns_labels) {
                continue;
            }
            if let Some(tv) = labels.get(&k.c.topology_key) {
                bump(Arc::make_mut(&mut k.counts), tv, delta);
                // Every eligible domain has a count once none is missing, so the counts'
                // own keys are the domains to take the minimum over.
                let m = min_match(k, k.counts.keys());
                k.min_match = m;
            }
        }
    }
    info.topology_spread = OnceLock::from(st);
}

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &str {
        "PodTopologySpread"
    }

    fn pre_filter(&self, pod: &PodInfo<'_>) -> bool {
        !state(pod).hard.is_empty()
    }

    fn filter(&self, pod: &PodInfo<'_>, node: &NodeInfo) -> Result<(), Rejection> {
        let st = state(pod);
        let labels = node.labels();
        for (k, self_match) in st.hard.iter().zip(&st.self_match) {
            let Some(tv) = labels.get(&k.c.topology_key) else {
                return Err(Rejection::unresolvable(NODE_LABEL_NOT_MATCH));
            };
            let match_num = k.counts.get(tv).copied().unwrap_or(0);
            if match_num + self_match - k.min_match > k.c.max_skew {
                return Err(CONSTRAINTS_NOT_MATCH.into());
            }
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

/// The raw score of a node lacking a soft constraint's key: left out of normalizing, then 0.
const IGNORED: i64 = i64::MIN;

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &str {
        "PodTopologySpread"
    }

    fn pre_score(&self, pod: &PodInfo<'_>) -> bool {
        soft_state(pod, self).is_some_and(|st| !st.soft.is_empty())
    }

    fn score(&self, pod: &PodInfo<'_>, node: &NodeInfo) -> i64 {
        let Some(st) = soft_state(pod, self) else {
            return 0;
        };
        let labels = node.labels();
        let mut score = 0.0;
        for (k, weight) in &st.soft {
            let Some(tv) = labels.get(&k.c.topology_key) else {
                if st.system_defaulted {
                    continue;
                }
                return IGNORED;
            };
            let n = k.counts.get(tv).copied().unwrap_or(0);
            score += n as f64 * weight + (k.c.max_skew - 1) as f64;
        }
        score.round() as i64
    }

    /// Upstream's: fewer matching pods score higher, `100 * (max + min - s) / max`.
    fn normalize(&self, scores: &mut [i64]) {
        let valid = || scores.iter().copied().filter(|&s| s != IGNORED);
        let min = valid().min().unwrap_or(0);
        let max = valid().max().unwrap_or(0);
        for s in scores.iter_mut() {
            *s = if *s == IGNORED {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
    }

    fn weight(&self) -> i64 {
        2
    }
}
