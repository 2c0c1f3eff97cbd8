//! Node selector terms, parsed once per scheduling cycle (upstream's
//! `component-helpers/scheduling/corev1/nodeaffinity`).
//!
//! A term ANDs its `matchExpressions` (over node labels) and `matchFields` (over
//! `metadata.name`); a node selector ORs its terms. A term that is empty or does not parse
//! matches no node, as upstream's `LazyErrorNodeSelector` treats it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec,
};
use kybernetes_core::selector::{Operator, Requirement};

use crate::snapshot::NodeInfo;

/// One parsed `NodeSelectorTerm`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSelectorMatcher {
    labels: Vec<Requirement>,
    /// `metadata.name` requirements: (`In` = true / `NotIn` = false, the name).
    names: Vec<(bool, String)>,
}

impl NodeSelectorMatcher {
    /// Parses a term; `None` when it is empty or invalid (it then matches nothing).
    pub fn parse(term: &NodeSelectorTerm) -> Option<NodeSelectorMatcher> {
        let exprs = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        if exprs.is_empty() && fields.is_empty() {
            return None;
        }
        let labels = exprs
            .iter()
            .map(label_requirement)
            .collect::<Option<Vec<_>>>()?;
        let names = fields
            .iter()
            .map(field_requirement)
            .collect::<Option<Vec<_>>>()?;
        Some(NodeSelectorMatcher { labels, names })
    }

    /// Whether the node satisfies every requirement of the term.
    pub fn matches(&self, node: &NodeInfo) -> bool {
        let labels = node.labels();
        self.labels.iter().all(|r| r.matches(labels))
            && self
                .names
                .iter()
                .all(|(is_in, name)| (node.name() == name) == *is_in)
    }
}

fn label_requirement(expr: &NodeSelectorRequirement) -> Option<Requirement> {
    let op = match expr.operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::GreaterThan,
        "Lt" => Operator::LessThan,
        _ => return None,
    };
    Requirement::new(
        expr.key.clone(),
        op,
        expr.values.clone().unwrap_or_default(),
    )
    .ok()
}

/// Upstream's `nodeSelectorRequirementsAsFieldSelector`: only `metadata.name` with `In` or
/// `NotIn` and exactly one value.
fn field_requirement(expr: &NodeSelectorRequirement) -> Option<(bool, String)> {
    if expr.key != "metadata.name" {
        return None;
    }
    let [value] = expr.values.as_deref()? else {
        return None;
    };
    match expr.operator.as_str() {
        "In" => Some((true, value.clone())),
        "NotIn" => Some((false, value.clone())),
        _ => None,
    }
}

/// Parsed terms of a `NodeSelector`: a node matches when any term does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeSelectorTerms {
    terms: Vec<NodeSelectorMatcher>,
}

impl NodeSelectorTerms {
    /// Parses a node selector, dropping empty or invalid terms.
    pub fn parse(selector: &NodeSelector) -> NodeSelectorTerms {
        NodeSelectorTerms {
            terms: selector
                .node_selector_terms
                .iter()
                .filter_map(NodeSelectorMatcher::parse)
                .collect(),
        }
    }

    /// Whether any term matches the node (none does when there are no terms).
    pub fn matches(&self, node: &NodeInfo) -> bool {
        self.terms.iter().any(|t| t.matches(node))
    }
}

/// A pod's hard node constraints: `spec.nodeSelector` and required node affinity (upstream's
/// `RequiredNodeAffinity`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequiredNodeAffinity {
    node_selector: Vec<(String, String)>,
    affinity: Option<NodeSelectorTerms>,
}

impl RequiredNodeAffinity {
    /// Reads the constraints from a pod spec.
    pub fn of(spec: &PodSpec) -> RequiredNodeAffinity {
        let node_selector = spec
            .node_selector
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let affinity = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(NodeSelectorTerms::parse);
        RequiredNodeAffinity {
            node_selector,
            affinity,
        }
    }

    /// Whether the pod has any hard node constraint.
    pub fn is_empty(&self) -> bool {
        self.node_selector.is_empty() && self.affinity.is_none()
    }

    /// Whether the node satisfies the node selector and the required affinity.
    pub fn matches(&self, node: &NodeInfo) -> bool {
        let labels = node.labels();
        self.node_selector
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.affinity.as_ref().is_none_or(|a| a.matches(node))
    }
}

/// A pod's preferred node affinity: (weight, term) pairs, weight-0 and empty terms dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreferredNodeAffinity {
    terms: Vec<(i64, NodeSelectorMatcher)>,
}

impl PreferredNodeAffinity {
    /// Reads the preferred terms from a pod spec.
    pub fn of(spec: &PodSpec) -> PreferredNodeAffinity {
        let terms = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .filter(|t| t.weight != 0)
            .filter_map(|t| {
                NodeSelectorMatcher::parse(&t.preference).map(|m| (i64::from(t.weight), m))
            })
            .collect();
        PreferredNodeAffinity { terms }
    }

    /// Whether the pod has no preferred terms.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The sum of the weights of the terms the node matches.
    pub fn score(&self, node: &NodeInfo) -> i64 {
        self.terms
            .iter()
            .filter(|(_, t)| t.matches(node))
            .map(|(w, _)| *w)
            .sum()
    }
}

/// The empty label map, for nodes without labels.
pub(crate) static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
