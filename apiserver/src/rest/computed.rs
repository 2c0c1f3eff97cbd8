//! Resources computed on each read instead of stored ([`ResourceInfo::computed`]): the
//! `metrics.k8s.io` API, which upstream's metrics-server serves behind the aggregator. Each is
//! a [`ComputedResource`] in the [`ComputedResources`] table; only `get` and `list` are
//! served, with the same label and field selectors and response forms as stored resources.
//!
//! [`ResourceInfo::computed`]: kybernetes_core::ResourceInfo::computed

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;
use kybernetes_core::ApiError;
use serde_json::{Value, json};

use super::output::Form;
use super::read::Filter;
use crate::Inner;
use crate::registry::RequestScope;
use crate::request::ListQuery;
use crate::response::ApiResponse;

/// A resource whose objects are computed when read (upstream: a `rest.Getter` and
/// `rest.Lister` that is not a `genericregistry.Store`).
#[async_trait::async_trait]
pub(crate) trait ComputedResource: Send + Sync + 'static {
    /// The object `name` (in the scope's namespace), or 404.
    async fn get(&self, inner: &Arc<Inner>, scope: &RequestScope) -> Result<Value, ApiError>;

    /// The objects of the scope's namespace (every namespace if none) that pass `filter`.
    async fn list(
        &self,
        inner: &Arc<Inner>,
        scope: &RequestScope,
        filter: &Filter,
    ) -> Result<Vec<Value>, ApiError>;
}

/// The computed resources, by (group, resource).
#[derive(Clone, Default)]
pub(crate) struct ComputedResources {
    by_resource: HashMap<(String, String), Arc<dyn ComputedResource>>,
}

impl ComputedResources {
    /// The built-in ones: `metrics.k8s.io` pods and nodes.
    pub fn builtin() -> Self {
        let mut t = ComputedResources::default();
        t.register(
            "metrics.k8s.io",
            "pods",
            crate::resource_metrics::PodMetricsResource,
        );
        t.register(
            "metrics.k8s.io",
            "nodes",
            crate::resource_metrics::NodeMetricsResource,
        );
        t
    }

    fn register(&mut self, group: &str, resource: &str, r: impl ComputedResource) {
        self.by_resource
            .insert((group.into(), resource.into()), Arc::new(r));
    }

    fn lookup(&self, group: &str, resource: &str) -> Option<&Arc<dyn ComputedResource>> {
        self.by_resource
            .get(&(group.to_string(), resource.to_string()))
    }
}

/// Serves a request to a computed resource: `get` and `list`; any other verb is 405, as a
/// read-only upstream resource answers.
pub(crate) async fn serve(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    method: &Method,
) -> Result<ApiResponse, ApiError> {
    let r = &*scope.resource;
    let not_allowed = || {
        ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {}.{})",
            r.plural, r.group
        ))
    };
    let resource = inner
        .computed
        .lookup(&r.group, &r.plural)
        .ok_or_else(super::not_found_path)?;
    if scope.subresource.is_some() {
        return Err(super::not_found_path());
    }
    match scope.verb.as_str() {
        "get" => {
            let form = Form::of(scope)?;
            let obj = resource.get(inner, scope).await?;
            Ok(form.respond_object(obj, inner.clock.now()))
        }
        "list" => {
            let q = ListQuery::parse(&scope.query)?;
            let form = Form::of(scope)?;
            let filter = Filter::new(scope, &q)?;
            let items = resource.list(inner, scope, &filter).await?;
            let list = json!({
                "kind": r.list_kind(),
                "apiVersion": r.api_version(),
                "metadata": {},
                "items": items,
            });
            Ok(form.respond_list(list, inner.clock.now()))
        }
        _ => Err(not_allowed()),
    }
}
