//! The operations each served resource offers, as upstream's OpenAPI documents list them: one
//! path per collection, object and subresource, each operation with its
//! `x-kubernetes-action`, its `x-kubernetes-group-version-kind`, its query parameters and its
//! body and responses. Written once here and rendered by [`super::v3`] and [`super::v2`].
//!
//! kubectl reads two things from them: whether a kind's PATCH takes `fieldValidation` (then
//! it leaves validation to the server), and whether it takes a strategic merge patch (then
//! `kubectl apply` computes one from the document's merge keys).

use kybernetes_core::ResourceInfo;

/// A parameter of an operation or a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param {
    /// The parameter's name.
    pub name: &'static str,
    /// `query` or `path`.
    pub location: &'static str,
    /// What it does.
    pub description: &'static str,
    /// Its JSON type: `string`, `integer` or `boolean`.
    pub ty: &'static str,
}

const fn query(name: &'static str, ty: &'static str, description: &'static str) -> Param {
    Param {
        name,
        location: "query",
        description,
        ty,
    }
}

const fn path(name: &'static str, description: &'static str) -> Param {
    Param {
        name,
        location: "path",
        description,
        ty: "string",
    }
}

const NAME: Param = path("name", "The name of the object.");
const NAMESPACE: Param = path("namespace", "The namespace of the objects.");
const PRETTY: Param = query("pretty", "string", "When 'true', the response is indented.");
const DRY_RUN: Param = query(
    "dryRun",
    "string",
    "When 'All', every step of the request runs but nothing is stored.",
);
const FIELD_MANAGER: Param = query(
    "fieldManager",
    "string",
    "The name of the actor making the change, recorded in managedFields.",
);
/// The parameter kubectl looks for to leave validation to the server.
pub const FIELD_VALIDATION: Param = query(
    "fieldValidation",
    "string",
    "What to do with unknown or duplicated fields in the body: 'Ignore' drops them, 'Warn' (the default) drops them with a warning header each, 'Strict' refuses the request.",
);
const FORCE: Param = query(
    "force",
    "boolean",
    "Server-side apply only: take over the fields other managers own instead of failing with a conflict.",
);
const GRACE_PERIOD: Param = query(
    "gracePeriodSeconds",
    "integer",
    "Seconds the object has to terminate before it is deleted; 0 deletes at once.",
);
const ORPHAN: Param = query(
    "orphanDependents",
    "boolean",
    "Deprecated: use propagationPolicy. When true, dependents are orphaned.",
);
const PROPAGATION: Param = query(
    "propagationPolicy",
    "string",
    "What happens to dependents: 'Orphan', 'Background' (the default) or 'Foreground'.",
);
const LIST_PARAMS: [Param; 10] = [
    query(
        "allowWatchBookmarks",
        "boolean",
        "Watch only: send BOOKMARK events carrying the latest resourceVersion.",
    ),
    query(
        "continue",
        "string",
        "The token of the previous page of a paged list.",
    ),
    query(
        "fieldSelector",
        "string",
        "Only objects whose fields match, e.g. metadata.name=x.",
    ),
    query(
        "labelSelector",
        "string",
        "Only objects whose labels match, e.g. app=web,tier in (a,b).",
    ),
    query(
        "limit",
        "integer",
        "At most this many objects; the rest is paged.",
    ),
    query(
        "resourceVersion",
        "string",
        "Which version of the state to read or watch from.",
    ),
    query(
        "resourceVersionMatch",
        "string",
        "How resourceVersion applies to a list: 'Exact' or 'NotOlderThan'.",
    ),
    query(
        "sendInitialEvents",
        "boolean",
        "Watch only: start with synthetic ADDED events for the current objects.",
    ),
    query(
        "timeoutSeconds",
        "integer",
        "How long a list or watch may run.",
    ),
    query("watch", "boolean", "Watch for changes instead of listing."),
];

/// The content types of a PATCH body, as upstream lists them.
pub const PATCH_TYPES_BUILTIN: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];
/// Custom resources take no strategic merge patch (they have no merge keys).
pub const PATCH_TYPES_CUSTOM: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
];

/// A definition name or nothing, for kinds without a schema.
pub type SchemaName = Option<String>;

/// A request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestBody {
    /// The content types accepted.
    pub content_types: &'static [&'static str],
    /// The body's definition.
    pub schema: SchemaName,
}

/// One response of an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub code: u16,
    /// Its description.
    pub description: &'static str,
    /// The body's definition, if it has one; `Some("")` is a plain string.
    pub schema: SchemaName,
}

/// A `group/version/kind`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gvk {
    /// The group, empty for core.
    pub group: String,
    /// The version.
    pub version: String,
    /// The kind.
    pub kind: String,
}

/// One operation (an HTTP method on a path).
#[derive(Clone, Debug)]
pub struct Operation {
    /// The lower-case HTTP method.
    pub method: &'static str,
    /// `x-kubernetes-action`: get, list, post, put, patch, delete, deletecollection, connect.
    pub action: &'static str,
    /// The operation's id (`patchAppsV1NamespacedDeployment`).
    pub id: String,
    /// What it does.
    pub description: String,
    /// The tag (`apps_v1`).
    pub tag: String,
    /// Query parameters.
    pub params: Vec<Param>,
    /// The request body, if any.
    pub body: Option<RequestBody>,
    /// The responses.
    pub responses: Vec<Response>,
    /// The kind the operation reads or writes.
    pub gvk: Option<Gvk>,
    /// True for lists, which also stream watch events.
    pub streams: bool,
}

/// A path and its operations.
#[derive(Clone, Debug)]
pub struct PathItem {
    /// The path, with `{namespace}` and `{name}` placeholders.
    pub path: String,
    /// The parameters of every operation on the path.
    pub params: Vec<Param>,
    /// The operations.
    pub operations: Vec<Operation>,
}

/// The definitions a resource's operations use.
#[derive(Clone, Debug, Default)]
pub struct ResourceSchemas {
    /// The kind's definition.
    pub kind: SchemaName,
    /// Its list's definition.
    pub list: SchemaName,
    /// True for built-in kinds (strategic merge patch is offered).
    pub builtin: bool,
}

const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";

/// The definitions every document with resource paths references.
pub const COMMON_DEFINITIONS: &[&str] = &[DELETE_OPTIONS, STATUS, PATCH];

/// The `Group` part of operation ids and tags, as upstream writes it: `apps` → `Apps`,
/// `rbac.authorization.k8s.io` → `RbacAuthorization`, core → `Core`, `stable.example.com` →
/// `StableExampleCom`.
///
/// ```
/// use kybernetes_apiserver::openapi::paths::group_id;
/// assert_eq!(group_id("rbac.authorization.k8s.io"), "RbacAuthorization");
/// assert_eq!(group_id(""), "Core");
/// assert_eq!(group_id("stable.example.com"), "StableExampleCom");
/// ```
pub fn group_id(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    let g = group.strip_suffix(".k8s.io").unwrap_or(group);
    g.split(['.', '-'])
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

fn tag(r: &ResourceInfo) -> String {
    let mut g = group_id(&r.group);
    if let Some(first) = g.get(..1).map(str::to_ascii_lowercase) {
        g.replace_range(..1, &first);
    }
    format!("{g}_{}", r.version)
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The root of a group-version's paths: `/api/v1` or `/apis/<group>/<version>`.
pub fn gv_root(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

struct Builder<'a> {
    r: &'a ResourceInfo,
    schemas: &'a ResourceSchemas,
    /// `AppsV1`.
    gv_id: String,
    tag: String,
}

impl Builder<'_> {
    fn gvk(&self) -> Option<Gvk> {
        Some(Gvk {
            group: self.r.group.clone(),
            version: self.r.version.clone(),
            kind: self.r.kind.clone(),
        })
    }

    /// `{verb}{GroupVersion}{Namespaced}{Kind}{suffix}`.
    fn id(&self, verb: &str, suffix: &str) -> String {
        let ns = if self.r.namespaced { "Namespaced" } else { "" };
        format!("{verb}{}{ns}{}{suffix}", self.gv_id, self.r.kind)
    }

    #[allow(clippy::too_many_arguments)]
    fn op(
        &self,
        method: &'static str,
        action: &'static str,
        id: String,
        description: String,
        params: Vec<Param>,
        body: Option<RequestBody>,
        responses: Vec<Response>,
    ) -> Operation {
        Operation {
            method,
            action,
            id,
            description,
            tag: self.tag.clone(),
            params,
            body,
            responses,
            gvk: self.gvk(),
            streams: false,
        }
    }

    fn write_params(&self) -> Vec<Param> {
        vec![DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION]
    }

    fn ok(&self, schema: &SchemaName) -> Response {
        Response {
            code: 200,
            description: "OK",
            schema: schema.clone(),
        }
    }

    fn created(&self, schema: &SchemaName) -> Response {
        Response {
            code: 201,
            description: "Created",
            schema: schema.clone(),
        }
    }

    fn body(&self, types: &'static [&'static str], schema: &SchemaName) -> Option<RequestBody> {
        Some(RequestBody {
            content_types: types,
            schema: schema.clone(),
        })
    }

    fn status(&self) -> SchemaName {
        Some(STATUS.into())
    }

    fn collection(&self, path: String, path_params: Vec<Param>) -> PathItem {
        let kind = &self.schemas.kind;
        let list = &self.schemas.list;
        let k = &self.r.kind;
        let mut list_op = self.op(
            "get",
            "list",
            self.id("list", ""),
            format!("list or watch objects of kind {k}"),
            LIST_PARAMS.to_vec(),
            None,
            vec![self.ok(list)],
        );
        list_op.streams = true;
        let create = self.op(
            "post",
            "post",
            self.id("create", ""),
            format!("create a {k}"),
            self.write_params(),
            self.body(&["*/*"], kind),
            vec![
                self.ok(kind),
                self.created(kind),
                Response {
                    code: 202,
                    description: "Accepted",
                    schema: kind.clone(),
                },
            ],
        );
        let mut dc_params = vec![DRY_RUN, GRACE_PERIOD, ORPHAN, PROPAGATION];
        dc_params.extend(
            LIST_PARAMS
                .iter()
                .filter(|p| p.name != "watch" && p.name != "allowWatchBookmarks"),
        );
        let delete_collection = self.op(
            "delete",
            "deletecollection",
            self.id("deleteCollection", ""),
            format!("delete collection of {k}"),
            dc_params,
            self.body(&["*/*"], &Some(DELETE_OPTIONS.into())),
            vec![self.ok(&self.status())],
        );
        PathItem {
            path,
            params: path_params,
            operations: vec![list_op, create, delete_collection],
        }
    }

    fn object(&self, path: String, path_params: Vec<Param>) -> PathItem {
        let kind = &self.schemas.kind;
        let k = &self.r.kind;
        let get = self.op(
            "get",
            "get",
            self.id("read", ""),
            format!("read the specified {k}"),
            Vec::new(),
            None,
            vec![self.ok(kind)],
        );
        let put = self.op(
            "put",
            "put",
            self.id("replace", ""),
            format!("replace the specified {k}"),
            self.write_params(),
            self.body(&["*/*"], kind),
            vec![self.ok(kind), self.created(kind)],
        );
        let patch = self.patch_op(
            self.id("patch", ""),
            format!("partially update the specified {k}"),
            kind,
        );
        let delete = self.op(
            "delete",
            "delete",
            self.id("delete", ""),
            format!("delete a {k}"),
            vec![DRY_RUN, GRACE_PERIOD, ORPHAN, PROPAGATION],
            self.body(&["*/*"], &Some(DELETE_OPTIONS.into())),
            vec![
                self.ok(&self.status()),
                Response {
                    code: 202,
                    description: "Accepted",
                    schema: self.status(),
                },
            ],
        );
        PathItem {
            path,
            params: path_params,
            operations: vec![get, put, patch, delete],
        }
    }

    fn patch_op(&self, id: String, description: String, schema: &SchemaName) -> Operation {
        let types = if self.schemas.builtin {
            PATCH_TYPES_BUILTIN
        } else {
            PATCH_TYPES_CUSTOM
        };
        let mut params = self.write_params();
        params.push(FORCE);
        self.op(
            "patch",
            "patch",
            id,
            description,
            params,
            self.body(types, &Some(PATCH.into())),
            vec![self.ok(schema), self.created(schema)],
        )
    }

    /// `status`, `scale`: read, replace and patch a part of the object.
    fn part(
        &self,
        path: String,
        path_params: Vec<Param>,
        sub: &str,
        schema: SchemaName,
        gvk: Option<Gvk>,
    ) -> PathItem {
        let k = &self.r.kind;
        let suffix = upper_first(sub);
        let mut ops = vec![
            self.op(
                "get",
                "get",
                self.id("read", &suffix),
                format!("read {sub} of the specified {k}"),
                Vec::new(),
                None,
                vec![self.ok(&schema)],
            ),
            self.op(
                "put",
                "put",
                self.id("replace", &suffix),
                format!("replace {sub} of the specified {k}"),
                self.write_params(),
                self.body(&["*/*"], &schema),
                vec![self.ok(&schema), self.created(&schema)],
            ),
            self.patch_op(
                self.id("patch", &suffix),
                format!("partially update {sub} of the specified {k}"),
                &schema,
            ),
        ];
        for op in &mut ops {
            op.gvk = gvk.clone();
        }
        PathItem {
            path,
            params: path_params,
            operations: ops,
        }
    }

    /// A subresource that takes or gives a body of another kind (`binding`, `eviction`,
    /// `token`, `log`, `exec`...).
    fn action(&self, path: String, path_params: Vec<Param>, sub: &str) -> Option<PathItem> {
        let k = &self.r.kind;
        let suffix = upper_first(sub);
        let gvk = |group: &str, version: &str, kind: &str| {
            Some(Gvk {
                group: group.into(),
                version: version.into(),
                kind: kind.into(),
            })
        };
        let post = |kind_name: &str, gvk: Option<Gvk>| {
            let schema: SchemaName = Some(kind_name.into());
            let mut op = self.op(
                "post",
                "post",
                self.id("create", &suffix),
                format!("create {sub} of a {k}"),
                vec![DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION],
                self.body(&["*/*"], &schema),
                vec![self.ok(&schema), self.created(&schema)],
            );
            op.gvk = gvk;
            vec![op]
        };
        let connect = |methods: &[&'static str]| {
            methods
                .iter()
                .map(|m| {
                    let mut op = self.op(
                        m,
                        "connect",
                        self.id(&format!("connect{}", upper_first(m)), &suffix),
                        format!("connect {} requests to {sub} of {k}", m.to_uppercase()),
                        Vec::new(),
                        None,
                        vec![Response {
                            code: 200,
                            description: "OK",
                            schema: Some(String::new()),
                        }],
                    );
                    op.gvk = None;
                    op
                })
                .collect::<Vec<_>>()
        };
        let operations = match sub {
            "binding" => post("io.k8s.api.core.v1.Binding", gvk("", "v1", "Binding")),
            "eviction" => post(
                "io.k8s.api.policy.v1.Eviction",
                gvk("policy", "v1", "Eviction"),
            ),
            "token" => post(
                "io.k8s.api.authentication.v1.TokenRequest",
                gvk("authentication.k8s.io", "v1", "TokenRequest"),
            ),
            "log" => {
                let mut op = self.op(
                    "get",
                    "get",
                    self.id("read", "Log"),
                    format!("read log of the specified {k}"),
                    Vec::new(),
                    None,
                    vec![Response {
                        code: 200,
                        description: "OK",
                        schema: Some(String::new()),
                    }],
                );
                op.gvk = None;
                vec![op]
            }
            "exec" | "attach" | "portforward" => connect(&["get", "post"]),
            "proxy" => connect(&["get", "put", "post", "patch", "delete"]),
            "finalize" => {
                let kind = &self.schemas.kind;
                vec![self.op(
                    "put",
                    "put",
                    self.id("replace", "Finalize"),
                    format!("replace finalize of the specified {k}"),
                    self.write_params(),
                    self.body(&["*/*"], kind),
                    vec![self.ok(kind), self.created(kind)],
                )]
            }
            _ => return None,
        };
        Some(PathItem {
            path,
            params: path_params,
            operations,
        })
    }
}

/// Every path of a served resource, with its operations.
pub fn resource_paths(r: &ResourceInfo, schemas: &ResourceSchemas) -> Vec<PathItem> {
    let b = Builder {
        r,
        schemas,
        gv_id: format!("{}{}", group_id(&r.group), upper_first(&r.version)),
        tag: tag(r),
    };
    let root = gv_root(&r.group, &r.version);
    let (collection, mut base_params) = if r.namespaced {
        (
            format!("{root}/namespaces/{{namespace}}/{}", r.plural),
            vec![NAMESPACE],
        )
    } else {
        (format!("{root}/{}", r.plural), Vec::new())
    };
    base_params.push(PRETTY);
    let mut item_params = vec![NAME];
    item_params.extend(base_params.iter().copied());
    let item = format!("{collection}/{{name}}");
    let mut out = vec![
        b.collection(collection, base_params),
        b.object(item.clone(), item_params.clone()),
    ];
    if r.namespaced {
        let mut all = b.collection(format!("{root}/{}", r.plural), vec![PRETTY]);
        all.operations.retain(|op| op.action == "list");
        for op in &mut all.operations {
            op.id = format!("list{}{}ForAllNamespaces", b.gv_id, r.kind);
        }
        out.push(all);
    }
    if r.status_subresource {
        out.push(b.part(
            format!("{item}/status"),
            item_params.clone(),
            "status",
            schemas.kind.clone(),
            b.gvk(),
        ));
    }
    if r.scale.is_some() {
        out.push(b.part(
            format!("{item}/scale"),
            item_params.clone(),
            "scale",
            Some("io.k8s.api.autoscaling.v1.Scale".into()),
            Some(Gvk {
                group: "autoscaling".into(),
                version: "v1".into(),
                kind: "Scale".into(),
            }),
        ));
    }
    for sub in &r.extra_subresources {
        if let Some(p) = b.action(format!("{item}/{sub}"), item_params.clone(), sub) {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_patch_takes_field_validation_and_strategic_merge_patch() {
        let r = kybernetes_core::registry::builtin_resources()
            .into_iter()
            .find(|r| r.kind == "Deployment")
            .expect("deployments");
        let schemas = ResourceSchemas {
            kind: Some("io.k8s.api.apps.v1.Deployment".into()),
            list: Some("io.k8s.api.apps.v1.DeploymentList".into()),
            builtin: true,
        };
        let paths = resource_paths(&r, &schemas);
        let item = paths
            .iter()
            .find(|p| p.path == "/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
            .expect("item path");
        let patch = item
            .operations
            .iter()
            .find(|o| o.method == "patch")
            .expect("patch");
        assert_eq!(patch.id, "patchAppsV1NamespacedDeployment");
        assert!(patch.params.contains(&FIELD_VALIDATION));
        assert_eq!(
            patch.gvk.as_ref().map(|g| g.kind.as_str()),
            Some("Deployment")
        );
        assert!(patch.body.as_ref().is_some_and(|b| {
            b.content_types
                .contains(&"application/strategic-merge-patch+json")
        }));
        assert!(
            paths
                .iter()
                .any(|p| p.path.ends_with("/deployments/{name}/scale"))
        );
        assert!(paths.iter().any(|p| p.path == "/apis/apps/v1/deployments"));
    }
}
