//! Discovery documents: `/version`, `/api`, `/apis`, `/apis/<group>` and the per-version
//! `APIResourceList`s, generated from the registry.

use kybernetes_core::{Registry, ResourceInfo};
use serde_json::{Value, json};

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

fn subresource_entries(r: &ResourceInfo) -> Vec<Value> {
    let mut out = Vec::new();
    let sub = |name: &str, kind: &str, verbs: &[&str]| {
        json!({
            "name": format!("{}/{name}", r.plural),
            "singularName": "",
            "namespaced": r.namespaced,
            "kind": kind,
            "verbs": verbs,
        })
    };
    if r.status_subresource {
        out.push(sub("status", &r.kind, &["get", "patch", "update"]));
    }
    if r.scale.is_some() {
        let mut s = sub("scale", "Scale", &["get", "patch", "update"]);
        s["group"] = json!("autoscaling");
        s["version"] = json!("v1");
        out.push(s);
    }
    for name in &r.extra_subresources {
        let (kind, verbs): (&str, &[&str]) = match name.as_str() {
            "binding" => ("Binding", &["create"]),
            "eviction" => ("Eviction", &["create"]),
            "log" => ("Pod", &["get"]),
            "exec" | "attach" | "portforward" => ("PodExecOptions", &["create", "get"]),
            "finalize" => ("Namespace", &["update"]),
            "token" => ("TokenRequest", &["create"]),
            "proxy" => (
                "NodeProxyOptions",
                &["create", "delete", "get", "patch", "update"],
            ),
            _ => (r.kind.as_str(), &["get", "patch", "update"]),
        };
        let mut s = sub(name, kind, verbs);
        if name == "eviction" {
            s["group"] = json!("policy");
            s["version"] = json!("v1");
        }
        if name == "token" {
            s["group"] = json!("authentication.k8s.io");
            s["version"] = json!("v1");
        }
        out.push(s);
    }
    out
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
