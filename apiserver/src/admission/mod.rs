//! Admission: plugins that may change (mutating phase) and then accept or refuse (validating
//! phase) a write after the kind's strategy has defaulted it and before it is stored, as
//! upstream's admission chain.
//!
//! The built-in chain is [`NamespaceLifecycle`], [`DefaultStorageClass`],
//! [`StorageObjectInUseProtection`] and [`Priority`] (all enabled by default upstream); plugins set on
//! [`crate::ApiServerConfig::admission`] run after it.
//!
//! # How to implement your own
//!
//! ```
//! use kybernetes_apiserver::admission::{Admission, AdmissionAttributes, Operation};
//! use kybernetes_core::ApiError;
//! use serde_json::Value;
//!
//! /// Refuses pods without an `app` label.
//! struct RequireAppLabel;
//!
//! #[async_trait::async_trait]
//! impl Admission for RequireAppLabel {
//!     fn name(&self) -> &str {
//!         "RequireAppLabel"
//!     }
//!
//!     async fn validate(&self, a: &AdmissionAttributes<'_>, obj: &Value) -> Result<(), ApiError> {
//!         if a.operation != Operation::Create || a.resource.plural != "pods" {
//!             return Ok(());
//!         }
//!         match obj.pointer("/metadata/labels/app") {
//!             Some(_) => Ok(()),
//!             None => Err(ApiError::forbidden("pods must carry an app label")),
//!         }
//!     }
//! }
//! ```

use std::sync::Arc;

use kybernetes_core::{ApiError, ResourceInfo};
use serde_json::Value;

use crate::authentication::UserInfo;
use crate::registry::RequestScope;

mod default_storage_class;
mod namespace_lifecycle;
mod priority;
mod storage_object_in_use_protection;

pub use default_storage_class::DefaultStorageClass;
pub use namespace_lifecycle::NamespaceLifecycle;
pub use priority::Priority;
pub use storage_object_in_use_protection::StorageObjectInUseProtection;

/// The attribute that implementations of [`Admission`] (an async trait) need, re-exported so
/// that a plugin needs no extra dependency: `#[kybernetes_apiserver::admission::async_trait]`.
pub use async_trait::async_trait;

/// The kind of write being admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A new object.
    Create,
    /// A changed object (PUT, PATCH, status and scale writes).
    Update,
    /// A delete.
    Delete,
}

/// What an admission plugin is told about a write (upstream's `admission.Attributes`).
#[derive(Clone, Copy, Debug)]
pub struct AdmissionAttributes<'a> {
    /// The operation.
    pub operation: Operation,
    /// The resource written.
    pub resource: &'a ResourceInfo,
    /// The subresource, if any.
    pub subresource: Option<&'a str>,
    /// The namespace, if any.
    pub namespace: Option<&'a str>,
    /// The object's name.
    pub name: &'a str,
    /// Who is writing.
    pub user: &'a UserInfo,
    /// True if nothing will be stored; plugins with side effects must not make them.
    pub dry_run: bool,
    /// The stored object, on update and delete.
    pub old_object: Option<&'a Value>,
}

impl<'a> AdmissionAttributes<'a> {
    /// The attributes of a write in `scope` to the object named `name`.
    pub fn new(
        scope: &'a RequestScope,
        operation: Operation,
        name: &'a str,
        old_object: Option<&'a Value>,
    ) -> Self {
        AdmissionAttributes {
            operation,
            resource: &scope.resource,
            subresource: scope.subresource.as_deref(),
            namespace: scope.ns(),
            name,
            user: &scope.user,
            dry_run: scope.dry_run,
            old_object,
        }
    }
}

/// An admission plugin. Both phases default to accepting.
#[async_trait::async_trait]
pub trait Admission: Send + Sync + 'static {
    /// The plugin's name, as upstream's `--enable-admission-plugins` spells it.
    fn name(&self) -> &str;

    /// The mutating phase: may change the object.
    async fn admit(&self, _a: &AdmissionAttributes<'_>, _obj: &mut Value) -> Result<(), ApiError> {
        Ok(())
    }

    /// The validating phase: may only refuse.
    async fn validate(&self, _a: &AdmissionAttributes<'_>, _obj: &Value) -> Result<(), ApiError> {
        Ok(())
    }
}

/// The plugins in order; every mutating phase runs before any validating one.
#[derive(Clone, Default)]
pub struct AdmissionChain {
    plugins: Vec<Arc<dyn Admission>>,
}

impl std::fmt::Debug for AdmissionChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.plugins.iter().map(|p| p.name().to_string()))
            .finish()
    }
}

impl AdmissionChain {
    /// A chain of `plugins`, run in order.
    pub fn new(plugins: Vec<Arc<dyn Admission>>) -> Self {
        AdmissionChain { plugins }
    }

    /// Runs the mutating phase of every plugin.
    pub async fn admit(
        &self,
        a: &AdmissionAttributes<'_>,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        for p in &self.plugins {
            p.admit(a, obj).await?;
        }
        Ok(())
    }

    /// Runs the validating phase of every plugin.
    pub async fn validate(&self, a: &AdmissionAttributes<'_>, obj: &Value) -> Result<(), ApiError> {
        for p in &self.plugins {
            p.validate(a, obj).await?;
        }
        Ok(())
    }
}
