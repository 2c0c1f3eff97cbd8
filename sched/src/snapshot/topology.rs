//! Counts of placed pods per topology domain, for InterPodAffinity and PodTopologySpread.
//!
//! Upstream recomputes these maps in every PreFilter by walking every pod on every node. Here
//! each distinct question ("pods matching these terms, per value of this node label") is
//! answered once, cached, and kept current as pods are placed and removed, so a scheduling
//! cycle costs O(distinct terms) rather than O(pods). A node or namespace change drops the
//! cache: those are rare, and the next cycle rebuilds what it asks for in O(pods).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};
use kybernetes_core::selector::{LabelSelector, Operator, Requirement};

use super::{NodeInfo, PlacedPod, Snapshot};
use crate::node_selector::NO_LABELS;

/// The namespaces an affinity term or spread constraint selects pods from (upstream's merged
/// `namespaces` and `namespaceSelector`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NamespaceScope {
    names: BTreeSet<String>,
    selector: Option<LabelSelector>,
}

impl NamespaceScope {
    /// Only `namespace`.
    pub fn only(namespace: &str) -> NamespaceScope {
        NamespaceScope {
            names: BTreeSet::from([namespace.to_string()]),
            selector: None,
        }
    }

    /// Whether a pod in `namespace`, whose labels are `labels`, is in scope.
    pub fn matches(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        self.names.contains(namespace) || self.selector.as_ref().is_some_and(|s| s.matches(labels))
    }
}

/// Pods selected by namespace and labels: one affinity term or spread constraint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodSelector {
    /// Where the pods may live.
    pub namespaces: NamespaceScope,
    /// What labels they must have.
    pub labels: LabelSelector,
}

impl PodSelector {
    /// Whether `pod` is selected; `ns_labels` looks up a namespace's labels.
    pub fn matches(&self, pod: &Pod, ns_labels: &BTreeMap<String, String>) -> bool {
        let labels = pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS);
        self.namespaces.matches(
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            ns_labels,
        ) && self.labels.matches(labels)
    }
}

/// A parsed pod affinity term (upstream's `framework.AffinityTerm`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AffinityTerm {
    /// The pods the term is about.
    pub selector: PodSelector,
    /// The node label whose values are the domains.
    pub topology_key: String,
}

impl AffinityTerm {
    /// Parses `term` of `owner`: no namespaces and no namespace selector mean the owner's
    /// namespace; `matchLabelKeys` and `mismatchLabelKeys` become `In`/`NotIn` requirements
    /// on the owner's values, as the API server merges them. `None` when the selector does
    /// not parse (upstream rejects such a pod at validation).
    pub fn parse(term: &PodAffinityTerm, owner: &Pod) -> Option<AffinityTerm> {
        let labels = selector_of(term.label_selector.as_ref())?;
        let labels = with_label_keys(
            labels,
            owner,
            term.match_label_keys.as_deref().unwrap_or_default(),
            term.mismatch_label_keys.as_deref().unwrap_or_default(),
        );
        let owner_ns = owner.metadata.namespace.as_deref().unwrap_or_default();
        let names: BTreeSet<String> = term.namespaces.iter().flatten().cloned().collect();
        let selector = match &term.namespace_selector {
            Some(s) => Some(selector_of(Some(s))?),
            None => None,
        };
        let namespaces = if names.is_empty() && selector.is_none() {
            NamespaceScope::only(owner_ns)
        } else {
            NamespaceScope { names, selector }
        };
        Some(AffinityTerm {
            selector: PodSelector { namespaces, labels },
            topology_key: term.topology_key.clone(),
        })
    }
}

/// A `metav1.LabelSelector` as a selector; `None` (absent) selects nothing, as upstream.
pub fn selector_of(
    s: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
) -> Option<LabelSelector> {
    let Some(s) = s else {
        return Some(LabelSelector::nothing());
    };
    let v = serde_json::to_value(s).ok()?;
    LabelSelector::from_json(&v).ok()
}

/// Adds `key in (v)` for each of `match_keys` and `key notin (v)` for each of
/// `mismatch_keys` that `owner` has a label `key=v` for.
pub fn with_label_keys(
    mut selector: LabelSelector,
    owner: &Pod,
    match_keys: &[String],
    mismatch_keys: &[String],
) -> LabelSelector {
    let labels = owner.metadata.labels.as_ref().unwrap_or(&NO_LABELS);
    for (keys, op) in [(match_keys, Operator::In), (mismatch_keys, Operator::NotIn)] {
        for key in keys {
            if let Some(v) = labels.get(key)
                && let Ok(r) = Requirement::new(key.clone(), op, vec![v.clone()])
            {
                selector.add(r);
            }
        }
    }
    selector
}

/// One cached question: how many pods that every one of `selectors` selects sit in each
/// domain of `topology_key`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CountKey {
    /// All must select the pod.
    pub selectors: Vec<PodSelector>,
    /// Domains are this node label's values; pods on nodes without it are not counted.
    pub topology_key: String,
    /// Leave out pods being deleted (PodTopologySpread does, InterPodAffinity does not).
    pub skip_terminating: bool,
}

/// Pod count per domain (topology value).
pub type DomainCounts = HashMap<String, i64>;

/// How an existing pod's term counts toward an incoming pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TermKind {
    /// `requiredDuringScheduling` anti-affinity: keeps matching pods out of the domain.
    RequiredAntiAffinity,
    /// `requiredDuringScheduling` affinity: scored with the hard pod affinity weight.
    RequiredAffinity,
    /// Preferred affinity with its weight.
    PreferredAffinity(i32),
    /// Preferred anti-affinity with its weight.
    PreferredAntiAffinity(i32),
}

/// The placed pods that share one affinity term, counted per domain of its topology key.
#[derive(Clone, Debug)]
pub struct ExistingTermGroup {
    /// How the term counts.
    pub kind: TermKind,
    /// The term, as its owners' namespaces and labels made it.
    pub term: AffinityTerm,
    /// Owners per domain.
    pub counts: Arc<DomainCounts>,
}

#[derive(Debug, Default)]
struct Cache {
    counts: HashMap<CountKey, Arc<DomainCounts>>,
    /// Existing pods' terms; `None` until first asked for.
    existing: Option<HashMap<(TermKind, AffinityTerm), ExistingTermGroup>>,
    /// Nodes per domain, per topology key.
    domains: HashMap<String, Arc<HashMap<String, usize>>>,
}

/// More distinct questions than this and the cache starts over (each costs every pod event).
const MAX_CACHED: usize = 256;

/// The cached counts and the namespace labels they depend on.
#[derive(Debug, Default)]
pub struct TopologyIndex {
    namespaces: HashMap<String, BTreeMap<String, String>>,
    cache: Mutex<Cache>,
}

impl Clone for TopologyIndex {
    fn clone(&self) -> Self {
        // The cache is derived; a clone rebuilds what it needs.
        TopologyIndex {
            namespaces: self.namespaces.clone(),
            cache: Mutex::default(),
        }
    }
}

/// The terms a pod's `requiredDuringScheduling` and preferred (anti-)affinity hold.
pub fn existing_terms(pod: &Pod) -> Vec<(TermKind, AffinityTerm)> {
    let mut out = Vec::new();
    let Some(aff) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
        return out;
    };
    let parse = |t: &PodAffinityTerm| AffinityTerm::parse(t, pod);
    if let Some(a) = &aff.pod_affinity {
        for t in a
            .required_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
        {
            out.extend(parse(t).map(|t| (TermKind::RequiredAffinity, t)));
        }
        for w in a
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
        {
            out.extend(
                parse(&w.pod_affinity_term).map(|t| (TermKind::PreferredAffinity(w.weight), t)),
            );
        }
    }
    if let Some(a) = &aff.pod_anti_affinity {
        for t in a
            .required_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
        {
            out.extend(parse(t).map(|t| (TermKind::RequiredAntiAffinity, t)));
        }
        for w in a
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
        {
            out.extend(
                parse(&w.pod_affinity_term).map(|t| (TermKind::PreferredAntiAffinity(w.weight), t)),
            );
        }
    }
    out
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

impl TopologyIndex {
    fn lock(&self) -> MutexGuard<'_, Cache> {
        // A panic while holding the lock leaves a cache that is at worst incomplete; clear it.
        self.cache.lock().unwrap_or_else(|poisoned| {
            let mut guard = poisoned.into_inner();
            *guard = Cache::default();
            guard
        })
    }

    fn ns_labels(&self, namespace: &str) -> &BTreeMap<String, String> {
        self.namespaces.get(namespace).unwrap_or(&NO_LABELS)
    }

    /// Drops every cached count (a node changed).
    pub(super) fn invalidate(&mut self) {
        *self.cache.get_mut().unwrap_or_else(|p| p.into_inner()) = Cache::default();
    }

    /// Applies a pod placed (`delta` 1) or removed (-1) on the node with `labels`.
    pub(super) fn on_pod(
        &mut self,
        pod: &Pod,
        labels: Option<&BTreeMap<String, String>>,
        delta: i64,
    ) {
        let Some(labels) = labels else { return };
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let ns_labels = self.namespaces.get(ns).unwrap_or(&NO_LABELS);
        let cache = self.cache.get_mut().unwrap_or_else(|p| p.into_inner());
        for (key, counts) in cache.counts.iter_mut() {
            if key.skip_terminating && is_terminating(pod) {
                continue;
            }
            let Some(tv) = labels.get(&key.topology_key) else {
                continue;
            };
            if key.selectors.iter().all(|s| s.matches(pod, ns_labels)) {
                bump(Arc::make_mut(counts), tv, delta);
            }
        }
        if let Some(existing) = &mut cache.existing {
            add_terms(existing, pod, labels, delta);
        }
    }
}

/// Adds `delta` to the count of domain `tv`, forgetting domains that reach 0.
pub(crate) fn bump(counts: &mut DomainCounts, tv: &str, delta: i64) {
    let c = counts.entry(tv.to_string()).or_default();
    *c += delta;
    if *c <= 0 {
        counts.remove(tv);
    }
}

fn add_terms(
    existing: &mut HashMap<(TermKind, AffinityTerm), ExistingTermGroup>,
    pod: &Pod,
    labels: &BTreeMap<String, String>,
    delta: i64,
) {
    for (kind, term) in existing_terms(pod) {
        let Some(tv) = labels.get(&term.topology_key) else {
            continue;
        };
        let group = existing
            .entry((kind, term.clone()))
            .or_insert_with(|| ExistingTermGroup {
                kind,
                term,
                counts: Arc::default(),
            });
        bump(Arc::make_mut(&mut group.counts), tv, delta);
    }
}

impl Snapshot {
    /// Records a namespace's labels (for `namespaceSelector`); returns whether they changed.
    pub fn upsert_namespace(&mut self, name: &str, labels: BTreeMap<String, String>) -> bool {
        let changed = self.topology.namespaces.get(name) != Some(&labels);
        if changed {
            self.topology.namespaces.insert(name.to_string(), labels);
            self.topology.invalidate();
        }
        changed
    }

    /// Forgets a namespace's labels.
    pub fn remove_namespace(&mut self, name: &str) {
        if self.topology.namespaces.remove(name).is_some() {
            self.topology.invalidate();
        }
    }

    /// Keeps only the namespaces in `names` (after a relist).
    pub fn retain_namespaces(&mut self, names: &std::collections::HashSet<String>) {
        let before = self.topology.namespaces.len();
        self.topology.namespaces.retain(|n, _| names.contains(n));
        if self.topology.namespaces.len() != before {
            self.topology.invalidate();
        }
    }

    /// A namespace's labels (empty when unknown).
    pub fn namespace_labels(&self, name: &str) -> &BTreeMap<String, String> {
        self.topology.ns_labels(name)
    }

    fn placed_with_labels(&self) -> impl Iterator<Item = (&PlacedPod, &BTreeMap<String, String>)> {
        self.pods
            .values()
            .filter_map(|p| self.node(&p.node).map(|n| (p, n.labels())))
    }

    /// How many placed pods each domain of `key.topology_key` holds among the pods all of
    /// `key.selectors` select; cached and kept current.
    pub fn domain_counts(&self, key: &CountKey) -> Arc<DomainCounts> {
        if let Some(c) = self.topology.lock().counts.get(key) {
            return c.clone();
        }
        let mut counts = DomainCounts::new();
        for (placed, labels) in self.placed_with_labels() {
            let pod = &placed.pod;
            if key.skip_terminating && is_terminating(pod) {
                continue;
            }
            let Some(tv) = labels.get(&key.topology_key) else {
                continue;
            };
            let ns_labels = self
                .topology
                .ns_labels(pod.metadata.namespace.as_deref().unwrap_or_default());
            if key.selectors.iter().all(|s| s.matches(pod, ns_labels)) {
                *counts.entry(tv.clone()).or_default() += 1;
            }
        }
        let counts = Arc::new(counts);
        let mut cache = self.topology.lock();
        if cache.counts.len() >= MAX_CACHED {
            cache.counts.clear();
        }
        cache.counts.insert(key.clone(), counts.clone());
        counts
    }

    /// Calls `f` with each group of placed pods sharing an affinity term (kept current).
    pub fn for_each_existing_term(&self, mut f: impl FnMut(&ExistingTermGroup)) {
        let mut cache = self.topology.lock();
        let existing = cache.existing.get_or_insert_with(|| {
            let mut existing = HashMap::new();
            for (placed, labels) in self.placed_with_labels() {
                add_terms(&mut existing, &placed.pod, labels, 1);
            }
            existing
        });
        existing.values().for_each(&mut f);
    }

    /// How many nodes carry each value of the label `topology_key` (cached).
    pub fn domains(&self, topology_key: &str) -> Arc<HashMap<String, usize>> {
        if let Some(d) = self.topology.lock().domains.get(topology_key) {
            return d.clone();
        }
        let mut domains = HashMap::new();
        for n in &self.nodes {
            if let Some(tv) = n.labels().get(topology_key) {
                *domains.entry(tv.clone()).or_insert(0) += 1;
            }
        }
        let domains = Arc::new(domains);
        self.topology
            .lock()
            .domains
            .insert(topology_key.to_string(), domains.clone());
        domains
    }

    /// Every placed pod with the node it is on (pods on unknown nodes are left out).
    pub fn placed_pods(&self) -> impl Iterator<Item = (&Pod, &NodeInfo)> {
        self.pods
            .values()
            .filter_map(|p| self.node(&p.node).map(|n| (p.pod.as_ref(), n)))
    }
}
