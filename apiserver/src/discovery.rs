//! Discovery documents: `/version`, `/api`, `/apis`, `/apis/<group>` and the per-version
//! `APIResourceList`s, generated from the registry; and the aggregated form of `/api` and
//! `/apis` (`apidiscovery.k8s.io` `APIGroupDiscoveryList`), which lists every resource of
//! every version in one document, so that kubectl needs one request per root, not one per
//! group-version. Both come from the registry as it is, so CRDs appear and disappear at once.

use kybernetes_core::{Registry, ResourceInfo};
use serde_json::{Value, json};

use crate::negotiation::DiscoveryVersion;

/// The Kubernetes version the server reports (kubectl 1.32 is within the ±1 skew).
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-kybernetes",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

/// `/api`.
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443" }],
    })
}

fn group_entry(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({ "groupVersion": format!("{name}/{v}"), "version": v }))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    json!({ "name": name, "versions": vs, "preferredVersion": preferred })
}

/// `/apis`.
pub fn groups(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .iter()
        .map(|(g, vs)| group_entry(g, vs))
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `/apis/<group>`, or `None` if the group is not served.
pub fn group(reg: &Registry, name: &str) -> Option<Value> {
    let groups = reg.groups();
    let vs = groups.get(name)?;
    let mut g = group_entry(name, vs);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

fn resource_entry(r: &ResourceInfo) -> Value {
    let mut e = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": r.verbs(),
    });
    if !r.short_names.is_empty() {
        e["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        e["categories"] = json!(r.categories);
    }
    e
}

/// One subresource as discovery lists it.
struct SubresourceEntry<'a> {
    name: &'a str,
    /// The group and version of the subresource's kind, when not the resource's own.
    group_version: Option<(&'static str, &'static str)>,
    kind: &'a str,
    verbs: &'static [&'static str],
}

/// A resource's subresources: `status` and `scale` from the resource's table entry, then its
/// connect and action subresources with the kinds and verbs upstream reports.
fn subresources(r: &ResourceInfo) -> Vec<SubresourceEntry<'_>> {
    let mut out = Vec::new();
    let entry = |name, kind, verbs| SubresourceEntry {
        name,
        group_version: None,
        kind,
        verbs,
    };
    if r.status_subresource {
        out.push(entry("status", &r.kind, &["get", "patch", "update"]));
    }
    if r.scale.is_some() {
        out.push(SubresourceEntry {
            group_version: Some(("autoscaling", "v1")),
            ..entry("scale", "Scale", &["get", "patch", "update"])
        });
    }
    for name in &r.extra_subresources {
        let name = name.as_str();
        let (kind, verbs): (&str, &'static [&'static str]) = match name {
            "binding" => ("Binding", &["create"]),
            "eviction" => ("Eviction", &["create"]),
            "log" => ("Pod", &["get"]),
            "exec" | "attach" | "portforward" => ("PodExecOptions", &["create", "get"]),
            "finalize" => ("Namespace", &["update"]),
            "token" => ("TokenRequest", &["create"]),
            "proxy" => (
                proxy_options_kind(&r.kind),
                &["create", "delete", "get", "patch", "update"],
            ),
            _ => (r.kind.as_str(), &["get", "patch", "update"]),
        };
        let group_version = match name {
            "eviction" => Some(("policy", "v1")),
            "token" => Some(("authentication.k8s.io", "v1")),
            _ => None,
        };
        out.push(SubresourceEntry {
            group_version,
            ..entry(name, kind, verbs)
        });
    }
    out
}

fn subresource_entries(r: &ResourceInfo) -> Vec<Value> {
    subresources(r)
        .into_iter()
        .map(|s| {
            let mut e = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": s.kind,
                "verbs": s.verbs,
            });
            if let Some((group, version)) = s.group_version {
                e["group"] = json!(group);
                e["version"] = json!(version);
            }
            e
        })
        .collect()
}

/// The kind of a `proxy` subresource's options, as upstream names them per resource.
fn proxy_options_kind(kind: &str) -> &'static str {
    match kind {
        "Pod" => "PodProxyOptions",
        "Service" => "ServiceProxyOptions",
        _ => "NodeProxyOptions",
    }
}

/// `/api/v1` or `/apis/<group>/<version>`, or `None` if not served.
pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let rs = reg.resources_in(group, version);
    if rs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for r in &rs {
        resources.push(resource_entry(r));
        resources.extend(subresource_entries(r));
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources }),
    )
}

/// The resources of one group-version, sorted by name.
fn sorted_resources(
    reg: &Registry,
    group: &str,
    version: &str,
) -> Vec<std::sync::Arc<ResourceInfo>> {
    let mut rs = reg.resources_in(group, version);
    rs.sort_by(|a, b| a.plural.cmp(&b.plural));
    rs
}

/// One resource in the aggregated form (`APIResourceDiscovery`).
fn aggregated_resource(r: &ResourceInfo) -> Value {
    let mut e = json!({
        "resource": r.plural,
        "responseKind": { "group": r.group, "version": r.version, "kind": r.kind },
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs(),
    });
    if !r.short_names.is_empty() {
        e["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        e["categories"] = json!(r.categories);
    }
    let subresources: Vec<Value> = subresources(r)
        .into_iter()
        .map(|s| {
            let (group, version) = s
                .group_version
                .unwrap_or((r.group.as_str(), r.version.as_str()));
            json!({
                "subresource": s.name,
                "responseKind": { "group": group, "version": version, "kind": s.kind },
                "verbs": s.verbs,
            })
        })
        .collect();
    if !subresources.is_empty() {
        e["subresources"] = json!(subresources);
    }
    e
}

/// One group (`APIGroupDiscovery`), its versions in priority order.
fn aggregated_group(reg: &Registry, group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = sorted_resources(reg, group, v)
                .iter()
                .map(|r| aggregated_resource(r))
                .collect();
            json!({ "version": v, "resources": resources, "freshness": "Current" })
        })
        .collect();
    let mut metadata = json!({ "creationTimestamp": null });
    if !group.is_empty() {
        metadata["name"] = json!(group);
    }
    json!({ "metadata": metadata, "versions": versions })
}

/// `/api` (the core group) or `/apis` (every other group) as an `APIGroupDiscoveryList`.
///
/// ```
/// use kybernetes_apiserver::discovery::aggregated;
/// use kybernetes_apiserver::negotiation::DiscoveryVersion;
/// let reg = kybernetes_core::Registry::with_builtins();
/// let core = aggregated(&reg, true, DiscoveryVersion::V2);
/// assert_eq!(core["kind"], "APIGroupDiscoveryList");
/// let v1 = &core["items"][0]["versions"][0];
/// let pods = v1["resources"].as_array().unwrap().iter().find(|r| r["resource"] == "pods").unwrap();
/// assert_eq!(pods["scope"], "Namespaced");
/// assert_eq!(pods["shortNames"][0], "po");
/// ```
pub fn aggregated(reg: &Registry, core: bool, version: DiscoveryVersion) -> Value {
    let items: Vec<Value> = if core {
        vec![aggregated_group(reg, "", &["v1".to_string()])]
    } else {
        reg.groups()
            .iter()
            .map(|(g, vs)| aggregated_group(reg, g, vs))
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{}", version.as_str()),
        "metadata": {},
        "items": items,
    })
}
