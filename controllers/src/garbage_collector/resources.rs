//! Which resources the collector watches and how it addresses them: the deletable resources
//! found by API discovery (upstream's `GetDeletableResources`), minus the ignored ones.

use std::collections::HashMap;

use kube::Client;
use kube::core::discovery::{ApiCapabilities, Scope, verbs};
use kube::discovery::{ApiResource, Discovery};

/// The apiVersion's group: `""` for `v1`, `apps` for `apps/v1`.
pub(crate) fn group_of(api_version: &str) -> &str {
    match api_version.split_once('/') {
        Some((group, _)) => group,
        None => "",
    }
}

/// A watched resource, with its scope.
#[derive(Clone, Debug)]
pub(crate) struct ResourceEntry {
    pub(crate) resource: ApiResource,
    pub(crate) namespaced: bool,
}

/// Resolves an ownerReference's apiVersion and kind to a resource (upstream's REST mapper).
#[derive(Debug, Default)]
pub(crate) struct ResourceTable {
    by_version_kind: HashMap<(String, String), ResourceEntry>,
    by_group_kind: HashMap<(String, String), ResourceEntry>,
}

impl ResourceTable {
    /// Adds a resource.
    pub(crate) fn insert(&mut self, resource: ApiResource, namespaced: bool) {
        let entry = ResourceEntry {
            resource,
            namespaced,
        };
        self.by_group_kind
            .entry((entry.resource.group.clone(), entry.resource.kind.clone()))
            .or_insert_with(|| entry.clone());
        self.by_version_kind.insert(
            (
                entry.resource.api_version.clone(),
                entry.resource.kind.clone(),
            ),
            entry,
        );
    }

    /// The resource for an apiVersion and kind; another version of the same group and kind
    /// will do, since every version serves the same objects.
    pub(crate) fn lookup(&self, api_version: &str, kind: &str) -> Option<&ResourceEntry> {
        self.by_version_kind
            .get(&(api_version.to_string(), kind.to_string()))
            .or_else(|| {
                self.by_group_kind
                    .get(&(group_of(api_version).to_string(), kind.to_string()))
            })
    }

    /// Whether the kind is namespaced, if known.
    pub(crate) fn namespaced(&self, api_version: &str, kind: &str) -> Option<bool> {
        self.lookup(api_version, kind).map(|e| e.namespaced)
    }
}

/// Whether the collector must watch a discovered resource: it can be listed, watched and
/// deleted, and is not in `ignored` (`(group, plural)` pairs).
pub(crate) fn is_deletable(
    resource: &ApiResource,
    caps: &ApiCapabilities,
    ignored: &[(String, String)],
) -> bool {
    [verbs::LIST, verbs::WATCH, verbs::DELETE]
        .iter()
        .all(|v| caps.supports_operation(v))
        && !ignored
            .iter()
            .any(|(g, p)| *g == resource.group && *p == resource.plural)
}

/// The deletable resources the server serves now, each in its preferred version.
pub(crate) async fn deletable_resources(
    client: &Client,
    ignored: &[(String, String)],
) -> Result<Vec<ResourceEntry>, kube::Error> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            if is_deletable(&resource, &caps, ignored) {
                let namespaced = caps.scope == Scope::Namespaced;
                out.push(ResourceEntry {
                    resource,
                    namespaced,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_falls_back_to_another_version_of_the_group() {
        let mut t = ResourceTable::default();
        t.insert(
            ApiResource::from_gvk_with_plural(
                &kube::core::GroupVersionKind::gvk("apps", "v1", "ReplicaSet"),
                "replicasets",
            ),
            true,
        );
        assert!(t.lookup("apps/v1", "ReplicaSet").is_some());
        assert!(t.lookup("apps/v1beta2", "ReplicaSet").is_some());
        assert_eq!(t.namespaced("v1", "ReplicaSet"), None);
        assert_eq!(group_of("v1"), "");
    }
}
