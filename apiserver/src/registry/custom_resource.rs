//! The strategy of one custom resource, built from its CustomResourceDefinition: validation
//! against the served version's `openAPIV3Schema`, pruning of unknown fields, defaults, and
//! the `None` conversion between its versions (objects are stored at the storage version and
//! served at the requested one, pruned and defaulted by that version's schema on every read,
//! as upstream).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kybernetes_core::ResourceInfo;
use kybernetes_core::status::StatusCause;
use serde_json::{Value, json};

use super::Strategy;
use super::table::TableConvertor;
use super::table::custom::CustomColumns;
use crate::crd::{prune, schema};

/// One version of a custom resource.
#[derive(Clone, Debug)]
struct Version {
    schema: Option<Value>,
    deprecation_warning: Option<String>,
    /// The version's `additionalPrinterColumns`, for `kubectl get`.
    table: Arc<CustomColumns>,
}

/// The strategy of a custom resource (every version of it).
#[derive(Clone, Debug)]
pub struct CustomResourceStrategy {
    group: String,
    storage_version: String,
    versions: HashMap<String, Version>,
}

impl CustomResourceStrategy {
    /// The strategy a CRD object defines.
    pub fn from_crd(crd: &Value) -> Self {
        let group = crd
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let kind = crd
            .pointer("/spec/names/kind")
            .and_then(Value::as_str)
            .unwrap_or("");
        let mut storage_version = String::new();
        let mut versions = HashMap::new();
        for v in crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = v.get("name").and_then(Value::as_str).unwrap_or("");
            if v.get("storage").and_then(Value::as_bool) == Some(true) {
                storage_version = name.to_string();
            }
            let deprecated = v.get("deprecated").and_then(Value::as_bool) == Some(true);
            let deprecation_warning = deprecated.then(|| {
                v.get("deprecationWarning")
                    .and_then(Value::as_str)
                    .map(String::from)
                    .unwrap_or_else(|| format!("{group}/{name} {kind} is deprecated"))
            });
            versions.insert(
                name.to_string(),
                Version {
                    schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                    deprecation_warning,
                    table: Arc::new(CustomColumns::new(v.get("additionalPrinterColumns"))),
                },
            );
        }
        CustomResourceStrategy {
            group,
            storage_version,
            versions,
        }
    }

    fn api_version(&self, version: &str) -> String {
        format!("{}/{version}", self.group)
    }

    /// The schema of the version an object is written in.
    fn schema_of(&self, obj: &Value) -> Option<&Value> {
        let api_version = obj.get("apiVersion").and_then(Value::as_str)?;
        let version = api_version.strip_prefix(&format!("{}/", self.group))?;
        self.schema_of_version(version)
    }

    fn schema_of_version(&self, version: &str) -> Option<&Value> {
        self.versions.get(version)?.schema.as_ref()
    }
}

impl Strategy for CustomResourceStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(s) = self.schema_of(obj) {
            let s = s.clone();
            prune::default(&s, obj);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<StatusCause> {
        match self.schema_of(obj) {
            Some(s) => schema::validate(s, obj),
            None => Vec::new(),
        }
    }

    fn prune_unknown_fields(&self, _r: &ResourceInfo, obj: &mut Value) -> Vec<String> {
        match self.schema_of(obj) {
            Some(s) => {
                let s = s.clone();
                prune::prune(&s, obj)
            }
            None => Vec::new(),
        }
    }

    fn storage_form(&self, obj: &Value) -> Option<Value> {
        let mut stored = obj.clone();
        stored["apiVersion"] = json!(self.api_version(&self.storage_version));
        Some(stored)
    }

    fn served_form(&self, r: &ResourceInfo, stored: &Value) -> Option<Value> {
        let mut served = stored.clone();
        served["apiVersion"] = json!(r.api_version());
        if let Some(s) = self.schema_of_version(&r.version) {
            prune::prune(s, &mut served);
            prune::default(s, &mut served);
        }
        Some(served)
    }

    fn version_warning(&self, version: &str) -> Option<String> {
        self.versions.get(version)?.deprecation_warning.clone()
    }

    fn table_convertor(&self, r: &ResourceInfo) -> Arc<dyn TableConvertor> {
        match self.versions.get(&r.version) {
            Some(v) => v.table.clone(),
            None => Arc::new(CustomColumns::new(None)),
        }
    }
}

/// Custom resource strategies by (group, plural).
type StrategiesByResource = HashMap<(String, String), Arc<CustomResourceStrategy>>;

/// The strategies of the custom resources, by (group, plural): written when a CRD is, read
/// by every request to a custom resource. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct CustomResourceStrategies {
    inner: Arc<RwLock<StrategiesByResource>>,
}

impl CustomResourceStrategies {
    /// Sets (or replaces) the strategy of a custom resource.
    pub fn set(&self, group: &str, plural: &str, strategy: CustomResourceStrategy) {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        map.insert((group.into(), plural.into()), Arc::new(strategy));
    }

    /// Removes the strategy of a custom resource.
    pub fn remove(&self, group: &str, plural: &str) {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        map.remove(&(group.to_string(), plural.to_string()));
    }

    /// The `openAPIV3Schema` of one version of a custom resource (for the OpenAPI documents).
    pub fn schema(&self, group: &str, plural: &str, version: &str) -> Option<Value> {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        map.get(&(group.to_string(), plural.to_string()))?
            .schema_of_version(version)
            .cloned()
    }

    /// The strategy of a custom resource, if a CRD defines it.
    pub fn get(&self, group: &str, plural: &str) -> Option<Arc<dyn Strategy>> {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        map.get(&(group.to_string(), plural.to_string()))
            .map(|s| s.clone() as Arc<dyn Strategy>)
    }
}
