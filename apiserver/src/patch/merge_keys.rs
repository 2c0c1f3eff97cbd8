//! How each field of the built-in kinds merges: the data behind upstream's
//! `x-kubernetes-patch-merge-key` / `x-kubernetes-patch-strategy` (strategic merge patch) and
//! `x-kubernetes-list-type` / `x-kubernetes-list-map-keys` / `x-kubernetes-map-type`
//! (server-side apply).
//!
//! The table (`merge_keys_table.rs`) is generated from k8s-openapi's sources by
//! `scripts/gen-merge-keys.py`; the few strategies that only strategic merge patch knows
//! (`retainKeys`) and the atomic structs (`LabelSelector`) are listed here by hand.
//!
//! Types are named as in the OpenAPI documents (`io.k8s.api.core.v1.PodSpec`), so the OpenAPI
//! builder can annotate each definition's properties with [`patch_extensions`]:
//!
//! ```
//! use kybernetes_apiserver::patch::merge_keys::{self, ListStrategy};
//! let containers = ["spec", "template", "spec", "containers"];
//! assert_eq!(
//!     merge_keys::list_strategy("apps", "Deployment", &containers),
//!     Some(ListStrategy::Map { merge_key: "name", list_map_keys: &["name"] }),
//! );
//! assert_eq!(
//!     merge_keys::patch_extensions("io.k8s.api.core.v1.PodSpec", "volumes"),
//!     Some((Some("name"), "merge,retainKeys")),
//! );
//! ```

pub use super::merge_keys_table::{FIELDS, KINDS};

/// How one field of a type merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// An object of a known type, merged field by field.
    Struct,
    /// A map whose values are objects of a known type, merged key by key.
    GranularMap,
    /// A map replaced as a whole (`x-kubernetes-map-type: atomic`).
    AtomicMap,
    /// A list of objects replaced as a whole.
    AtomicList,
    /// A list of scalars merged as a set (`patchStrategy: merge` on a primitive list;
    /// `x-kubernetes-list-type: set`).
    Set,
    /// A list of objects merged by key (`patchMergeKey`; `x-kubernetes-list-map-keys`).
    Map(&'static [&'static str]),
}

/// How a list field merges, as strategic merge patch and server-side apply see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListStrategy {
    /// Replaced as a whole.
    Atomic,
    /// Scalars merged as a set.
    Set,
    /// Objects merged by key.
    Map {
        /// The strategic-merge-patch key (`x-kubernetes-patch-merge-key`).
        merge_key: &'static str,
        /// The server-side apply keys (`x-kubernetes-list-map-keys`).
        list_map_keys: &'static [&'static str],
    },
}

/// Fields whose patch strategy also says `retainKeys` (a union: setting one member clears the
/// others when the client sends `$retainKeys`).
const RETAIN_KEYS: &[(&str, &str)] = &[
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy"),
    ("io.k8s.api.core.v1.PodSpec", "volumes"),
    ("io.k8s.api.core.v1.PodSpec", "resourceClaims"),
];

/// Lists whose server-side apply keys are more than their strategic-merge-patch key: a port
/// is keyed by its number and protocol (`k:{"containerPort":80,"protocol":"TCP"}`). The first
/// key stays the `patchMergeKey`.
const LIST_MAP_KEYS: &[(&str, &str, &[&str])] = &[
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        &["containerPort", "protocol"],
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "ports",
        &["containerPort", "protocol"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        &["port", "protocol"],
    ),
];

/// Types that are `+structType=atomic` upstream: owned and replaced as one value.
const ATOMIC_STRUCTS: &[&str] = &[
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.TypedLocalObjectReference",
    "io.k8s.api.core.v1.NodeSelector",
];

/// The OpenAPI type of a served built-in kind, e.g. `io.k8s.api.apps.v1.Deployment`.
pub fn root_type(group: &str, kind: &str) -> Option<&'static str> {
    KINDS
        .iter()
        .find(|(g, _, k, _)| *g == group && *k == kind)
        .map(|(_, _, _, t)| *t)
}

/// True when `(group, kind)` is a built-in kind (not a custom resource).
pub fn is_builtin(group: &str, kind: &str) -> bool {
    root_type(group, kind).is_some()
}

/// The rule and item (or value) type of `type_name.field`, if the field is an object, a
/// keyed list or a set.
pub fn field_rule(type_name: &str, field: &str) -> Option<(Rule, &'static str)> {
    let i = FIELDS
        .binary_search_by(|(t, f, _, _)| (*t, *f).cmp(&(type_name, field)))
        .ok()?;
    let (_, _, child, rule) = FIELDS[i];
    let rule = LIST_MAP_KEYS
        .iter()
        .find(|(t, f, _)| *t == type_name && *f == field)
        .map_or(rule, |(_, _, keys)| Rule::Map(keys));
    Some((rule, child))
}

/// Every field of `type_name` that has a rule (objects of known types, keyed lists, sets,
/// atomic maps), as `(field, item or value type, rule)`: what the OpenAPI builder walks to
/// annotate one definition.
pub fn fields_of(type_name: &str) -> impl Iterator<Item = (&'static str, &'static str, Rule)> + '_ {
    let start = FIELDS.partition_point(|(t, _, _, _)| *t < type_name);
    FIELDS[start..]
        .iter()
        .take_while(move |(t, _, _, _)| *t == type_name)
        .map(|(_, f, _, _)| *f)
        .filter_map(move |f| field_rule(type_name, f).map(|(rule, child)| (f, child, rule)))
}

/// True when the type is replaced and owned as a whole.
pub fn is_atomic_struct(type_name: &str) -> bool {
    ATOMIC_STRUCTS.contains(&type_name)
}

/// True when the field carries `patchStrategy: retainKeys`.
pub fn retains_keys(type_name: &str, field: &str) -> bool {
    RETAIN_KEYS.contains(&(type_name, field))
}

/// How the list at `path` (field names from the object's root; list items are stepped over)
/// of a built-in kind merges; `None` when the path names no list field of a known type.
pub fn list_strategy(group: &str, kind: &str, path: &[&str]) -> Option<ListStrategy> {
    let (last, parents) = path.split_last()?;
    let mut ty = root_type(group, kind)?;
    for seg in parents {
        ty = match field_rule(ty, seg)? {
            (_, "") => return None,
            (_, child) => child,
        };
    }
    let (rule, _) = field_rule(ty, last).unwrap_or((Rule::AtomicList, ""));
    Some(match rule {
        Rule::Set => ListStrategy::Set,
        Rule::Map(keys) => ListStrategy::Map {
            merge_key: keys.first().copied().unwrap_or(""),
            list_map_keys: keys,
        },
        _ => ListStrategy::Atomic,
    })
}

/// The `x-kubernetes-patch-merge-key` and `x-kubernetes-patch-strategy` of a property, as
/// upstream's OpenAPI declares them; `None` when the property has neither.
pub fn patch_extensions(
    type_name: &str,
    field: &str,
) -> Option<(Option<&'static str>, &'static str)> {
    let retain = retains_keys(type_name, field);
    match field_rule(type_name, field) {
        Some((Rule::Map(keys), _)) => Some((
            keys.first().copied(),
            if retain { "merge,retainKeys" } else { "merge" },
        )),
        Some((Rule::Set, _)) => Some((None, "merge")),
        _ if retain => Some((None, "retainKeys")),
        _ => None,
    }
}

/// The `x-kubernetes-list-type` (`atomic`, `set` or `map`) and `x-kubernetes-list-map-keys` of
/// a list property, as upstream's OpenAPI declares them; `None` for a property that is not a
/// keyed list or a set (lists default to atomic).
pub fn list_type_extensions(
    type_name: &str,
    field: &str,
) -> Option<(&'static str, &'static [&'static str])> {
    match field_rule(type_name, field)? {
        (Rule::Map(keys), _) => Some(("map", keys)),
        (Rule::Set, _) => Some(("set", &[])),
        (Rule::AtomicList, _) => Some(("atomic", &[])),
        _ => None,
    }
}

/// The `x-kubernetes-map-type` of an object property: `atomic` for the maps and structs that
/// are owned and replaced as one value.
pub fn map_type_extension(type_name: &str, field: &str) -> Option<&'static str> {
    match field_rule(type_name, field)? {
        (Rule::AtomicMap, _) => Some("atomic"),
        (Rule::Struct, child) if is_atomic_struct(child) => Some("atomic"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_for_binary_search() {
        assert!(
            FIELDS
                .windows(2)
                .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1))
        );
    }

    #[test]
    fn pod_template_lists_merge_as_upstream_declares() {
        let pod = |p: &[&str]| list_strategy("", "Pod", p);
        let map = |k: &'static [&'static str]| {
            Some(ListStrategy::Map {
                merge_key: k[0],
                list_map_keys: k,
            })
        };
        assert_eq!(pod(&["spec", "containers"]), map(&["name"]));
        assert_eq!(pod(&["spec", "containers", "env"]), map(&["name"]));
        assert_eq!(
            pod(&["spec", "containers", "ports"]),
            map(&["containerPort", "protocol"])
        );
        assert_eq!(
            pod(&["spec", "containers", "volumeMounts"]),
            map(&["mountPath"])
        );
        assert_eq!(pod(&["spec", "volumes"]), map(&["name"]));
        assert_eq!(pod(&["spec", "hostAliases"]), map(&["ip"]));
        assert_eq!(pod(&["spec", "tolerations"]), Some(ListStrategy::Atomic));
        assert_eq!(pod(&["status", "conditions"]), map(&["type"]));
        assert_eq!(pod(&["metadata", "finalizers"]), Some(ListStrategy::Set));
        assert_eq!(pod(&["metadata", "ownerReferences"]), map(&["uid"]));
        assert_eq!(
            list_strategy("", "Service", &["spec", "ports"]),
            map(&["port", "protocol"])
        );
    }

    #[test]
    fn fields_of_a_type_lists_its_merge_rules() {
        let fields: Vec<&str> = fields_of("io.k8s.api.core.v1.Container")
            .map(|(f, _, _)| f)
            .collect();
        assert!(
            fields.contains(&"env")
                && fields.contains(&"ports")
                && fields.contains(&"volumeMounts")
        );
        assert!(fields_of("io.k8s.api.core.v1.Container").all(|(f, _, _)| f != "args"));
    }

    #[test]
    fn deployment_strategy_retains_keys() {
        assert_eq!(
            patch_extensions("io.k8s.api.apps.v1.DeploymentSpec", "strategy"),
            Some((None, "retainKeys"))
        );
    }
}
