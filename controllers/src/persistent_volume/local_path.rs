//! The built-in local-path provisioner (as k3s's `rancher/local-path-provisioner`): each
//! volume is a directory `<root>/<volume>_<namespace>_<claim>`, served as a `hostPath`
//! volume. With a selected node (a `WaitForFirstConsumer` class) the volume gets node affinity
//! to that node, so its pods follow the data. Deleting the volume removes the directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolume, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use kybernetes_core::persistent_volume::{IS_DEFAULT_CLASS_ANNOTATION, PROVISIONED_BY_ANNOTATION};

use super::{ProvisionError, ProvisionRequest, Provisioner};
use crate::reconcile::is_already_exists;

/// The provisioner name of the built-in local-path provisioner.
pub const LOCAL_PATH_PROVISIONER: &str = "kybernetes.io/local-path";
/// The default StorageClass it backs.
pub const LOCAL_PATH_CLASS: &str = "local-path";

/// Creates and removes a directory per volume under one root.
#[derive(Clone, Debug)]
pub struct LocalPathProvisioner {
    root: PathBuf,
}

impl LocalPathProvisioner {
    /// A provisioner keeping its volumes under `root` (created when needed).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalPathProvisioner { root: root.into() }
    }

    /// The directory volumes live in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of a volume this provisioner created, if the volume points inside the
    /// root (anything else is left alone).
    fn directory_of(&self, volume: &PersistentVolume) -> Option<PathBuf> {
        let spec = volume.spec.as_ref()?;
        let path = spec
            .host_path
            .as_ref()
            .map(|h| h.path.as_str())
            .or_else(|| spec.local.as_ref().map(|l| l.path.as_str()))?;
        let path = PathBuf::from(path);
        let inside = path.parent() == Some(self.root.as_path());
        inside.then_some(path)
    }
}

impl Provisioner for LocalPathProvisioner {
    fn name(&self) -> &str {
        LOCAL_PATH_PROVISIONER
    }

    fn provision<'a>(
        &'a self,
        request: ProvisionRequest<'a>,
    ) -> BoxFuture<'a, Result<PersistentVolume, ProvisionError>> {
        Box::pin(async move {
            let claim = request.claim;
            let spec = claim.spec.clone().unwrap_or_default();
            let storage = spec
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .cloned()
                .ok_or_else(|| ProvisionError::Unsupported("claim requests no storage".into()))?;
            if spec.volume_mode.as_deref() == Some("Block") {
                return Err(ProvisionError::Unsupported(
                    "local-path volumes are directories; volumeMode Block is not supported".into(),
                ));
            }
            let dir = self.root.join(format!(
                "{}_{}_{}",
                request.volume_name,
                claim.namespace().unwrap_or_default(),
                claim.name_any()
            ));
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|source| ProvisionError::Io {
                    what: "creating",
                    path: dir.clone(),
                    source,
                })?;
            let node_affinity = request.selected_node.map(|node| VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "kubernetes.io/hostname".into(),
                            operator: "In".into(),
                            values: Some(vec![node.to_string()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            });
            Ok(PersistentVolume {
                metadata: ObjectMeta {
                    name: Some(request.volume_name.clone()),
                    annotations: Some(BTreeMap::from([(
                        PROVISIONED_BY_ANNOTATION.to_string(),
                        LOCAL_PATH_PROVISIONER.to_string(),
                    )])),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeSpec {
                    access_modes: spec.access_modes.clone(),
                    capacity: Some(BTreeMap::from([(
                        "storage".to_string(),
                        Quantity(storage.0),
                    )])),
                    host_path: Some(HostPathVolumeSource {
                        path: dir.to_string_lossy().into_owned(),
                        type_: Some("DirectoryOrCreate".into()),
                    }),
                    node_affinity,
                    persistent_volume_reclaim_policy: request.class.reclaim_policy.clone(),
                    volume_mode: Some("Filesystem".into()),
                    ..Default::default()
                }),
                status: None,
            })
        })
    }

    fn delete<'a>(
        &'a self,
        volume: &'a PersistentVolume,
    ) -> BoxFuture<'a, Result<(), ProvisionError>> {
        Box::pin(async move {
            let Some(dir) = self.directory_of(volume) else {
                return Err(ProvisionError::Unsupported(format!(
                    "volume {} is not under {}",
                    volume.name_any(),
                    self.root.display()
                )));
            };
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(ProvisionError::Io {
                    what: "removing",
                    path: dir,
                    source,
                }),
            }
        })
    }
}

/// Creates the default `local-path` StorageClass (WaitForFirstConsumer, Delete, as k3s's)
/// unless it exists.
pub async fn ensure_local_path_class(client: &Client) -> Result<(), kube::Error> {
    let class = StorageClass {
        metadata: ObjectMeta {
            name: Some(LOCAL_PATH_CLASS.into()),
            annotations: Some(BTreeMap::from([(
                IS_DEFAULT_CLASS_ANNOTATION.to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        provisioner: LOCAL_PATH_PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        ..Default::default()
    };
    let api: Api<StorageClass> = Api::all(client.clone());
    match api.create(&PostParams::default(), &class).await {
        Ok(_) => Ok(()),
        Err(e) if is_already_exists(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use serde_json::json;

    #[tokio::test]
    async fn a_volume_is_a_directory_with_node_affinity_and_delete_removes_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("storage");
        let p = LocalPathProvisioner::new(&root);
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "www-web-0", "namespace": "default", "uid": "u1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        }))
        .expect("claim");
        let class: StorageClass = serde_json::from_value(json!({"metadata": {"name": "local-path"}, "provisioner": LOCAL_PATH_PROVISIONER, "reclaimPolicy": "Delete"})).expect("class");
        let request = ProvisionRequest {
            volume_name: "pvc-u1".into(),
            claim: &claim,
            class: &class,
            selected_node: Some("node-1"),
        };
        let pv = p.provision(request).await.expect("provisioned");
        let dir = root.join("pvc-u1_default_www-web-0");
        assert!(dir.is_dir());
        let v = serde_json::to_value(&pv).expect("json");
        assert_eq!(
            v["spec"]["hostPath"]["path"],
            dir.to_string_lossy().as_ref()
        );
        assert_eq!(
            v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
            json!(["node-1"])
        );
        assert_eq!(v["spec"]["capacity"]["storage"], "1Gi");
        p.delete(&pv).await.expect("deleted");
        assert!(!dir.exists());
        let outside: PersistentVolume = serde_json::from_value(
            json!({"metadata": {"name": "x"}, "spec": {"hostPath": {"path": "/etc"}}}),
        )
        .expect("pv");
        assert!(
            p.delete(&outside).await.is_err(),
            "only its own directories"
        );
    }
}
