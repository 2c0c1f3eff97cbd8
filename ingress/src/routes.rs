//! The routing table: which backend serves a request's host and path, by upstream's Ingress
//! matching rules.
//!
//! - **Hosts.** A rule's `host` matches the request's host exactly (case-insensitively, port
//!   removed), or as a wildcard: `*.example.com` matches `foo.example.com` but neither
//!   `example.com` nor `bar.foo.example.com` (exactly one more label). A rule without a host
//!   matches every host. The most specific kind that has a matching path wins: exact hosts,
//!   then wildcards, then rules without a host.
//! - **Paths.** `Exact` matches the path as written, case-sensitively. `Prefix` matches
//!   element by element, split on `/`: `/foo/bar` matches `/foo/bar` and `/foo/bar/baz` but not
//!   `/foo/barbaz`, and a trailing `/` changes nothing. `ImplementationSpecific` is `Prefix`.
//!   The longest matching path wins, `Exact` before `Prefix` at equal length, then the older
//!   Ingress (as ingress-nginx orders conflicting Ingresses).
//! - **Default.** A request nothing matches goes to the oldest served Ingress's
//!   `spec.defaultBackend`, or gets 404.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Where a matched request goes.
#[derive(Debug)]
pub enum Target {
    /// A Service with ready endpoints, picked round-robin.
    Ready(Endpoints),
    /// The backend cannot serve: the Service or its port does not exist, it has no ready
    /// endpoint, or the backend is a `resource` backend this controller does not serve. The
    /// request gets 503 with this reason.
    Unavailable(String),
}

/// The ready endpoints of one backend, and the round-robin position among them.
#[derive(Debug)]
pub struct Endpoints {
    /// `namespace/service:port`, for logs.
    pub service: String,
    addresses: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl Endpoints {
    /// `addresses` (not empty) of `service`.
    pub fn new(service: String, addresses: Vec<SocketAddr>) -> Self {
        Endpoints {
            service,
            addresses,
            next: AtomicUsize::new(0),
        }
    }

    /// The endpoints to try for one request, starting at the next in round-robin order.
    pub fn attempt_order(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.addresses.len();
        (0..n).map(move |i| self.addresses[(start + i) % n])
    }
}

/// A rule's host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMatch {
    /// No host: every request.
    Any,
    /// Exactly this host (lowercase).
    Exact(String),
    /// `*.<suffix>`: the suffix with its leading dot (`.example.com`), lowercase.
    Wildcard(String),
}

impl HostMatch {
    /// The match for a rule's `host` field.
    pub fn parse(host: Option<&str>) -> Self {
        match host.map(str::to_ascii_lowercase) {
            None => HostMatch::Any,
            Some(h) if h.is_empty() => HostMatch::Any,
            Some(h) => match h.strip_prefix('*') {
                Some(suffix) => HostMatch::Wildcard(suffix.to_string()),
                None => HostMatch::Exact(h),
            },
        }
    }

    /// Whether `host` (lowercase, no port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(h) => h == host,
            HostMatch::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        }
    }

    /// Exact hosts first, then wildcards, then rules for any host.
    fn tier(&self) -> u8 {
        match self {
            HostMatch::Exact(_) => 0,
            HostMatch::Wildcard(_) => 1,
            HostMatch::Any => 2,
        }
    }
}

/// A rule's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    /// `pathType: Exact`.
    Exact(String),
    /// `pathType: Prefix` (or `ImplementationSpecific`): the path's non-empty elements.
    Prefix(Vec<String>),
}

impl PathMatch {
    /// The match for a path and its `pathType`; `None` for an unknown type.
    pub fn parse(path: Option<&str>, path_type: &str) -> Option<Self> {
        let path = path.filter(|p| !p.is_empty()).unwrap_or("/");
        match path_type {
            "Exact" => Some(PathMatch::Exact(path.to_string())),
            "Prefix" | "ImplementationSpecific" => Some(PathMatch::Prefix(
                elements(path).map(str::to_string).collect(),
            )),
            _ => None,
        }
    }

    /// Whether the request path `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => p == path,
            PathMatch::Prefix(prefix) => {
                let mut request = elements(path);
                prefix
                    .iter()
                    .all(|want| request.next().is_some_and(|got| got == want))
            }
        }
    }

    /// The length precedence goes by: the path's characters, without a trailing `/` on a
    /// prefix.
    fn len(&self) -> usize {
        match self {
            PathMatch::Exact(p) => p.len(),
            PathMatch::Prefix(elements) => elements.iter().map(|e| e.len() + 1).sum(),
        }
    }
}

/// The non-empty `/`-separated elements of a path.
fn elements(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|e| !e.is_empty())
}

/// One path of one rule of one Ingress.
#[derive(Debug)]
pub struct Route {
    /// The rule's host.
    pub host: HostMatch,
    /// The path.
    pub path: PathMatch,
    /// Where it goes.
    pub target: Arc<Target>,
}

/// Every served route, in precedence order, and the default backend.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    default_backend: Option<Arc<Target>>,
}

impl RouteTable {
    /// A table of `routes` given in Ingress age order (oldest first), and the default backend.
    pub fn new(mut routes: Vec<Route>, default_backend: Option<Arc<Target>>) -> Self {
        // A stable sort keeps the Ingress age order among routes of equal precedence.
        routes.sort_by_key(|r| {
            (
                r.host.tier(),
                std::cmp::Reverse(r.path.len()),
                !matches!(r.path, PathMatch::Exact(_)),
            )
        });
        RouteTable {
            routes,
            default_backend,
        }
    }

    /// The target of a request for `host` (as in the Host header: any case, maybe with a
    /// port) and `path`; `None` means 404.
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Target>> {
        let host = strip_port(host).to_ascii_lowercase();
        self.routes
            .iter()
            .find(|r| r.host.matches(&host) && r.path.matches(path))
            .map(|r| &r.target)
            .or(self.default_backend.as_ref())
    }
}

/// A Host header without its port (`[::1]:8080` → `[::1]`, `a.com:80` → `a.com`).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable(name: &str) -> Arc<Target> {
        Arc::new(Target::Unavailable(name.to_string()))
    }

    fn name(t: Option<&Arc<Target>>) -> Option<&str> {
        match t.map(Arc::as_ref) {
            Some(Target::Unavailable(n)) => Some(n),
            _ => None,
        }
    }

    fn route(host: Option<&str>, path: &str, path_type: &str, to: &str) -> Route {
        Route {
            host: HostMatch::parse(host),
            path: PathMatch::parse(Some(path), path_type).expect("known path type"),
            target: unavailable(to),
        }
    }

    #[test]
    fn prefix_matches_element_by_element() {
        // Upstream's table in the Ingress documentation.
        let cases = [
            ("/", "/anything", true),
            ("/foo", "/foo", true),
            ("/foo", "/foo/", true),
            ("/foo/", "/foo", true),
            ("/aaa/bb", "/aaa/bbb", false),
            ("/aaa/bbb", "/aaa/bbb", true),
            ("/aaa/bbb/", "/aaa/bbb", true),
            ("/aaa/bbb", "/aaa/bbb/", true),
            ("/aaa/bbb", "/aaa/bbb/ccc", true),
            ("/aaa/bbb", "/aaa/bbbxyz", false),
        ];
        for (prefix, request, want) in cases {
            let m = PathMatch::parse(Some(prefix), "Prefix").expect("prefix");
            assert_eq!(m.matches(request), want, "{prefix} against {request}");
        }
        let exact = PathMatch::parse(Some("/foo"), "Exact").expect("exact");
        assert!(exact.matches("/foo"));
        assert!(!exact.matches("/foo/"));
        assert!(!exact.matches("/FOO"));
        assert_eq!(PathMatch::parse(Some("/"), "Regex"), None);
    }

    #[test]
    fn wildcard_hosts_match_exactly_one_label() {
        let wild = HostMatch::parse(Some("*.Example.com"));
        assert!(wild.matches("foo.example.com"));
        assert!(!wild.matches("example.com"));
        assert!(!wild.matches("bar.foo.example.com"));
        assert!(!wild.matches(".example.com"));
        assert!(HostMatch::parse(Some("")).matches("anything"));
    }

    #[test]
    fn longest_path_then_exact_then_host_specificity_win() {
        let table = RouteTable::new(
            vec![
                route(None, "/", "Prefix", "any-host"),
                route(Some("*.example.com"), "/", "Prefix", "wildcard"),
                route(Some("a.example.com"), "/", "Prefix", "a-root"),
                route(Some("a.example.com"), "/api", "Prefix", "a-api-prefix"),
                route(Some("a.example.com"), "/api", "Exact", "a-api-exact"),
                route(
                    Some("a.example.com"),
                    "/api/v1",
                    "ImplementationSpecific",
                    "a-v1",
                ),
            ],
            Some(unavailable("default")),
        );
        assert_eq!(
            name(table.route("A.example.com:8080", "/api")),
            Some("a-api-exact")
        );
        assert_eq!(
            name(table.route("a.example.com", "/api/")),
            Some("a-api-prefix")
        );
        assert_eq!(
            name(table.route("a.example.com", "/api/v1/x")),
            Some("a-v1")
        );
        assert_eq!(name(table.route("a.example.com", "/other")), Some("a-root"));
        assert_eq!(name(table.route("b.example.com", "/x")), Some("wildcard"));
        assert_eq!(name(table.route("other.org", "/x")), Some("any-host"));
        let only_hosts = RouteTable::new(vec![route(Some("a.com"), "/app", "Exact", "app")], None);
        assert!(only_hosts.route("a.com", "/").is_none());
        assert!(only_hosts.route("b.com", "/app").is_none());
    }

    #[test]
    fn equal_routes_keep_the_older_ingress() {
        let table = RouteTable::new(
            vec![
                route(Some("a.com"), "/", "Prefix", "older"),
                route(Some("a.com"), "/", "Prefix", "newer"),
            ],
            None,
        );
        assert_eq!(name(table.route("a.com", "/")), Some("older"));
    }

    #[test]
    fn host_headers_lose_their_port() {
        assert_eq!(strip_port("a.com:80"), "a.com");
        assert_eq!(strip_port("a.com"), "a.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
    }

    #[test]
    fn endpoints_rotate() {
        let a: SocketAddr = "127.0.0.2:80".parse().expect("addr");
        let b: SocketAddr = "127.0.0.3:80".parse().expect("addr");
        let eps = Endpoints::new("ns/svc:80".into(), vec![a, b]);
        assert_eq!(eps.attempt_order().collect::<Vec<_>>(), [a, b]);
        assert_eq!(eps.attempt_order().collect::<Vec<_>>(), [b, a]);
    }
}
