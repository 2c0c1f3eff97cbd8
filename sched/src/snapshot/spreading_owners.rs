//! The selectors of the objects that spread pods (Services, ReplicationControllers,
//! ReplicaSets, StatefulSets), from which PodTopologySpread builds a pod's system default
//! constraints (upstream's `helper.DefaultSelector`).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController, Service};
use kybernetes_core::selector::{LabelSelector, Operator, Requirement};

use super::topology::selector_of;
use crate::node_selector::NO_LABELS;

/// One object's pod selector.
#[derive(Clone, Debug, PartialEq)]
enum OwnerSelector {
    /// A Service's or ReplicationController's map selector.
    Map(BTreeMap<String, String>),
    /// A ReplicaSet's or StatefulSet's label selector.
    Labels(LabelSelector),
}

impl OwnerSelector {
    fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            OwnerSelector::Map(m) => m.iter().all(|(k, v)| labels.get(k) == Some(v)),
            // Upstream's listers skip an empty selector: it would select every pod.
            OwnerSelector::Labels(s) => !s.is_empty() && s.matches(labels),
        }
    }
}

/// Which kind of spreading object, for its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OwnerKind {
    /// A Service.
    Service,
    /// A ReplicationController.
    ReplicationController,
    /// A ReplicaSet.
    ReplicaSet,
    /// A StatefulSet.
    StatefulSet,
}

/// The pod selectors of the spreading objects, by namespace.
#[derive(Clone, Debug, Default)]
pub struct SpreadingOwners {
    by_namespace: HashMap<String, HashMap<(OwnerKind, String), OwnerSelector>>,
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

impl SpreadingOwners {
    fn put(&mut self, kind: OwnerKind, ns: String, name: String, s: Option<OwnerSelector>) {
        match s {
            Some(s) => {
                self.by_namespace
                    .entry(ns)
                    .or_default()
                    .insert((kind, name), s);
            }
            None => self.remove(kind, &ns, &name),
        }
    }

    /// Removes an object that is gone.
    pub fn remove(&mut self, kind: OwnerKind, namespace: &str, name: &str) {
        if let Some(owners) = self.by_namespace.get_mut(namespace) {
            owners.remove(&(kind, name.to_string()));
            if owners.is_empty() {
                self.by_namespace.remove(namespace);
            }
        }
    }

    /// Keeps only the objects of `kind` whose `namespace/name` keys are in `keys` (after a
    /// relist).
    pub fn retain(&mut self, kind: OwnerKind, keys: &std::collections::HashSet<String>) {
        for (ns, owners) in &mut self.by_namespace {
            owners.retain(|(k, name), _| *k != kind || keys.contains(&format!("{ns}/{name}")));
        }
        self.by_namespace.retain(|_, owners| !owners.is_empty());
    }

    /// Records a Service's selector (a Service without one selects no pods).
    pub fn upsert_service(&mut self, s: &Service) {
        let (ns, name) = key_of(&s.metadata);
        let selector = s
            .spec
            .as_ref()
            .and_then(|spec| spec.selector.clone())
            .filter(|m| !m.is_empty())
            .map(OwnerSelector::Map);
        self.put(OwnerKind::Service, ns, name, selector);
    }

    /// Records a ReplicationController's selector.
    pub fn upsert_replication_controller(&mut self, rc: &ReplicationController) {
        let (ns, name) = key_of(&rc.metadata);
        let selector = rc
            .spec
            .as_ref()
            .and_then(|spec| spec.selector.clone())
            .filter(|m| !m.is_empty())
            .map(OwnerSelector::Map);
        self.put(OwnerKind::ReplicationController, ns, name, selector);
    }

    /// Records a ReplicaSet's selector.
    pub fn upsert_replica_set(&mut self, rs: &ReplicaSet) {
        let (ns, name) = key_of(&rs.metadata);
        let selector = rs
            .spec
            .as_ref()
            .and_then(|spec| selector_of(Some(&spec.selector)))
            .map(OwnerSelector::Labels);
        self.put(OwnerKind::ReplicaSet, ns, name, selector);
    }

    /// Records a StatefulSet's selector.
    pub fn upsert_stateful_set(&mut self, ss: &StatefulSet) {
        let (ns, name) = key_of(&ss.metadata);
        let selector = ss
            .spec
            .as_ref()
            .and_then(|spec| selector_of(Some(&spec.selector)))
            .map(OwnerSelector::Labels);
        self.put(OwnerKind::StatefulSet, ns, name, selector);
    }

    /// The selector of the pods that spread with `pod`: the merged map selectors of the
    /// Services and ReplicationControllers selecting it, and the requirements of the
    /// ReplicaSets and StatefulSets selecting it (upstream's `DefaultSelector`). `None` when
    /// nothing selects it, so the pod gets no default constraints.
    pub fn default_selector(&self, pod: &Pod) -> Option<LabelSelector> {
        let owners = self
            .by_namespace
            .get(pod.metadata.namespace.as_deref().unwrap_or_default())?;
        let labels = pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS);
        let mut set: BTreeMap<&str, &str> = BTreeMap::new();
        let mut requirements: Vec<Requirement> = Vec::new();
        for owner in owners.values().filter(|o| o.selects(labels)) {
            match owner {
                OwnerSelector::Map(m) => {
                    set.extend(m.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                }
                OwnerSelector::Labels(s) => requirements.extend_from_slice(s.requirements()),
            }
        }
        for (k, v) in set {
            // Keys and values came from stored, validated objects.
            if let Ok(r) = Requirement::new(k, Operator::Equals, vec![v.to_string()]) {
                requirements.push(r);
            }
        }
        let selector = LabelSelector::new(requirements);
        (!selector.is_empty()).then_some(selector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "ns", "labels": labels}}),
        )
        .expect("pod")
    }

    #[test]
    fn merges_the_selectors_of_every_object_selecting_the_pod() {
        let mut owners = SpreadingOwners::default();
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"selector": {"app": "web"}},
        }))
        .expect("service");
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "ns"},
            "spec": {"selector": {"matchLabels": {"app": "web", "pod-template-hash": "1"}},
                     "template": {}},
        }))
        .expect("replica set");
        let other: Service = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "ns"},
            "spec": {"selector": {"app": "db"}},
        }))
        .expect("service");
        owners.upsert_service(&svc);
        owners.upsert_replica_set(&rs);
        owners.upsert_service(&other);
        let sel = owners
            .default_selector(&pod(json!({"app": "web", "pod-template-hash": "1"})))
            .expect("a selector");
        assert_eq!(sel.to_string(), "app=web,app=web,pod-template-hash=1");
        assert!(
            owners
                .default_selector(&pod(json!({"app": "cache"})))
                .is_none()
        );
        owners.remove(OwnerKind::Service, "ns", "web");
        owners.remove(OwnerKind::ReplicaSet, "ns", "web-1");
        assert!(
            owners
                .default_selector(&pod(json!({"app": "web", "pod-template-hash": "1"})))
                .is_none()
        );
    }
}
