//! The OpenAPI definitions of the built-in kinds, generated once per process from
//! k8s-openapi's `schemars` impls (which k8s-openapi generates from upstream's own OpenAPI
//! document, descriptions included), then given what upstream's document adds:
//!
//! - `x-kubernetes-group-version-kind` on each kind (and on its list);
//! - `x-kubernetes-patch-merge-key` / `x-kubernetes-patch-strategy`,
//!   `x-kubernetes-list-type` / `x-kubernetes-list-map-keys` and `x-kubernetes-map-type` on
//!   each property, from the merge-key table ([`crate::patch::merge_keys`]) that strategic
//!   merge patch and server-side apply already use;
//! - `<Kind>List` definitions (k8s-openapi's `List<T>` is generic, without a schema).
//!
//! Definitions are kept in OpenAPI v3 form: references are `#/components/schemas/<name>`,
//! and a reference with siblings (a description) is wrapped in `allOf`, as upstream's v3
//! document does. [`to_v2`] turns one into the Swagger 2.0 form.
//!
//! The built-in definitions depend only on the compiled types, so they are computed on first
//! use and shared by every API server in the process.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use k8s_openapi::schemars::JsonSchema;
use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use k8s_openapi::schemars::transform::RemoveRefSiblings;
use k8s_openapi::{ListableResource, Resource};
use serde_json::{Value, json};

use crate::patch::merge_keys;

/// Where OpenAPI v3 definitions live; references start with this.
pub const V3_REF_PREFIX: &str = "#/components/schemas/";
/// Where Swagger 2.0 definitions live.
pub const V2_REF_PREFIX: &str = "#/definitions/";

/// A kind with an OpenAPI definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindDefinition {
    /// The API group, empty for core.
    pub group: String,
    /// The version.
    pub version: String,
    /// The kind.
    pub kind: String,
    /// The definition's name (`io.k8s.api.apps.v1.Deployment`).
    pub name: String,
    /// The list's definition name, for kinds that are listed (`io.k8s.api.apps.v1.DeploymentList`).
    pub list: Option<String>,
}

/// A set of OpenAPI definitions by name.
#[derive(Clone, Debug, Default)]
pub struct Definitions {
    schemas: BTreeMap<String, Value>,
    kinds: Vec<KindDefinition>,
}

impl Definitions {
    /// The definitions of the built-in kinds (computed on first use).
    ///
    /// ```
    /// let defs = kybernetes_apiserver::openapi::Definitions::builtin();
    /// let d = defs.get("io.k8s.api.apps.v1.Deployment").expect("Deployment");
    /// assert_eq!(d["x-kubernetes-group-version-kind"][0]["kind"], "Deployment");
    /// let spec = defs.get("io.k8s.api.apps.v1.DeploymentSpec").expect("DeploymentSpec");
    /// assert_eq!(spec["properties"]["strategy"]["x-kubernetes-patch-strategy"], "retainKeys");
    /// ```
    pub fn builtin() -> &'static Definitions {
        static BUILTIN: LazyLock<Definitions> = LazyLock::new(generate);
        &BUILTIN
    }

    /// A definition by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.schemas.get(name)
    }

    /// Every definition, by name.
    pub fn schemas(&self) -> &BTreeMap<String, Value> {
        &self.schemas
    }

    /// The definition of a kind.
    pub fn kind(&self, group: &str, version: &str, kind: &str) -> Option<&KindDefinition> {
        self.kinds
            .iter()
            .find(|k| k.group == group && k.version == version && k.kind == kind)
    }

    /// Adds (or replaces) a definition.
    pub fn insert(&mut self, name: String, schema: Value) {
        self.schemas.insert(name, schema);
    }

    /// Follows a schema's reference (`$ref`, or an `allOf` of one reference) to the definition
    /// it names; a schema without one is returned as is, and `None` means a dangling reference.
    pub fn resolve<'a>(&'a self, schema: &'a Value) -> Option<&'a Value> {
        match reference(schema) {
            Some(name) => self.schemas.get(name),
            None => Some(schema),
        }
    }

    /// The named definitions and every definition they reference, directly or not: what one
    /// document must carry.
    pub fn closure<'a>(&self, roots: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        let mut todo: Vec<String> = roots.into_iter().map(String::from).collect();
        while let Some(name) = todo.pop() {
            if out.contains_key(&name) {
                continue;
            }
            let Some(schema) = self.schemas.get(&name) else {
                continue;
            };
            let mut refs = BTreeSet::new();
            collect_refs(schema, &mut refs);
            todo.extend(refs.into_iter().filter(|r| !out.contains_key(r)));
            out.insert(name, schema.clone());
        }
        out
    }
}

/// The definition a schema refers to (`$ref`, or an `allOf` holding one reference).
pub fn reference(schema: &Value) -> Option<&str> {
    let target = match schema.get("allOf").and_then(Value::as_array) {
        Some(all) if all.len() == 1 => &all[0],
        _ => schema,
    };
    target
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix(V3_REF_PREFIX))
}

fn collect_refs(schema: &Value, out: &mut BTreeSet<String>) {
    match schema {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r.strip_prefix(V3_REF_PREFIX) {
                            out.insert(name.to_string());
                        }
                    }
                    // Property names are names, not keywords (LimitRangeItem has a
                    // `default` property).
                    ("properties", Value::Object(props)) => {
                        props.values().for_each(|p| collect_refs(p, out));
                    }
                    // Defaults and examples are data, not schemas.
                    ("default" | "example" | "enum", _) => {}
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// A definition in Swagger 2.0 form: references point into `#/definitions/`, and an `allOf`
/// of one reference becomes the reference itself, beside its description (as upstream's v2
/// document writes it).
pub fn to_v2(schema: &Value) -> Value {
    match schema {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        let name = r.strip_prefix(V3_REF_PREFIX).unwrap_or(r);
                        out.insert(k.clone(), json!(format!("{V2_REF_PREFIX}{name}")));
                    }
                    ("allOf", Value::Array(all))
                        if all.len() == 1 && all[0].get("$ref").is_some() =>
                    {
                        if let Value::Object(inner) = to_v2(&all[0]) {
                            out.extend(inner);
                        }
                    }
                    // Property names are names, not keywords.
                    ("properties", Value::Object(props)) => {
                        let props = props.iter().map(|(n, p)| (n.clone(), to_v2(p)));
                        out.insert(k.clone(), Value::Object(props.collect()));
                    }
                    ("default" | "example" | "enum", _) => {
                        out.insert(k.clone(), v.clone());
                    }
                    _ => {
                        out.insert(k.clone(), to_v2(v));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(to_v2).collect()),
        other => other.clone(),
    }
}

/// The schema of a `group/version` `kind`, as the `x-kubernetes-group-version-kind` list.
pub fn gvk_extension(group: &str, version: &str, kind: &str) -> Value {
    json!([{ "group": group, "kind": kind, "version": version }])
}

fn settings() -> SchemaSettings {
    SchemaSettings::openapi3().with(|s| {
        s.meta_schema = None;
        // Only what upstream's v3 document does: a reference with a description beside it
        // becomes `allOf: [{$ref}]`. k8s-openapi's impls are already OpenAPI-shaped.
        s.transforms = vec![Box::new(RemoveRefSiblings::default())];
    })
}

fn add_kind<T: JsonSchema + Resource>(
    g: &mut SchemaGenerator,
    list: Option<&str>,
) -> KindDefinition {
    g.subschema_for::<T>();
    KindDefinition {
        group: T::GROUP.into(),
        version: T::VERSION.into(),
        kind: T::KIND.into(),
        name: T::schema_name().into_owned(),
        list: list.map(String::from),
    }
}

fn add_listable<T: JsonSchema + ListableResource>(g: &mut SchemaGenerator) -> KindDefinition {
    let name = T::schema_name();
    let list = format!("{name}List");
    add_kind::<T>(g, Some(&list))
}

/// The built-in kinds with a definition: every kind the merge-key table knows, whether this
/// server serves it yet or not (discovery decides what the documents' paths list).
macro_rules! listable_kinds {
    ($($t:ty),* $(,)?) => {
        fn add_listable_kinds(g: &mut SchemaGenerator, out: &mut Vec<KindDefinition>) {
            $( out.push(add_listable::<$t>(g)); )*
        }
    };
}

listable_kinds!(
    k8s_openapi::api::core::v1::ComponentStatus,
    k8s_openapi::api::core::v1::ConfigMap,
    k8s_openapi::api::core::v1::Endpoints,
    k8s_openapi::api::core::v1::Event,
    k8s_openapi::api::core::v1::LimitRange,
    k8s_openapi::api::core::v1::Namespace,
    k8s_openapi::api::core::v1::Node,
    k8s_openapi::api::core::v1::PersistentVolume,
    k8s_openapi::api::core::v1::PersistentVolumeClaim,
    k8s_openapi::api::core::v1::Pod,
    k8s_openapi::api::core::v1::PodTemplate,
    k8s_openapi::api::core::v1::ReplicationController,
    k8s_openapi::api::core::v1::ResourceQuota,
    k8s_openapi::api::core::v1::Secret,
    k8s_openapi::api::core::v1::Service,
    k8s_openapi::api::core::v1::ServiceAccount,
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    k8s_openapi::api::apps::v1::ControllerRevision,
    k8s_openapi::api::apps::v1::DaemonSet,
    k8s_openapi::api::apps::v1::Deployment,
    k8s_openapi::api::apps::v1::ReplicaSet,
    k8s_openapi::api::apps::v1::StatefulSet,
    k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler,
    k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler,
    k8s_openapi::api::batch::v1::CronJob,
    k8s_openapi::api::batch::v1::Job,
    k8s_openapi::api::coordination::v1::Lease,
    k8s_openapi::api::discovery::v1::EndpointSlice,
    k8s_openapi::api::events::v1::Event,
    k8s_openapi::api::networking::v1::IPAddress,
    k8s_openapi::api::networking::v1::Ingress,
    k8s_openapi::api::networking::v1::IngressClass,
    k8s_openapi::api::networking::v1::NetworkPolicy,
    k8s_openapi::api::networking::v1::ServiceCIDR,
    k8s_openapi::api::policy::v1::PodDisruptionBudget,
    k8s_openapi::api::rbac::v1::ClusterRole,
    k8s_openapi::api::rbac::v1::ClusterRoleBinding,
    k8s_openapi::api::rbac::v1::Role,
    k8s_openapi::api::rbac::v1::RoleBinding,
    k8s_openapi::api::scheduling::v1::PriorityClass,
    k8s_openapi::api::storage::v1::CSIDriver,
    k8s_openapi::api::storage::v1::CSINode,
    k8s_openapi::api::storage::v1::CSIStorageCapacity,
    k8s_openapi::api::storage::v1::StorageClass,
    k8s_openapi::api::storage::v1::VolumeAttachment,
);

fn generate() -> Definitions {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    let mut g = settings().into_generator();
    let mut kinds = Vec::new();
    add_listable_kinds(&mut g, &mut kinds);
    // The bodies of subresources (not listed).
    kinds.push(add_kind::<k8s_openapi::api::autoscaling::v1::Scale>(
        &mut g, None,
    ));
    kinds.push(add_kind::<k8s_openapi::api::policy::v1::Eviction>(
        &mut g, None,
    ));
    kinds.push(add_kind::<k8s_openapi::api::core::v1::Binding>(
        &mut g, None,
    ));
    kinds.push(add_kind::<k8s_openapi::api::authentication::v1::TokenRequest>(&mut g, None));
    // What the operations take and return besides the kinds.
    g.subschema_for::<meta::DeleteOptions>();
    g.subschema_for::<meta::Status>();
    g.subschema_for::<meta::Patch>();
    g.subschema_for::<meta::WatchEvent<k8s_openapi::api::core::v1::Pod>>();
    g.subschema_for::<meta::APIResourceList>();

    let mut schemas: BTreeMap<String, Value> = g.take_definitions(true).into_iter().collect();
    for (name, schema) in schemas.iter_mut() {
        annotate(name, schema);
    }
    for k in &kinds {
        if let Some(s) = schemas.get_mut(&k.name) {
            s["x-kubernetes-group-version-kind"] = gvk_extension(&k.group, &k.version, &k.kind);
        }
        if let Some(list) = &k.list {
            let item = format!("{V3_REF_PREFIX}{}", k.name);
            schemas.insert(
                list.clone(),
                list_schema(&k.group, &k.version, &k.kind, &item),
            );
        }
    }
    Definitions { schemas, kinds }
}

/// Adds upstream's merge extensions to a definition's properties, and drops the `metadata`
/// that k8s-openapi marks required (its Rust field is not an `Option`; upstream's is optional).
fn annotate(name: &str, schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if merge_keys::is_atomic_struct(name) {
        obj.insert("x-kubernetes-map-type".into(), json!("atomic"));
    }
    if let Some(Value::Array(required)) = obj.get_mut("required") {
        required.retain(|f| f != "metadata");
        if required.is_empty() {
            obj.remove("required");
        }
    }
    let Some(Value::Object(props)) = obj.get_mut("properties") else {
        return;
    };
    for (field, prop) in props.iter_mut() {
        let Some(p) = prop.as_object_mut() else {
            continue;
        };
        if let Some((key, strategy)) = merge_keys::patch_extensions(name, field) {
            if let Some(key) = key {
                p.insert("x-kubernetes-patch-merge-key".into(), json!(key));
            }
            p.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
        }
        if let Some((list_type, keys)) = merge_keys::list_type_extensions(name, field)
            && p.get("type").and_then(Value::as_str) == Some("array")
        {
            p.insert("x-kubernetes-list-type".into(), json!(list_type));
            if list_type == "map" {
                p.insert("x-kubernetes-list-map-keys".into(), json!(keys));
            }
        }
        if let Some(map_type) = merge_keys::map_type_extension(name, field) {
            p.insert("x-kubernetes-map-type".into(), json!(map_type));
        }
    }
}

/// `<Kind>List`: what a list of the kind returns.
pub fn list_schema(group: &str, version: &str, kind: &str, item_ref: &str) -> Value {
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object.",
                "type": "string",
            },
            "items": {
                "description": format!("The {kind} objects."),
                "type": "array",
                "items": { "$ref": item_ref },
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents.",
                "type": "string",
            },
            "metadata": {
                "description": "Standard list metadata.",
                "allOf": [{ "$ref": format!("{V3_REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta") }],
            },
        },
        "required": ["items"],
        "x-kubernetes-group-version-kind": gvk_extension(group, version, &format!("{kind}List")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_carry_upstream_names_descriptions_and_gvk() {
        let defs = Definitions::builtin();
        let d = defs
            .get("io.k8s.api.apps.v1.Deployment")
            .expect("Deployment");
        assert!(
            d["description"]
                .as_str()
                .is_some_and(|s| s.contains("Deployment"))
        );
        assert_eq!(
            d["x-kubernetes-group-version-kind"],
            json!([{ "group": "apps", "kind": "Deployment", "version": "v1" }])
        );
        assert!(
            d.get("required").is_none(),
            "metadata is optional upstream: {d}"
        );
        let meta = &d["properties"]["metadata"];
        assert_eq!(
            reference(meta),
            Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        );
        assert!(meta["description"].is_string());
        assert!(defs.get("io.k8s.api.apps.v1.DeploymentList").is_some());
    }

    #[test]
    fn properties_carry_the_merge_table_extensions() {
        let defs = Definitions::builtin();
        let pod = defs.get("io.k8s.api.core.v1.PodSpec").expect("PodSpec");
        let containers = &pod["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        assert_eq!(
            pod["properties"]["volumes"]["x-kubernetes-patch-strategy"],
            "merge,retainKeys"
        );
        let int_or_string = defs
            .get("io.k8s.apimachinery.pkg.util.intstr.IntOrString")
            .expect("IntOrString");
        assert_eq!(int_or_string["x-kubernetes-int-or-string"], true);
        let selector = defs
            .get("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector")
            .expect("LabelSelector");
        assert_eq!(selector["x-kubernetes-map-type"], "atomic");
    }

    #[test]
    fn closure_follows_references() {
        let defs = Definitions::builtin();
        let c = defs.closure(["io.k8s.api.apps.v1.Deployment"]);
        assert!(c.contains_key("io.k8s.api.core.v1.Container"));
        assert!(c.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
        assert!(!c.contains_key("io.k8s.api.core.v1.Service"));
    }

    #[test]
    fn v2_form_puts_references_beside_their_description() {
        let v3 = json!({ "description": "d", "allOf": [{ "$ref": "#/components/schemas/x.Y" }] });
        assert_eq!(
            to_v2(&v3),
            json!({ "description": "d", "$ref": "#/definitions/x.Y" })
        );
    }

    #[test]
    fn a_property_named_default_is_a_schema_not_a_default_value() {
        let defs = Definitions::builtin();
        let item = defs
            .get("io.k8s.api.core.v1.LimitRangeItem")
            .expect("LimitRangeItem");
        let quantity = "io.k8s.apimachinery.pkg.api.resource.Quantity";
        assert_eq!(
            to_v2(item)["properties"]["default"]["additionalProperties"]["$ref"],
            format!("{V2_REF_PREFIX}{quantity}")
        );
        let v3 = json!({"properties": {"default": {"$ref": "#/components/schemas/x.Y"}}});
        let mut refs = BTreeSet::new();
        collect_refs(&v3, &mut refs);
        assert!(refs.contains("x.Y"), "{refs:?}");
    }
}
