//! Applying multi-document YAML manifests, as `kubectl apply -f` does for the common case:
//! create what is missing, patch what exists.

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde::Deserialize;
use serde_json::Value;

use crate::{Cluster, Error, Result};

/// What [`Cluster::apply_yaml`] did with one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The object did not exist and was created.
    Created(String),
    /// The object existed and was patched.
    Configured(String),
    /// The object existed and the patch changed nothing.
    Unchanged(String),
}

/// Splits a YAML stream into its non-empty documents, as JSON values.
///
/// ```
/// let docs = kybernetes::split_yaml_documents("a: 1\n---\n---\nb: 2\n").unwrap();
/// assert_eq!(docs.len(), 2);
/// assert_eq!(docs[1]["b"], 2);
/// ```
pub fn split_yaml_documents(yaml: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for (index, doc) in serde_norway::Deserializer::from_str(yaml).enumerate() {
        let v = Value::deserialize(doc).map_err(|e| Error::Manifest {
            index,
            message: e.to_string(),
        })?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// The field manager of [`Cluster::apply_yaml`].
pub const APPLY_FIELD_MANAGER: &str = "kybernetes-apply";

impl Cluster {
    /// Applies every document of a YAML stream with server-side apply, as field manager
    /// [`APPLY_FIELD_MANAGER`]: objects that do not exist are created; for objects that exist,
    /// the manifest's fields take over (`force`) and fields removed from the manifest since the
    /// last apply are removed. Documents are applied in order, so a Namespace listed first
    /// exists before the objects in it.
    ///
    /// ```no_run
    /// # async fn demo(cluster: kybernetes::Cluster) -> kybernetes::Result<()> {
    /// cluster.apply_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n").await?;
    /// # Ok(()) }
    /// ```
    pub async fn apply_yaml(&self, yaml: &str) -> Result<Vec<ApplyOutcome>> {
        let mut outcomes = Vec::new();
        for (index, doc) in split_yaml_documents(yaml)?.into_iter().enumerate() {
            outcomes.push(self.apply_document(index, doc).await?);
        }
        Ok(outcomes)
    }

    async fn apply_document(&self, index: usize, doc: Value) -> Result<ApplyOutcome> {
        let bad = |message: String| Error::Manifest { index, message };
        let api_version = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("apiVersion is missing".into()))?;
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("kind is missing".into()))?;
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("metadata.name is missing".into()))?
            .to_string();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let info = self
            .api_server()
            .registry()
            .lookup_kind(group, kind)
            .ok_or_else(|| {
                bad(format!(
                    "no resource of kind {kind} in {api_version} is served"
                ))
            })?;
        let ar = ApiResource {
            group: group.to_string(),
            version: version.to_string(),
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            plural: info.plural.clone(),
        };
        let api: Api<DynamicObject> = if info.namespaced {
            let ns = doc
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default");
            Api::namespaced_with(self.client(), ns, &ar)
        } else {
            Api::all_with(self.client(), &ar)
        };
        let label = format!("{}/{name}", info.plural);
        let existing = api.get_opt(&name).await?;
        let applied = api
            .patch(
                &name,
                &PatchParams::apply(APPLY_FIELD_MANAGER).force(),
                &Patch::Apply(&doc),
            )
            .await?;
        Ok(match existing {
            None => ApplyOutcome::Created(label),
            Some(e) if e.metadata.resource_version == applied.metadata.resource_version => {
                ApplyOutcome::Unchanged(label)
            }
            Some(_) => ApplyOutcome::Configured(label),
        })
    }
}
