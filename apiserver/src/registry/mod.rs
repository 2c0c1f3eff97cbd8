//! The registry: one [`Strategy`] per kind, found through the [`StrategyTable`], and the
//! [`RequestScope`] that carries one request through the generic verbs in `rest`.
//!
//! A kind's rules (defaults, validation, initial status, field selectors, storage side effects
//! such as ClusterIP allocation) live in its own file here. Adding a kind is a new file with a
//! type implementing [`Strategy`], plus one line in [`StrategyTable::builtin`]. Kinds with no
//! special rules, and every custom resource, get [`generic::GenericStrategy`].
//!
//! # How to implement your own
//!
//! Override only what differs from the generic rules:
//!
//! ```
//! use kybernetes_apiserver::registry::Strategy;
//! use kybernetes_core::status::StatusCause;
//! use serde_json::Value;
//!
//! /// Widgets need a `spec.size`.
//! struct WidgetStrategy;
//!
//! impl Strategy for WidgetStrategy {
//!     fn validate(&self, obj: &Value) -> Vec<StatusCause> {
//!         if obj.pointer("/spec/size").is_some() {
//!             return Vec::new();
//!         }
//!         vec![StatusCause { reason: "FieldValueRequired".into(), message: "Required value".into(), field: "spec.size".into() }]
//!     }
//! }
//! assert_eq!(WidgetStrategy.validate(&serde_json::json!({"spec": {}})).len(), 1);
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use kybernetes_core::status::StatusCause;
use kybernetes_core::validation;
use kybernetes_core::{ApiError, Clock, Registry, ResourceInfo};
use kybernetes_store::Store;
use serde_json::Value;

use crate::service_alloc::ServiceAllocator;

pub mod before;
pub mod configmap;
pub mod crd;
pub mod cronjob;
pub mod custom_resource;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod event;
pub mod generic;
pub mod horizontalpodautoscaler;
pub mod job;
pub mod lease;
pub mod namespace;
pub mod node;
pub mod persistentvolume;
pub mod persistentvolumeclaim;
pub mod pod;
pub mod pod_template;
pub mod poddisruptionbudget;
pub mod priorityclass;
pub mod replicaset;
pub mod replicationcontroller;
pub mod scope;
pub mod secret;
pub mod service;
pub mod serviceaccount;
pub mod statefulset;
pub mod storageclass;
pub mod table;

pub use scope::RequestScope;
pub use table::{TableColumn, TableConvertor};

/// A subresource served by a kind-specific handler rather than the generic `status` and
/// `scale` ones. New connect-style subresources (log, exec, attach, portforward, proxy) add a
/// variant here and a handler in `rest::subresource`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    /// `pods/binding`: assigns a pod to a node.
    Binding,
    /// `pods/eviction`: a delete that honours disruption budgets.
    Eviction,
    /// `namespaces/finalize`: replaces `spec.finalizers`.
    Finalize,
    /// `pods/log`: a container's log, streamed from the pod's node agent.
    Log,
    /// `pods/exec`: runs a command in a container, streamed over an upgraded connection.
    Exec,
    /// `pods/attach`: joins a container's main process, streamed likewise.
    Attach,
    /// `pods/portforward`: connections to ports inside the pod, streamed likewise.
    PortForward,
    /// `pods/proxy`, `services/proxy` and `nodes/proxy`: HTTP to a port of the pod, a ready
    /// endpoint of the service, or the node agent itself ([`crate::proxy`]). The body is
    /// streamed through, not read first.
    Proxy(ProxyKind),
    /// `serviceaccounts/token`: issues a service account token (`TokenRequest`).
    Token,
}

/// What a `proxy` subresource reaches (upstream's per-kind `ResourceLocation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// A port of the pod, through its node's agent.
    Pod,
    /// A ready endpoint of the service.
    Service,
    /// The node agent's own HTTP endpoints.
    Node,
}

impl Subresource {
    /// Whether the subresource is served over an upgraded connection (the body is not read
    /// first, and the handler needs the connection).
    pub fn is_streaming(self) -> bool {
        matches!(
            self,
            Subresource::Exec | Subresource::Attach | Subresource::PortForward
        )
    }
}

/// A kind's create, update and delete rules (upstream's `RESTCreateStrategy`,
/// `RESTUpdateStrategy` and `RESTDeleteStrategy`, with the defaulting that upstream runs at
/// decode time). Every method has the generic behaviour as its default.
#[async_trait::async_trait]
pub trait Strategy: Send + Sync + 'static {
    /// Problems with the object's name (upstream's `NameValidationFunc`); DNS-1123 subdomain
    /// by default.
    fn validate_name(&self, name: &str) -> Vec<String> {
        validation::is_dns1123_subdomain(name)
    }

    /// The kind's own changes to a new object after the generic ones (server-owned metadata,
    /// status reset) and before defaulting (upstream's `PrepareForCreate`).
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// The kind's own changes to an updated object after the generic ones (server-owned
    /// metadata and status carried over from `old`) and before defaulting (upstream's
    /// `PrepareForUpdate`).
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}

    /// Fills the fields clients rely on (upstream's `SetDefaults_*`), on create and on every
    /// update, so that a round-tripped object keeps its defaults.
    fn default(&self, _obj: &mut Value) {}

    /// False for the kinds whose creator owns the first status: upstream's node strategy keeps
    /// the status of a POSTed Node, because the kubelet registers its node with capacity,
    /// allocatable and conditions in one create. Every other kind with a status subresource
    /// starts from an empty status.
    fn resets_status_on_create(&self) -> bool {
        true
    }

    /// The status a new object starts with (upstream's `PrepareForCreate` status part).
    fn initial_status(&self, _obj: &mut Value, _clock: &Clock) {}

    /// The kind's own validation rules, with upstream's field paths and messages.
    fn validate(&self, _obj: &Value) -> Vec<StatusCause> {
        Vec::new()
    }

    /// Validation of an update; the same rules as create unless the kind has immutable fields.
    fn validate_update(&self, obj: &Value, _old: &Value) -> Vec<StatusCause> {
        self.validate(obj)
    }

    /// Normalises an object before it is stored (upstream's `Canonicalize`).
    fn canonicalize(&self, _obj: &mut Value) {}

    /// True if a PUT of a missing object creates it (upstream's `AllowCreateOnUpdate`).
    fn allow_create_on_update(&self) -> bool {
        false
    }

    /// Fields a field selector may use beyond `metadata.name` and `metadata.namespace`.
    fn field_selectors(&self) -> &'static [&'static str] {
        &[]
    }

    /// How long a deleted object stays before it is removed (upstream's
    /// `CheckGracefulDelete`), given the grace period the request asked for; 0 removes it at
    /// once, which is what every kind but pods does.
    fn graceful_delete_seconds(&self, _obj: &Value, _requested: Option<i64>) -> i64 {
        0
    }

    /// True while something other than finalizers holds a deleted object (a namespace's
    /// `spec.finalizers`).
    fn deletion_pending(&self, _obj: &Value) -> bool {
        false
    }

    /// How the kind prints in `kubectl get` at `r`'s version (upstream's `TableConvertor`):
    /// by default the built-in printer of the resource ([`table::builtin`]), else NAME and
    /// CREATED AT.
    fn table_convertor(&self, r: &ResourceInfo) -> Arc<dyn TableConvertor> {
        table::builtin(&r.group, &r.plural)
    }

    /// True if a delete that removes the object answers with the object rather than a
    /// success `Status` (graceful kinds always do).
    fn delete_returns_object(&self) -> bool {
        false
    }

    /// The kind's own subresource handlers.
    fn subresource(&self, _name: &str) -> Option<Subresource> {
        None
    }

    /// Runs before a new object is written; may allocate (a service's ClusterIP). Not called
    /// on a dry run.
    fn before_store_create(&self, _obj: &mut Value) -> Result<(), ApiError> {
        Ok(())
    }

    /// Undoes [`Strategy::before_store_create`] when the write failed.
    fn create_abandoned(&self, _obj: &Value) {}

    /// Runs before an updated object is written; may allocate (new NodePorts).
    fn before_store_update(&self, _old: &Value, _new: &mut Value) -> Result<(), ApiError> {
        Ok(())
    }

    /// Undoes what [`Strategy::before_store_update`] allocated when the update is not
    /// written (a dry run, a lost race, a failed write).
    fn update_abandoned(&self, _old: &Value, _new: &Value) {}

    /// Runs after an object was written (create or update).
    fn after_store_write(&self, _obj: &Value) {}

    /// Runs after an object was removed from the store.
    async fn after_store_delete(&self, _obj: &Value) -> Result<(), ApiError> {
        Ok(())
    }

    /// Drops the fields the kind's schema does not know and returns their paths
    /// (`spec.foo`), which `fieldValidation` turns into an error or warnings. By default the
    /// schema is the kind's built-in OpenAPI definition (what upstream's strict decoding into
    /// the Go type reports); custom resources use their CRD's (upstream's pruning). A kind
    /// without a definition keeps every field.
    fn prune_unknown_fields(&self, r: &ResourceInfo, obj: &mut Value) -> Vec<String> {
        let defs = crate::openapi::Definitions::builtin();
        match defs.kind(&r.group, &r.version, &r.kind) {
            Some(k) => crate::openapi::fields::prune_unknown(defs, &k.name, obj),
            None => Vec::new(),
        }
    }

    /// The object as it is stored, if not as written (custom resources are stored at their
    /// storage version).
    fn storage_form(&self, _obj: &Value) -> Option<Value> {
        None
    }

    /// A stored object as served at `r`'s version, if not as stored (custom resources: the
    /// `None` conversion, then that version's pruning and defaults).
    fn served_form(&self, _r: &ResourceInfo, _stored: &Value) -> Option<Value> {
        None
    }

    /// The `Warning` a request to `version` of the kind gets (a deprecated CRD version).
    fn version_warning(&self, _version: &str) -> Option<String> {
        None
    }
}

/// The strategies of the served kinds, by (group, resource); every version of a kind shares
/// its strategy, and anything unregistered gets the generic one.
#[derive(Clone)]
pub struct StrategyTable {
    /// Group → resource → strategy: two borrowed-key lookups, no allocation per request.
    by_resource: HashMap<String, HashMap<String, Arc<dyn Strategy>>>,
    /// The custom resources' strategies, written as CRDs are.
    custom: custom_resource::CustomResourceStrategies,
    generic: Arc<dyn Strategy>,
}

impl std::fmt::Debug for StrategyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<String> = self
            .by_resource
            .iter()
            .flat_map(|(g, rs)| rs.keys().map(move |r| format!("{r}.{g}")))
            .collect();
        keys.sort();
        f.debug_struct("StrategyTable")
            .field("kinds", &keys)
            .finish_non_exhaustive()
    }
}

/// What some strategies need from the server: the store, the resource registry and the
/// service allocators.
pub struct StrategyDeps {
    /// The store (the CRD strategy removes custom objects with their definition).
    pub store: Arc<dyn Store>,
    /// The resource registry (the CRD strategy registers what a definition serves).
    pub registry: Registry,
    /// ClusterIP and NodePort allocation.
    pub services: Arc<ServiceAllocator>,
}

impl StrategyTable {
    /// A table with only the generic strategy.
    pub fn new() -> Self {
        StrategyTable {
            by_resource: HashMap::new(),
            custom: custom_resource::CustomResourceStrategies::default(),
            generic: Arc::new(generic::GenericStrategy),
        }
    }

    /// The strategies of the built-in kinds: one line per kind.
    pub fn builtin(deps: &StrategyDeps) -> Self {
        let mut t = StrategyTable::new();
        t.register("", "pods", pod::PodStrategy);
        t.register("", "namespaces", namespace::NamespaceStrategy);
        t.register("", "nodes", node::NodeStrategy);
        t.register(
            "",
            "services",
            service::ServiceStrategy::new(deps.services.clone()),
        );
        t.register("", "configmaps", configmap::ConfigMapStrategy);
        t.register("", "secrets", secret::SecretStrategy);
        t.register("", "endpoints", endpoints::EndpointsStrategy);
        t.register("", "events", event::EventStrategy);
        t.register(
            "",
            "serviceaccounts",
            serviceaccount::ServiceAccountStrategy,
        );
        t.register("events.k8s.io", "events", event::EventStrategy);
        t.register(
            "",
            "replicationcontrollers",
            replicationcontroller::ReplicationControllerStrategy,
        );
        t.register(
            "",
            "persistentvolumes",
            persistentvolume::PersistentVolumeStrategy,
        );
        t.register(
            "",
            "persistentvolumeclaims",
            persistentvolumeclaim::PersistentVolumeClaimStrategy,
        );
        t.register(
            "storage.k8s.io",
            "storageclasses",
            storageclass::StorageClassStrategy,
        );
        t.register("apps", "deployments", deployment::DeploymentStrategy);
        t.register("apps", "replicasets", replicaset::ReplicaSetStrategy);
        t.register("apps", "statefulsets", statefulset::StatefulSetStrategy);
        t.register("apps", "daemonsets", daemonset::DaemonSetStrategy);
        t.register("batch", "jobs", job::JobStrategy);
        t.register("batch", "cronjobs", cronjob::CronJobStrategy);
        t.register("coordination.k8s.io", "leases", lease::LeaseStrategy);
        t.register(
            "autoscaling",
            "horizontalpodautoscalers",
            horizontalpodautoscaler::HorizontalPodAutoscalerStrategy,
        );
        t.register(
            "scheduling.k8s.io",
            "priorityclasses",
            priorityclass::PriorityClassStrategy,
        );
        t.register(
            "policy",
            "poddisruptionbudgets",
            poddisruptionbudget::PodDisruptionBudgetStrategy,
        );
        t.register(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            crd::CustomResourceDefinitionStrategy::new(
                deps.registry.clone(),
                deps.store.clone(),
                t.custom.clone(),
            ),
        );
        t
    }

    /// Registers (or replaces) the strategy of a resource.
    pub fn register(&mut self, group: &str, resource: &str, strategy: impl Strategy) {
        self.by_resource
            .entry(group.into())
            .or_default()
            .insert(resource.into(), Arc::new(strategy));
    }

    /// The strategy of a resource: its own, its CRD's, or the generic one.
    pub fn lookup(&self, r: &ResourceInfo) -> Arc<dyn Strategy> {
        self.by_resource
            .get(&r.group)
            .and_then(|rs| rs.get(&r.plural))
            .cloned()
            .or_else(|| self.custom.get(&r.group, &r.plural))
            .unwrap_or_else(|| self.generic.clone())
    }

    /// The custom resources' strategies (the CRD strategy writes them).
    pub fn custom(&self) -> &custom_resource::CustomResourceStrategies {
        &self.custom
    }

    /// True if the resource has a strategy of its own.
    pub fn has_own(&self, group: &str, resource: &str) -> bool {
        self.by_resource
            .get(group)
            .is_some_and(|rs| rs.contains_key(resource))
    }
}

impl Default for StrategyTable {
    fn default() -> Self {
        Self::new()
    }
}

/// A `FieldValueRequired` cause.
pub(crate) fn required(field: &str) -> StatusCause {
    StatusCause {
        reason: "FieldValueRequired".into(),
        message: "Required value".into(),
        field: field.into(),
    }
}

/// A `FieldValueInvalid` cause.
pub(crate) fn invalid(field: &str, message: impl Into<String>) -> StatusCause {
    StatusCause {
        reason: "FieldValueInvalid".into(),
        message: message.into(),
        field: field.into(),
    }
}

/// A `FieldValueRequired` cause with upstream's detail (`Required value: <detail>`).
pub(crate) fn required_because(field: &str, detail: &str) -> StatusCause {
    StatusCause {
        reason: "FieldValueRequired".into(),
        message: format!("Required value: {detail}"),
        field: field.into(),
    }
}

/// A `FieldValueForbidden` cause.
pub(crate) fn forbidden(field: &str, detail: impl std::fmt::Display) -> StatusCause {
    StatusCause {
        reason: "FieldValueForbidden".into(),
        message: format!("Forbidden: {detail}"),
        field: field.into(),
    }
}

/// A `FieldValueNotSupported` cause: `value` is not one of `supported`.
pub(crate) fn not_supported(field: &str, value: &Value, supported: &[&str]) -> StatusCause {
    let supported: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    StatusCause {
        reason: "FieldValueNotSupported".into(),
        message: format!(
            "Unsupported value: {value}: supported values: {}",
            supported.join(", ")
        ),
        field: field.into(),
    }
}

/// Upstream's `ValidateImmutableField`: a cause when `new` differs from `old`.
pub(crate) fn immutable(
    field: &str,
    new: Option<&Value>,
    old: Option<&Value>,
) -> Option<StatusCause> {
    let (new, old) = (new.unwrap_or(&Value::Null), old.unwrap_or(&Value::Null));
    (new != old).then(|| invalid(field, format!("Invalid value: {new}: field is immutable")))
}

/// Sets `key` in `m` when it is missing or null.
pub(crate) fn default_field(m: &mut serde_json::Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.into(), value);
    }
}

/// The object under `key`, created (or replaced, if not an object) as needed.
pub(crate) fn object_field<'a>(
    v: &'a mut Value,
    key: &str,
) -> Option<&'a mut serde_json::Map<String, Value>> {
    let m = v.as_object_mut()?;
    let e = m
        .entry(key.to_string())
        .or_insert_with(|| serde_json::json!({}));
    if !e.is_object() {
        *e = serde_json::json!({});
    }
    e.as_object_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps() -> StrategyDeps {
        let config = kybernetes_core::ClusterConfig::default();
        StrategyDeps {
            store: Arc::new(kybernetes_store::MemoryStore::default()),
            registry: Registry::with_builtins(),
            services: Arc::new(ServiceAllocator::new(&config).expect("default service CIDR")),
        }
    }

    #[test]
    fn a_kinds_strategy_is_found_in_the_table_and_custom_resources_get_the_generic_one() {
        let table = StrategyTable::builtin(&deps());
        let reg = Registry::with_builtins();
        let pods = reg.lookup("", "v1", "pods").expect("pods are built in");
        let pod_strategy = table.lookup(&pods);
        assert!(pod_strategy.field_selectors().contains(&"spec.nodeName"));
        assert_eq!(
            pod_strategy.subresource("binding"),
            Some(Subresource::Binding)
        );

        let widgets = ResourceInfo::custom("example.com", "v1", "Widget", "widgets", true);
        assert!(!table.has_own("example.com", "widgets"));
        let generic = table.lookup(&widgets);
        assert!(generic.field_selectors().is_empty());
        assert_eq!(generic.subresource("binding"), None);
        assert!(generic.validate(&serde_json::json!({})).is_empty());
    }

    #[test]
    fn namespaces_and_services_take_dns_labels_as_names() {
        let table = StrategyTable::builtin(&deps());
        let reg = Registry::with_builtins();
        for plural in ["namespaces", "services"] {
            let r = reg.lookup("", "v1", plural).expect("built in");
            assert!(
                !table.lookup(&r).validate_name("a.b").is_empty(),
                "{plural}"
            );
        }
        let cm = reg.lookup("", "v1", "configmaps").expect("built in");
        assert!(table.lookup(&cm).validate_name("a.b").is_empty());
    }
}
