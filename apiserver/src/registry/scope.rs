//! [`RequestScope`]: everything the generic verbs need to know about one request, carried as
//! one value (upstream's `RequestScope` plus the per-request options).

use std::collections::HashMap;
use std::sync::Arc;

use kybernetes_core::{ApiError, ResourceInfo};

use super::Strategy;
use crate::authentication::UserInfo;
use crate::request::RequestInfo;
use crate::warning::Warnings;

/// One request to a resource, as the registry sees it.
#[derive(Clone)]
pub struct RequestScope {
    /// The resource addressed.
    pub resource: Arc<ResourceInfo>,
    /// The kind's strategy.
    pub strategy: Arc<dyn Strategy>,
    /// The verb, in upstream's terms.
    pub verb: String,
    /// The namespace from the path.
    pub namespace: Option<String>,
    /// The object name from the path.
    pub name: Option<String>,
    /// The subresource from the path.
    pub subresource: Option<String>,
    /// Who is asking.
    pub user: UserInfo,
    /// `dryRun=All`: run every step but store nothing.
    pub dry_run: bool,
    /// `fieldManager`, for managedFields.
    pub field_manager: Option<String>,
    /// `fieldValidation` (Strict, Warn or Ignore), for the decode step.
    pub field_validation: Option<String>,
    /// `force` (server-side apply).
    pub force: bool,
    /// The request's `Content-Type` (application/json if absent).
    pub content_type: String,
    /// The request's `Accept`.
    pub accept: String,
    /// The request's `User-Agent`: its program name is the field manager of an update that
    /// names none (see [`crate::apply::FieldManager`]).
    pub user_agent: String,
    /// Every query parameter, decoded.
    pub query: HashMap<String, String>,
    /// Warnings for the client, sent as `Warning` headers with the response.
    pub warnings: Warnings,
}

impl std::fmt::Debug for RequestScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestScope")
            .field("resource", &self.resource.plural)
            .field("verb", &self.verb)
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("subresource", &self.subresource)
            .field("user", &self.user.name)
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

/// A write's `fieldValidation` must be `Ignore`, `Warn` or `Strict` (or absent), as upstream's
/// options validation says (422 on `CreateOptions`, `UpdateOptions` or `PatchOptions`).
fn check_field_validation(verb: &str, value: Option<&str>) -> Result<(), ApiError> {
    let options = match verb {
        "create" => "CreateOptions",
        "update" => "UpdateOptions",
        "patch" => "PatchOptions",
        _ => return Ok(()),
    };
    match value {
        None | Some("Ignore" | "Warn" | "Strict") => Ok(()),
        Some(other) => Err(ApiError::invalid_field(
            "meta.k8s.io",
            options,
            "",
            "fieldValidation",
            format!(
                "Unsupported value: {other:?}: supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""
            ),
        )),
    }
}

impl RequestScope {
    /// The scope of an HTTP request to `resource`.
    pub fn from_request(
        info: &RequestInfo,
        user: UserInfo,
        headers: &http::HeaderMap,
        query: HashMap<String, String>,
        resource: Arc<ResourceInfo>,
        strategy: Arc<dyn Strategy>,
    ) -> Result<Self, ApiError> {
        let header = |name: http::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let dry_run = match query.get("dryRun").map(String::as_str) {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "Invalid value: {other:?}: supported values: \"All\""
                )));
            }
        };
        let field_validation = query
            .get("fieldValidation")
            .filter(|s| !s.is_empty())
            .cloned();
        check_field_validation(&info.verb, field_validation.as_deref())?;
        Ok(RequestScope {
            resource,
            strategy,
            verb: info.verb.clone(),
            namespace: info.namespace.clone(),
            name: info.name.clone(),
            subresource: info.subresource.clone(),
            user,
            dry_run,
            field_manager: query.get("fieldManager").filter(|s| !s.is_empty()).cloned(),
            field_validation,
            force: query.get("force").is_some_and(|v| v == "true"),
            content_type: header(http::header::CONTENT_TYPE)
                .unwrap_or_else(|| "application/json".into()),
            accept: header(http::header::ACCEPT).unwrap_or_default(),
            user_agent: header(http::header::USER_AGENT).unwrap_or_default(),
            query,
            warnings: Warnings::default(),
        })
    }

    /// The scope of a write the API server makes itself (bootstrap), as the loopback user.
    pub fn internal(
        resource: Arc<ResourceInfo>,
        strategy: Arc<dyn Strategy>,
        verb: &str,
        namespace: Option<&str>,
    ) -> Self {
        RequestScope {
            resource,
            strategy,
            verb: verb.into(),
            namespace: namespace.map(String::from),
            name: None,
            subresource: None,
            user: UserInfo::loopback(),
            dry_run: false,
            // Upstream's own writes are recorded under this manager.
            field_manager: Some("kube-apiserver".into()),
            field_validation: None,
            force: false,
            content_type: "application/json".into(),
            accept: String::new(),
            user_agent: String::new(),
            query: HashMap::new(),
            warnings: Warnings::default(),
        }
    }

    /// The same request applied to one object (deletecollection deletes each match).
    pub fn for_object(&self, namespace: Option<&str>, name: &str) -> Self {
        let mut s = self.clone();
        s.namespace = namespace.map(String::from);
        s.name = Some(name.to_string());
        s
    }

    /// The namespace, if any.
    pub fn ns(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The object name, empty for collection requests.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    /// True if the client asked for `PartialObjectMetadata`.
    pub fn metadata_only(&self) -> bool {
        matches!(
            crate::negotiation::negotiate(&self.accept),
            Ok(crate::negotiation::Output::PartialObjectMetadata(_))
        )
    }
}
