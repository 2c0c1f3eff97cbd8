//! Secondary indexes of a runtime's sandboxes and containers, so that the node agent's
//! listings (one pod's sandboxes, one node's sandboxes, one sandbox's containers) cost what
//! they return rather than every object the runtime holds. The in-process cluster shares one
//! runtime between all its node agents, where a full scan per listing made a 10,000-pod
//! Deployment quadratic.

use std::collections::{BTreeSet, HashMap};

/// Object ids grouped by one key (a label value or a sandbox id).
#[derive(Debug, Default)]
pub(crate) struct IdIndex(HashMap<String, BTreeSet<String>>);

impl IdIndex {
    /// Files `id` under `key`.
    pub(crate) fn insert(&mut self, key: &str, id: &str) {
        self.0
            .entry(key.to_string())
            .or_default()
            .insert(id.to_string());
    }

    /// Removes `id` from `key`, dropping the key once empty.
    pub(crate) fn remove(&mut self, key: &str, id: &str) {
        if let Some(ids) = self.0.get_mut(key) {
            ids.remove(id);
            if ids.is_empty() {
                self.0.remove(key);
            }
        }
    }

    /// The ids filed under `key`, in id order.
    pub(crate) fn get(&self, key: &str) -> impl Iterator<Item = &String> {
        self.0.get(key).into_iter().flatten()
    }

    /// How many ids are filed under `key`.
    pub(crate) fn count(&self, key: &str) -> usize {
        self.0.get(key).map_or(0, BTreeSet::len)
    }
}
