//! Turning an HTTP request into a `RequestInfo` (what upstream's `RequestInfoFactory` does) and
//! parsing the query parameters of each verb.

use std::collections::HashMap;

use kybernetes_core::ApiError;
use serde_json::Value;

/// What a request asks for, in upstream's terms (`RequestInfo`): the first step of the handler
/// chain parses it from the method, path and query and puts it in the request's extensions,
/// where authorization and the registry read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// True for a request to a resource (`/api/v1/...`, `/apis/<group>/<version>/...`);
    /// false for non-resource paths (`/version`, `/apis`, `/healthz`).
    pub resource_request: bool,
    /// The request path.
    pub path: String,
    /// The verb: get, list, watch, create, update, patch, delete or deletecollection for a
    /// resource request; the lower-case HTTP method otherwise (and for methods no verb maps
    /// to, which the registry answers with 405).
    pub verb: String,
    /// API group, empty for core.
    pub group: String,
    /// API version.
    pub version: String,
    /// Namespace from the path, if any.
    pub namespace: Option<String>,
    /// Resource plural.
    pub resource: String,
    /// Object name, if any.
    pub name: Option<String>,
    /// Subresource, if any.
    pub subresource: Option<String>,
    /// The path after a `proxy` subresource (`pods/NAME/proxy/PATH`), starting with `/` and
    /// keeping a trailing slash, as upstream's `JoinPreservingTrailingSlash`; `None` for other
    /// requests.
    pub proxy_path: Option<String>,
    /// True for the legacy `/watch/` path prefix.
    pub legacy_watch: bool,
}

impl RequestInfo {
    /// Parses a request's method, path and query, as upstream's `RequestInfoFactory` does.
    pub fn parse(method: &http::Method, uri: &http::Uri) -> Self {
        let path = uri.path();
        let mut info = match parse_path(path) {
            Target::Resource(info) => info,
            _ => RequestInfo::default(),
        };
        info.path = path.to_string();
        if !info.resource_request {
            info.verb = method.as_str().to_ascii_lowercase();
            return info;
        }
        let watch_param = || {
            uri.query().is_some_and(|q| {
                q.split('&')
                    .any(|p| matches!(p, "watch=true" | "watch=1" | "watch=True"))
            })
        };
        info.verb = match *method {
            http::Method::GET if info.legacy_watch || watch_param() => "watch",
            http::Method::GET if info.name.is_some() => "get",
            http::Method::GET => "list",
            http::Method::POST => "create",
            http::Method::PUT => "update",
            http::Method::PATCH => "patch",
            http::Method::DELETE if info.name.is_some() => "delete",
            http::Method::DELETE => "deletecollection",
            _ => "",
        }
        .to_string();
        if info.verb.is_empty() {
            info.verb = method.as_str().to_ascii_lowercase();
        }
        info
    }
}

/// What a path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `/version`.
    Version,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`.
    ResourceList {
        /// The group, empty for core.
        group: String,
        /// The version.
        version: String,
    },
    /// A resource request.
    Resource(RequestInfo),
    /// `/healthz`, `/livez`, `/readyz`, or one check of them (`/readyz/etcd`).
    Health {
        /// `healthz`, `livez` or `readyz`.
        endpoint: String,
        /// One check by name, or all of them.
        check: Option<String>,
    },
    /// `/metrics`.
    Metrics,
    /// `/openapi/v2`, `/openapi/v3` and its documents.
    OpenApi(crate::openapi::OpenApiPath),
    /// Anything else.
    Unknown,
}

/// Parses a request path.
pub fn parse_path(path: &str) -> Target {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.as_slice() {
        ["version"] => Target::Version,
        [endpoint @ ("healthz" | "livez" | "readyz"), rest @ ..] => Target::Health {
            endpoint: endpoint.to_string(),
            check: (!rest.is_empty()).then(|| rest.join("/")),
        },
        ["metrics"] => Target::Metrics,
        ["api"] => Target::CoreVersions,
        ["openapi", "v2"] => Target::OpenApi(crate::openapi::OpenApiPath::V2),
        ["openapi", "v3"] => Target::OpenApi(crate::openapi::OpenApiPath::V3Index),
        ["openapi", "v3", rest @ ..] => {
            Target::OpenApi(crate::openapi::OpenApiPath::V3(rest.join("/")))
        }
        ["apis"] => Target::Groups,
        ["apis", g] => Target::Group(g.to_string()),
        ["api", v] => Target::ResourceList {
            group: String::new(),
            version: v.to_string(),
        },
        ["apis", g, v] => Target::ResourceList {
            group: g.to_string(),
            version: v.to_string(),
        },
        ["api", v, rest @ ..] => resource_target("", v, rest, path.ends_with('/')),
        ["apis", g, v, rest @ ..] => resource_target(g, v, rest, path.ends_with('/')),
        _ => Target::Unknown,
    }
}

fn resource_target(group: &str, version: &str, mut rest: &[&str], trailing_slash: bool) -> Target {
    let mut info = RequestInfo {
        resource_request: true,
        group: group.into(),
        version: version.into(),
        ..Default::default()
    };
    if rest.first() == Some(&"watch") {
        info.legacy_watch = true;
        rest = &rest[1..];
    }
    // `namespaces/<ns>/<resource>...` addresses a namespaced resource, except the namespace's own
    // subresources (`namespaces/<ns>/status`, `namespaces/<ns>/finalize`).
    if rest.len() >= 3 && rest[0] == "namespaces" {
        let own_sub =
            rest.len() == 3 && group.is_empty() && matches!(rest[2], "status" | "finalize");
        if !own_sub {
            info.namespace = Some(rest[1].to_string());
            rest = &rest[2..];
        }
    }
    match rest {
        [resource] => info.resource = resource.to_string(),
        [resource, name] => {
            info.resource = resource.to_string();
            info.name = Some(name.to_string());
        }
        [resource, name, sub] => {
            info.resource = resource.to_string();
            info.name = Some(name.to_string());
            info.subresource = Some(sub.to_string());
            if *sub == "proxy" {
                info.proxy_path = Some("/".to_string());
            }
        }
        // Everything after `proxy` is the path on the proxied server.
        [resource, name, "proxy", path @ ..] => {
            info.resource = resource.to_string();
            info.name = Some(name.to_string());
            info.subresource = Some("proxy".to_string());
            let mut p = format!("/{}", path.join("/"));
            if trailing_slash {
                p.push('/');
            }
            info.proxy_path = Some(p);
        }
        _ => return Target::Unknown,
    }
    Target::Resource(info)
}

/// Decodes a query string into a map (last value wins).
pub fn query_map(query: Option<&str>) -> HashMap<String, String> {
    query_pairs(query).into_iter().collect()
}

/// Every query parameter, decoded, in order, repeats kept (`command=sh&command=-c`).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = query else { return Vec::new() };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How a list or watch wants its resourceVersion honoured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RvMatch {
    /// Not set.
    Unset,
    /// `NotOlderThan`.
    NotOlderThan,
    /// `Exact`.
    Exact,
}

/// Query parameters of list and watch.
#[derive(Clone, Debug)]
pub struct ListQuery {
    /// `labelSelector`.
    pub label_selector: String,
    /// `fieldSelector`.
    pub field_selector: String,
    /// `resourceVersion` as sent.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub rv_match: RvMatch,
    /// `limit`.
    pub limit: Option<usize>,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `watch`.
    pub watch: bool,
    /// `allowWatchBookmarks`.
    pub allow_bookmarks: bool,
    /// `timeoutSeconds`.
    pub timeout_seconds: Option<u64>,
    /// `sendInitialEvents`.
    pub send_initial_events: Option<bool>,
}

fn parse_bool(q: &HashMap<String, String>, key: &str) -> Result<Option<bool>, ApiError> {
    match q.get(key).map(String::as_str) {
        None => Ok(None),
        Some("true" | "1" | "True") => Ok(Some(true)),
        Some("false" | "0" | "False" | "") => Ok(Some(false)),
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid value for {key}: {other:?}, expected true or false"
        ))),
    }
}

fn parse_num<T: std::str::FromStr>(
    q: &HashMap<String, String>,
    key: &str,
) -> Result<Option<T>, ApiError> {
    match q.get(key) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v.parse::<T>().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "invalid value for {key}: {v:?}, expected a non-negative integer"
            ))
        }),
    }
}

impl ListQuery {
    /// Parses list/watch parameters.
    pub fn parse(q: &HashMap<String, String>) -> Result<Self, ApiError> {
        let rv_match = match q.get("resourceVersionMatch").map(String::as_str) {
            None | Some("") => RvMatch::Unset,
            Some("NotOlderThan") => RvMatch::NotOlderThan,
            Some("Exact") => RvMatch::Exact,
            Some(other) => {
                return Err(ApiError::invalid_field(
                    "meta.k8s.io",
                    "ListOptions",
                    "",
                    "resourceVersionMatch",
                    format!(
                        "Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
                    ),
                ));
            }
        };
        Ok(ListQuery {
            label_selector: q.get("labelSelector").cloned().unwrap_or_default(),
            field_selector: q.get("fieldSelector").cloned().unwrap_or_default(),
            resource_version: q.get("resourceVersion").filter(|s| !s.is_empty()).cloned(),
            rv_match,
            limit: parse_num::<usize>(q, "limit")?.filter(|l| *l > 0),
            continue_token: q.get("continue").filter(|s| !s.is_empty()).cloned(),
            watch: parse_bool(q, "watch")?.unwrap_or(false),
            allow_bookmarks: parse_bool(q, "allowWatchBookmarks")?.unwrap_or(false),
            timeout_seconds: parse_num::<u64>(q, "timeoutSeconds")?,
            send_initial_events: parse_bool(q, "sendInitialEvents")?,
        })
    }

    /// The numeric resourceVersion, if one was sent; "0" is `Some(0)`.
    pub fn rv(&self) -> Result<Option<i64>, ApiError> {
        parse_rv(self.resource_version.as_deref())
    }
}

/// Parses a resourceVersion string.
pub fn parse_rv(rv: Option<&str>) -> Result<Option<i64>, ApiError> {
    match rv {
        None | Some("") => Ok(None),
        Some(s) => s.parse::<i64>().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "invalid resource version {s:?}: resourceVersion must be a decimal integer"
            ))
        }),
    }
}

/// `DeleteOptions` from the body and query.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    /// `propagationPolicy`.
    pub propagation_policy: Option<String>,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub precondition_rv: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

impl DeleteOptions {
    /// Parses delete options from the query and an optional JSON body.
    pub fn parse(q: &HashMap<String, String>, body: &[u8]) -> Result<Self, ApiError> {
        let mut opts = DeleteOptions {
            grace_period_seconds: parse_num::<i64>(q, "gracePeriodSeconds")?,
            propagation_policy: q.get("propagationPolicy").cloned(),
            dry_run: q.get("dryRun").is_some_and(|v| v == "All"),
            ..Default::default()
        };
        if parse_bool(q, "orphanDependents")? == Some(true) {
            opts.propagation_policy = Some("Orphan".into());
        }
        if !body.iter().all(|b| b.is_ascii_whitespace()) {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions body: {e}")))?;
            if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
                opts.grace_period_seconds = Some(g);
            }
            if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
                opts.propagation_policy = Some(p.to_string());
            }
            if v.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
                opts.propagation_policy = Some("Orphan".into());
            }
            if let Some(p) = v.get("preconditions") {
                opts.precondition_uid = p.get("uid").and_then(Value::as_str).map(String::from);
                opts.precondition_rv = p
                    .get("resourceVersion")
                    .and_then(Value::as_str)
                    .map(String::from);
            }
            if let Some(d) = v.get("dryRun").and_then(Value::as_array) {
                opts.dry_run |= d.iter().any(|x| x == "All");
            }
        }
        if let Some(p) = &opts.propagation_policy
            && !matches!(p.as_str(), "Background" | "Foreground" | "Orphan")
        {
            return Err(ApiError::invalid_field(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                "propagationPolicy",
                format!(
                    "Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                ),
            ));
        }
        if let Some(g) = opts.grace_period_seconds
            && g < 0
        {
            opts.grace_period_seconds = Some(0);
        }
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_paths_parse_into_resource_requests() {
        let t = parse_path("/apis/apps/v1/namespaces/ns1/deployments/web/scale");
        let Target::Resource(info) = t else {
            panic!("not a resource: {t:?}")
        };
        assert_eq!(info.group, "apps");
        assert_eq!(info.namespace.as_deref(), Some("ns1"));
        assert_eq!(info.resource, "deployments");
        assert_eq!(info.name.as_deref(), Some("web"));
        assert_eq!(info.subresource.as_deref(), Some("scale"));
    }

    #[test]
    fn the_path_after_proxy_is_kept_with_its_trailing_slash() {
        let proxied = |path: &str| match parse_path(path) {
            Target::Resource(info) => (info.name, info.subresource, info.proxy_path),
            other => panic!("not a resource: {other:?}"),
        };
        assert_eq!(
            proxied("/api/v1/namespaces/default/pods/web:8080/proxy/a/b/"),
            (
                Some("web:8080".into()),
                Some("proxy".into()),
                Some("/a/b/".into())
            )
        );
        assert_eq!(
            proxied("/api/v1/nodes/node-1/proxy/stats/summary")
                .2
                .as_deref(),
            Some("/stats/summary")
        );
        assert_eq!(
            proxied("/api/v1/namespaces/default/services/web/proxy")
                .2
                .as_deref(),
            Some("/")
        );
        assert_eq!(proxied("/api/v1/namespaces/default/pods/web/log").2, None);
        assert_eq!(
            parse_path("/api/v1/namespaces/default/pods/web/log/extra"),
            Target::Unknown
        );
    }

    #[test]
    fn namespace_status_is_a_subresource_of_the_namespace() {
        let Target::Resource(info) = parse_path("/api/v1/namespaces/ns1/status") else {
            panic!()
        };
        assert_eq!(info.resource, "namespaces");
        assert_eq!(info.name.as_deref(), Some("ns1"));
        assert_eq!(info.subresource.as_deref(), Some("status"));
        assert_eq!(info.namespace, None);
    }

    #[test]
    fn verbs_are_named_as_upstream() {
        let verb = |m: http::Method, uri: &str| {
            RequestInfo::parse(&m, &uri.parse::<http::Uri>().expect("test uri")).verb
        };
        assert_eq!(verb(http::Method::GET, "/api/v1/pods"), "list");
        assert_eq!(verb(http::Method::GET, "/api/v1/pods?watch=true"), "watch");
        assert_eq!(verb(http::Method::GET, "/api/v1/watch/pods"), "watch");
        assert_eq!(
            verb(http::Method::GET, "/api/v1/namespaces/a/pods/p"),
            "get"
        );
        assert_eq!(
            verb(http::Method::POST, "/api/v1/namespaces/a/pods"),
            "create"
        );
        assert_eq!(
            verb(http::Method::PUT, "/api/v1/namespaces/a/pods/p"),
            "update"
        );
        assert_eq!(
            verb(http::Method::PATCH, "/api/v1/namespaces/a/pods/p"),
            "patch"
        );
        assert_eq!(
            verb(http::Method::DELETE, "/api/v1/namespaces/a/pods/p"),
            "delete"
        );
        assert_eq!(
            verb(http::Method::DELETE, "/api/v1/namespaces/a/pods"),
            "deletecollection"
        );
        assert_eq!(verb(http::Method::HEAD, "/api/v1/pods"), "head");
        let info = RequestInfo::parse(&http::Method::GET, &"/version".parse().expect("uri"));
        assert!(!info.resource_request);
        assert_eq!(info.verb, "get");
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let q = query_map(Some("labelSelector=app%3Dweb%2Ctier+in+%28a%29&limit=5"));
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert_eq!(q["limit"], "5");
    }
}
