//! The resource registry: which kinds the API server serves, their plural names, scope and
//! subresources. Built-in resources come from [`builtin_resources`]; custom resources are
//! added at run time with [`Registry::register`], so adding a kind is data, not code.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Where the replica counts of a scalable resource live (the `scale` subresource).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleSubresource {
    /// JSON path of the desired replicas, e.g. `.spec.replicas`.
    pub spec_replicas_path: String,
    /// JSON path of the observed replicas, e.g. `.status.replicas`.
    pub status_replicas_path: String,
    /// JSON path of the label selector string in status, if any.
    pub label_selector_path: Option<String>,
}

/// Everything the API server needs to know to serve one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; empty for the core (legacy) group.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Plural resource name used in URLs, e.g. `deployments`.
    pub plural: String,
    /// Singular name, e.g. `deployment`.
    pub singular: String,
    /// True for namespaced resources.
    pub namespaced: bool,
    /// Short names for kubectl (`deploy`).
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Whether the resource has a `status` subresource (status is then only written there).
    pub status_subresource: bool,
    /// The `scale` subresource, if any.
    pub scale: Option<ScaleSubresource>,
    /// Other subresources served (for discovery), e.g. `binding`, `eviction`, `log`.
    pub extra_subresources: Vec<String>,
    /// Whether `metadata.generation` is maintained (bumped on spec changes).
    pub has_generation: bool,
    /// Whether deletion is graceful (pods): a delete with a grace period sets
    /// `deletionTimestamp` and waits for the node agent.
    pub graceful_delete: bool,
    /// Whether the resource is computed on each read instead of stored (`metrics.k8s.io`,
    /// which upstream's metrics-server serves): only `get` and `list` are served.
    pub computed: bool,
    /// A review (SelfSubjectReview, SelfSubjectAccessReview): `create` is the only verb, and
    /// it answers from the request without storing anything.
    pub create_only: bool,
}

impl ResourceInfo {
    fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        ResourceInfo {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced,
            short_names: Vec::new(),
            categories: Vec::new(),
            status_subresource: false,
            scale: None,
            extra_subresources: Vec::new(),
            has_generation: false,
            graceful_delete: false,
            computed: false,
            create_only: false,
        }
    }

    fn short(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    fn all(mut self) -> Self {
        self.categories = vec!["all".into()];
        self
    }

    fn status(mut self) -> Self {
        self.status_subresource = true;
        self
    }

    fn generation(mut self) -> Self {
        self.has_generation = true;
        self
    }

    fn scalable(mut self, selector: bool) -> Self {
        self.scale = Some(ScaleSubresource {
            spec_replicas_path: ".spec.replicas".into(),
            status_replicas_path: ".status.replicas".into(),
            label_selector_path: selector.then(|| ".status.selector".into()),
        });
        self
    }

    fn subresources(mut self, subs: &[&str]) -> Self {
        self.extra_subresources = subs.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Builds a resource description for a custom resource or a test.
    ///
    /// ```
    /// let r = kybernetes_core::ResourceInfo::custom("example.com", "v1", "Widget", "widgets", true);
    /// assert_eq!(r.api_version(), "example.com/v1");
    /// assert_eq!(r.key_prefix(), "/registry/example.com/widgets/");
    /// ```
    pub fn custom(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        Self::new(group, version, kind, plural, namespaced).generation()
    }

    /// `apiVersion` as written in objects: `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The `*List` kind.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The store key prefix of all objects of this resource (ends with `/`).
    pub fn key_prefix(&self) -> String {
        let g = if self.group.is_empty() {
            "core"
        } else {
            self.group.as_str()
        };
        format!("/registry/{g}/{}/", self.plural)
    }

    /// The store key prefix for one namespace (or the whole resource if `None`).
    pub fn namespace_prefix(&self, namespace: Option<&str>) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{ns}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{ns}/{name}", self.key_prefix()),
            _ => format!("{}{name}", self.key_prefix()),
        }
    }

    /// The verbs advertised in discovery.
    pub fn verbs(&self) -> Vec<&'static str> {
        if self.computed {
            return vec!["get", "list"];
        }
        if self.create_only {
            return vec!["create"];
        }
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

/// The resources served from the start.
pub fn builtin_resources() -> Vec<ResourceInfo> {
    let r = ResourceInfo::new;
    vec![
        r("", "v1", "Namespace", "namespaces", false)
            .short(&["ns"])
            .status()
            .subresources(&["finalize"]),
        r("", "v1", "Node", "nodes", false)
            .short(&["no"])
            .status()
            .subresources(&["proxy"]),
        r("", "v1", "Pod", "pods", true)
            .short(&["po"])
            .all()
            .status()
            .generation()
            .subresources(&[
                "binding",
                "eviction",
                "log",
                "exec",
                "attach",
                "portforward",
                "proxy",
                "ephemeralcontainers",
            ])
            .graceful(),
        r("", "v1", "Service", "services", true)
            .short(&["svc"])
            .all()
            .status()
            .subresources(&["proxy"]),
        r("", "v1", "Endpoints", "endpoints", true).short(&["ep"]),
        r("", "v1", "ConfigMap", "configmaps", true).short(&["cm"]),
        r("", "v1", "Secret", "secrets", true),
        r("", "v1", "Event", "events", true).short(&["ev"]),
        r("", "v1", "ServiceAccount", "serviceaccounts", true)
            .short(&["sa"])
            .subresources(&["token"]),
        r(
            "",
            "v1",
            "ReplicationController",
            "replicationcontrollers",
            true,
        )
        .short(&["rc"])
        .all()
        .status()
        .generation()
        .scalable(false),
        r("", "v1", "PersistentVolume", "persistentvolumes", false)
            .short(&["pv"])
            .status(),
        r(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
        )
        .short(&["pvc"])
        .status(),
        r(
            "storage.k8s.io",
            "v1",
            "StorageClass",
            "storageclasses",
            false,
        )
        .short(&["sc"]),
        r("", "v1", "ResourceQuota", "resourcequotas", true)
            .short(&["quota"])
            .status(),
        r("", "v1", "LimitRange", "limitranges", true).short(&["limits"]),
        r("apps", "v1", "Deployment", "deployments", true)
            .short(&["deploy"])
            .all()
            .status()
            .generation()
            .scalable(true),
        r("apps", "v1", "ReplicaSet", "replicasets", true)
            .short(&["rs"])
            .all()
            .status()
            .generation()
            .scalable(true),
        r("apps", "v1", "StatefulSet", "statefulsets", true)
            .short(&["sts"])
            .all()
            .status()
            .generation()
            .scalable(true),
        r("apps", "v1", "DaemonSet", "daemonsets", true)
            .short(&["ds"])
            .all()
            .status()
            .generation(),
        r(
            "apps",
            "v1",
            "ControllerRevision",
            "controllerrevisions",
            true,
        ),
        r("batch", "v1", "Job", "jobs", true)
            .all()
            .status()
            .generation(),
        r("batch", "v1", "CronJob", "cronjobs", true)
            .short(&["cj"])
            .all()
            .status()
            .generation(),
        // Stored at autoscaling/v2; autoscaling/v1 is served by conversion (the HPA strategy).
        r(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
        )
        .short(&["hpa"])
        .all()
        .status()
        .generation(),
        r(
            "autoscaling",
            "v1",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
        )
        .short(&["hpa"])
        .all()
        .status()
        .generation(),
        r("coordination.k8s.io", "v1", "Lease", "leases", true),
        r(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            true,
        ),
        r("events.k8s.io", "v1", "Event", "events", true).short(&["ev"]),
        r("networking.k8s.io", "v1", "Ingress", "ingresses", true)
            .short(&["ing"])
            .status()
            .generation(),
        r(
            "networking.k8s.io",
            "v1",
            "IngressClass",
            "ingressclasses",
            false,
        ),
        r(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
        )
        .short(&["pdb"])
        .status()
        .generation(),
        r(
            "scheduling.k8s.io",
            "v1",
            "PriorityClass",
            "priorityclasses",
            false,
        )
        .short(&["pc"]),
        r("metrics.k8s.io", "v1beta1", "PodMetrics", "pods", true).computed(),
        r("metrics.k8s.io", "v1beta1", "NodeMetrics", "nodes", false).computed(),
        r(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        )
        .short(&["crd", "crds"])
        .status()
        .generation(),
        r(
            "authentication.k8s.io",
            "v1",
            "SelfSubjectReview",
            "selfsubjectreviews",
            false,
        )
        .review(),
        r(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
        )
        .review(),
    ]
}

impl ResourceInfo {
    fn graceful(mut self) -> Self {
        self.graceful_delete = true;
        self
    }

    fn review(mut self) -> Self {
        self.create_only = true;
        self
    }

    fn computed(mut self) -> Self {
        self.computed = true;
        self
    }
}

/// Orders API versions as upstream's `CompareKubeAwareVersionStrings` does, highest priority
/// first: GA before beta before alpha, higher numbers first within each, and versions that do
/// not look like `v1`, `v2beta1`, `v1alpha3` last, alphabetically. Discovery lists a group's
/// versions in this order and prefers the first.
///
/// ```
/// use std::cmp::Ordering;
/// use kybernetes_core::registry::compare_versions;
/// let mut v = vec!["v1", "v1beta1", "v2", "v1alpha1", "foo", "v10"];
/// v.sort_by(|a, b| compare_versions(a, b));
/// assert_eq!(v, ["v10", "v2", "v1", "v1beta1", "v1alpha1", "foo"]);
/// assert_eq!(compare_versions("v2", "v1"), Ordering::Less);
/// ```
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    match (kube_version(a), kube_version(b)) {
        // Higher level (GA=2, beta=1, alpha=0), then higher major, then higher minor first.
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// (level, major, minor) of a Kubernetes-style version: `v2` → (2, 2, 0), `v1beta3` → (1, 1, 3).
fn kube_version(v: &str) -> Option<(u8, u64, u64)> {
    let rest = v.strip_prefix('v')?;
    let major_len = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (major, tail) = rest.split_at(major_len);
    if major.is_empty() || major.starts_with('0') {
        return None;
    }
    let major: u64 = major.parse().ok()?;
    if tail.is_empty() {
        return Some((2, major, 0));
    }
    let (level, minor) = if let Some(m) = tail.strip_prefix("beta") {
        (1, m)
    } else if let Some(m) = tail.strip_prefix("alpha") {
        (0, m)
    } else {
        return None;
    };
    if minor.is_empty() || minor.starts_with('0') || !minor.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((level, major, minor.parse().ok()?))
}

/// (group, version, plural) → resource.
type Table = BTreeMap<(String, String, String), Arc<ResourceInfo>>;

/// The table of served resources. Cheap to clone; shared by every request.
///
/// ```
/// let reg = kybernetes_core::Registry::with_builtins();
/// let deploy = reg.lookup("apps", "v1", "deployments").unwrap();
/// assert_eq!(deploy.kind, "Deployment");
/// assert!(reg.lookup("", "v1", "widgets").is_none());
/// ```
#[derive(Clone, Debug, Default)]
pub struct Registry {
    inner: Arc<RwLock<Table>>,
}

impl Registry {
    /// A registry holding the built-in resources.
    pub fn with_builtins() -> Self {
        let reg = Registry::default();
        for r in builtin_resources() {
            reg.register(r);
        }
        reg
    }

    /// Adds (or replaces) a resource.
    pub fn register(&self, info: ResourceInfo) {
        let key = (
            info.group.clone(),
            info.version.clone(),
            info.plural.clone(),
        );
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        map.insert(key, Arc::new(info));
    }

    /// Removes a resource.
    pub fn unregister(&self, group: &str, version: &str, plural: &str) {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        map.remove(&(group.to_string(), version.to_string(), plural.to_string()));
    }

    /// Finds a resource by group, version and plural.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        map.get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Finds a resource by group and kind (any version).
    pub fn lookup_kind(&self, group: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        map.values()
            .find(|r| r.group == group && r.kind == kind)
            .cloned()
    }

    /// Every served resource.
    pub fn all(&self) -> Vec<Arc<ResourceInfo>> {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }

    /// The resources of one group/version.
    pub fn resources_in(&self, group: &str, version: &str) -> Vec<Arc<ResourceInfo>> {
        self.all()
            .into_iter()
            .filter(|r| r.group == group && r.version == version)
            .collect()
    }

    /// Non-core groups with their versions, highest priority first ([`compare_versions`]).
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in self.all() {
            if r.group.is_empty() {
                continue;
            }
            let versions = groups.entry(r.group.clone()).or_default();
            if !versions.contains(&r.version) {
                versions.push(r.version.clone());
            }
        }
        for versions in groups.values_mut() {
            versions.sort_by(|a, b| compare_versions(a, b));
        }
        groups
    }
}
