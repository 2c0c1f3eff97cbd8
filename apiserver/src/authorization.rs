//! Who may do what: the [`Authorizer`] trait (upstream's `authorizer.Authorizer`) and the
//! default authorizers.
//!
//! The handler chain asks the configured authorizer about every request once authentication
//! has attached a [`UserInfo`]. Members of `system:masters` are allowed before the configured
//! authorizer is asked, as upstream's privileged-groups authorizer does; an `Allow` lets the
//! request through, a `Deny` or an unanimous `NoOpinion` answers 403 with upstream's message.
//!
//! # How to implement your own
//!
//! RBAC, a webhook or a policy engine implements [`Authorizer`] and is set on
//! [`crate::ApiServerConfig::authorizer`]. Answer [`Decision::NoOpinion`] for what you do not
//! decide, so that authorizers can be chained with [`AuthorizerUnion`]:
//!
//! ```
//! use kybernetes_apiserver::authorization::{Attributes, Authorizer, Decision};
//!
//! /// Read-only access for everyone: get, list and watch.
//! struct ReadOnly;
//!
//! impl Authorizer for ReadOnly {
//!     fn authorize(&self, a: &Attributes<'_>) -> Decision {
//!         match a.verb {
//!             "get" | "list" | "watch" => Decision::Allow,
//!             _ => Decision::Deny("this cluster is read-only".into()),
//!         }
//!     }
//! }
//! # let user = kybernetes_apiserver::authentication::UserInfo::anonymous();
//! # let a = Attributes { user: &user, verb: "create", resource_request: true, group: "", version: "v1",
//! #     resource: "pods", subresource: "", namespace: "default", name: "", path: "/api/v1/namespaces/default/pods" };
//! assert_eq!(ReadOnly.authorize(&a), Decision::Deny("this cluster is read-only".into()));
//! ```

use std::sync::Arc;

use kybernetes_core::ApiError;

use crate::authentication::{GROUP_MASTERS, GROUP_UNAUTHENTICATED, UserInfo};
use crate::request::RequestInfo;

/// What an authorizer is asked about (upstream's `authorizer.Attributes`).
#[derive(Clone, Copy, Debug)]
pub struct Attributes<'a> {
    /// The requesting user.
    pub user: &'a UserInfo,
    /// The verb in upstream's terms (get, list, watch, create, update, patch, delete,
    /// deletecollection), or the lower-case HTTP method of a non-resource request.
    pub verb: &'a str,
    /// True for a request to a resource; false for a non-resource path (`/version`, `/apis`).
    pub resource_request: bool,
    /// API group, empty for core.
    pub group: &'a str,
    /// API version.
    pub version: &'a str,
    /// Resource plural.
    pub resource: &'a str,
    /// Subresource, empty if none.
    pub subresource: &'a str,
    /// Namespace, empty for cluster-scoped requests.
    pub namespace: &'a str,
    /// Object name, empty if none.
    pub name: &'a str,
    /// The request path (what non-resource rules match on).
    pub path: &'a str,
}

impl<'a> Attributes<'a> {
    /// The attributes of a parsed request made by `user`.
    pub fn new(info: &'a RequestInfo, user: &'a UserInfo) -> Self {
        Attributes {
            user,
            verb: &info.verb,
            resource_request: info.resource_request,
            group: &info.group,
            version: &info.version,
            resource: &info.resource,
            subresource: info.subresource.as_deref().unwrap_or(""),
            namespace: info.namespace.as_deref().unwrap_or(""),
            name: info.name.as_deref().unwrap_or(""),
            path: &info.path,
        }
    }
}

/// An authorizer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The request may proceed.
    Allow,
    /// The request is refused, for the given reason (may be empty).
    Deny(String),
    /// This authorizer does not decide; the next one is asked.
    NoOpinion,
}

/// Decides whether a user may make a request.
pub trait Authorizer: Send + Sync + 'static {
    /// Decides on one request.
    fn authorize(&self, attributes: &Attributes<'_>) -> Decision;
}

/// Allows every request (upstream's `AlwaysAllow` mode).
#[derive(Clone, Copy, Debug, Default)]
pub struct AlwaysAllow;

impl Authorizer for AlwaysAllow {
    fn authorize(&self, _: &Attributes<'_>) -> Decision {
        Decision::Allow
    }
}

/// The default: allows every authenticated user and has no opinion on anonymous requests
/// (which are then forbidden).
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAuthenticated;

impl Authorizer for AllowAuthenticated {
    fn authorize(&self, a: &Attributes<'_>) -> Decision {
        if a.user.in_group(GROUP_UNAUTHENTICATED) {
            Decision::NoOpinion
        } else {
            Decision::Allow
        }
    }
}

/// Allows the members of the given groups (upstream's privileged-groups authorizer).
#[derive(Clone, Debug)]
pub struct PrivilegedGroups(pub Vec<String>);

impl Authorizer for PrivilegedGroups {
    fn authorize(&self, a: &Attributes<'_>) -> Decision {
        if self.0.iter().any(|g| a.user.in_group(g)) {
            Decision::Allow
        } else {
            Decision::NoOpinion
        }
    }
}

/// Asks each authorizer in turn; the first `Allow` or `Deny` decides (upstream's union).
#[derive(Clone, Default)]
pub struct AuthorizerUnion(pub Vec<Arc<dyn Authorizer>>);

impl std::fmt::Debug for AuthorizerUnion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthorizerUnion({} authorizers)", self.0.len())
    }
}

impl Authorizer for AuthorizerUnion {
    fn authorize(&self, a: &Attributes<'_>) -> Decision {
        for authorizer in &self.0 {
            match authorizer.authorize(a) {
                Decision::NoOpinion => continue,
                decided => return decided,
            }
        }
        Decision::NoOpinion
    }
}

/// The authorizer the handler chain runs: `system:masters` first, then the configured one.
pub(crate) fn with_privileged_groups(configured: Arc<dyn Authorizer>) -> AuthorizerUnion {
    AuthorizerUnion(vec![
        Arc::new(PrivilegedGroups(vec![GROUP_MASTERS.into()])),
        configured,
    ])
}

/// The 403 for a refused request, worded as upstream's (`pods is forbidden: User "x" cannot
/// list resource "pods" in API group "" in the namespace "default"`).
pub fn forbidden(a: &Attributes<'_>, reason: &str) -> ApiError {
    let user = a.user.name.as_str();
    let mut why = if !a.resource_request {
        format!("User {user:?} cannot {} path {:?}", a.verb, a.path)
    } else {
        let resource = if a.subresource.is_empty() {
            a.resource.to_string()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        let scope = if a.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {:?}", a.namespace)
        };
        format!(
            "User {user:?} cannot {} resource {resource:?} in API group {:?} {scope}",
            a.verb, a.group
        )
    };
    if !reason.is_empty() {
        why.push_str(": ");
        why.push_str(reason);
    }
    let message = if !a.resource_request {
        format!("forbidden: {why}")
    } else {
        let qualified = if a.group.is_empty() {
            a.resource.to_string()
        } else {
            format!("{}.{}", a.resource, a.group)
        };
        if a.name.is_empty() {
            format!("{qualified} is forbidden: {why}")
        } else {
            format!("{qualified} {:?} is forbidden: {why}", a.name)
        }
    };
    ApiError::forbidden(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs<'a>(user: &'a UserInfo, namespace: &'a str) -> Attributes<'a> {
        Attributes {
            user,
            verb: "list",
            resource_request: true,
            group: "",
            version: "v1",
            resource: "pods",
            subresource: "",
            namespace,
            name: "",
            path: "/api/v1/namespaces/default/pods",
        }
    }

    #[test]
    fn forbidden_message_reads_as_upstream() {
        let user = UserInfo {
            name: "x".into(),
            ..Default::default()
        };
        let e = forbidden(&attrs(&user, "default"), "");
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            r#"pods is forbidden: User "x" cannot list resource "pods" in API group "" in the namespace "default""#
        );
        let e = forbidden(&attrs(&user, ""), "");
        assert!(e.message.ends_with("at the cluster scope"), "{}", e.message);
    }

    #[test]
    fn masters_are_allowed_whatever_the_configured_authorizer_says() {
        struct DenyAll;
        impl Authorizer for DenyAll {
            fn authorize(&self, _: &Attributes<'_>) -> Decision {
                Decision::Deny("no".into())
            }
        }
        let chain = with_privileged_groups(Arc::new(DenyAll));
        let loopback = UserInfo::loopback();
        assert_eq!(
            chain.authorize(&attrs(&loopback, "default")),
            Decision::Allow
        );
        let user = UserInfo::default();
        assert_eq!(
            chain.authorize(&attrs(&user, "default")),
            Decision::Deny("no".into())
        );
    }

    #[test]
    fn default_authorizer_allows_authenticated_users_only() {
        let anonymous = UserInfo::anonymous();
        assert_eq!(
            AllowAuthenticated.authorize(&attrs(&anonymous, "default")),
            Decision::NoOpinion
        );
        let user = UserInfo {
            name: "alice".into(),
            groups: vec![crate::authentication::GROUP_AUTHENTICATED.into()],
            ..Default::default()
        };
        assert_eq!(
            AllowAuthenticated.authorize(&attrs(&user, "default")),
            Decision::Allow
        );
    }
}
