//! Images of isolated mode: OCI archives (an image layout in a tarball) imported through
//! `import_image` or named with [`ProcessRuntimeBuilder::image_archive`], each unpacked once
//! into `images/<config digest>/rootfs` under the runtime's root. Containers of the image
//! get an overlay of that tree, so the image stays as unpacked.
//!
//! [`ProcessRuntimeBuilder::image_archive`]: crate::process::ProcessRuntimeBuilder::image_archive

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tracing::debug;

use super::Isolation;
use crate::image::Image;
use crate::oci::backend;
use crate::oci::layout::{Layout, OciManifest, invalid_archive, sha256};
use crate::oci::spec::ImageProcess;
use crate::{Error, Result};

/// An image unpacked on disk.
#[derive(Clone, Debug)]
pub(crate) struct UnpackedImage {
    pub(crate) image: Image,
    /// The unpacked layers, the lower directory of every container's overlay.
    pub(crate) rootfs: PathBuf,
    /// What a container of it runs by default.
    pub(crate) process: ImageProcess,
}

/// The parts of an image config a container needs.
#[derive(Debug, Deserialize)]
struct RunConfig {
    #[serde(default)]
    config: Option<ImageProcess>,
    rootfs: crate::oci::layout::OciRootfs,
}

impl Isolation {
    /// The unpacked image `name` answers to.
    pub(crate) fn image(&self, name: &str) -> Option<UnpackedImage> {
        self.lock_images()
            .iter()
            .find(|i| i.image.answers_to(name))
            .cloned()
    }

    /// Imports the archives the builder named that are not imported yet.
    pub(crate) async fn import_pending(&self, images_dir: &Path) -> Result<Vec<Image>> {
        let pending: Vec<PathBuf> =
            std::mem::take(&mut *self.archives.lock().unwrap_or_else(|p| p.into_inner()));
        let mut out = Vec::new();
        for path in pending {
            let data = tokio::fs::read(&path).await.map_err(|e| Error::Backend {
                context: format!("read image archive {}", path.display()),
                source: Some(Box::new(e)),
            })?;
            out.extend(self.import(images_dir, data.into()).await?);
        }
        Ok(out)
    }

    /// Imports every image the archive's `index.json` names, unpacking each under
    /// `images_dir` (once: an image whose config digest is unpacked already is reused).
    pub(crate) async fn import(
        &self,
        images_dir: &Path,
        tarball: bytes::Bytes,
    ) -> Result<Vec<Image>> {
        let images_dir = images_dir.to_path_buf();
        let unpacked = tokio::task::spawn_blocking(move || unpack_archive(&images_dir, &tarball))
            .await
            .map_err(|e| Error::Backend {
                context: "unpacking an image archive".into(),
                source: Some(Box::new(e)),
            })??;
        let mut images = self.lock_images();
        let mut out = Vec::new();
        for u in unpacked {
            // A name imported again now means the new image.
            for name in &u.image.repo_tags {
                for old in images.iter_mut() {
                    old.image.repo_tags.retain(|t| t != name);
                }
            }
            images.retain(|i| !(i.image.repo_tags.is_empty() && i.image.id == u.image.id));
            out.push(u.image.clone());
            images.push(u);
        }
        Ok(out)
    }

    /// Forgets image `name`; its files go with the runtime's root.
    pub(crate) fn remove_image(&self, name: &str) {
        self.lock_images().retain(|i| !i.image.answers_to(name));
    }

    fn lock_images(&self) -> std::sync::MutexGuard<'_, Vec<UnpackedImage>> {
        self.images.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn unpack_archive(images_dir: &Path, tarball: &[u8]) -> Result<Vec<UnpackedImage>> {
    let layout = Layout::read(tarball)?;
    let mut out = Vec::new();
    for entry in &layout.index.manifests {
        let name = crate::oci::layout::entry_name(entry)?;
        let manifest: OciManifest = parse(layout.blob(&entry.digest)?, "manifest")?;
        let config_data = layout.blob(&manifest.config.digest)?;
        let config: RunConfig = parse(config_data, "image config")?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(invalid_archive(format!(
                "image config of {name} lists {} diff ids for {} layers",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            )));
        }
        let hex = manifest
            .config
            .digest
            .strip_prefix("sha256:")
            .unwrap_or(&manifest.config.digest)
            .to_string();
        let dir = images_dir.join(&hex);
        let rootfs = dir.join("rootfs");
        if !dir.join("unpacked").exists() {
            unpack_layers(&layout, &manifest, &dir, &rootfs)?;
        }
        let process = config.config.unwrap_or_default();
        let size = manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<i64>();
        let image = crate::oci::layout::image_record(
            &name,
            &entry.digest,
            manifest.config.digest.clone(),
            size,
            process.user.as_deref().unwrap_or(""),
        );
        out.push(UnpackedImage {
            image,
            rootfs,
            process,
        });
    }
    Ok(out)
}

/// Unpacks the layers of `manifest` in order into `rootfs`, checking each blob's digest,
/// then marks `dir` complete (a half-unpacked tree is redone on the next import).
fn unpack_layers(layout: &Layout, manifest: &OciManifest, dir: &Path, rootfs: &Path) -> Result<()> {
    if rootfs.exists() {
        std::fs::remove_dir_all(rootfs)
            .map_err(|e| backend(format!("remove {}", rootfs.display()), e))?;
    }
    std::fs::create_dir_all(rootfs)
        .map_err(|e| backend(format!("create {}", rootfs.display()), e))?;
    for layer in &manifest.layers {
        let data = layout.blob(&layer.digest)?;
        let actual = sha256(data);
        if actual != layer.digest {
            return Err(invalid_archive(format!(
                "layer {} has digest {actual}",
                layer.digest
            )));
        }
        super::unpack::apply_layer(rootfs, data)?;
        debug!(layer = %layer.digest, rootfs = %rootfs.display(), "applied an image layer");
    }
    std::fs::write(dir.join("unpacked"), b"")
        .map_err(|e| backend(format!("mark {} unpacked", dir.display()), e))
}

fn parse<T: serde::de::DeserializeOwned>(data: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(data).map_err(|e| invalid_archive(format!("{what} does not parse: {e}")))
}
