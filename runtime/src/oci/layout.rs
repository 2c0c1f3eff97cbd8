//! OCI image layouts read whole from a tarball (`docker save`/`skopeo copy oci-archive:`
//! output): the index, manifests, configs and layer blobs, for every runtime that imports
//! images from an archive.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use bytes::Bytes;
use serde::Deserialize;

use crate::{Error, Result};

pub(crate) const INDEX_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// The parts of an OCI descriptor this module reads.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OciDescriptor {
    #[serde(default)]
    pub(crate) media_type: String,
    pub(crate) digest: String,
    pub(crate) size: i64,
    #[serde(default)]
    pub(crate) annotations: BTreeMap<String, String>,
    #[serde(default)]
    #[cfg_attr(not(feature = "containerd"), allow(dead_code))]
    // read by the registry pull and image import of ContainerdRuntime
    pub(crate) platform: Option<OciPlatform>,
}

/// The platform an index entry is for.
#[cfg_attr(not(feature = "containerd"), allow(dead_code))] // read by the registry pull and image import of ContainerdRuntime
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct OciPlatform {
    #[serde(default)]
    pub(crate) architecture: String,
    #[serde(default)]
    pub(crate) os: String,
}

impl OciDescriptor {
    /// A descriptor of `data`, whose digest this computes.
    #[cfg_attr(not(feature = "containerd"), allow(dead_code))] // read by the registry pull and image import of ContainerdRuntime
    pub(crate) fn of(media_type: String, data: &[u8]) -> OciDescriptor {
        OciDescriptor {
            media_type,
            digest: sha256(data),
            size: data.len() as i64,
            annotations: BTreeMap::new(),
            platform: None,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct OciIndex {
    pub(crate) manifests: Vec<OciDescriptor>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct OciManifest {
    pub(crate) config: OciDescriptor,
    pub(crate) layers: Vec<OciDescriptor>,
}

#[cfg_attr(not(feature = "containerd"), allow(dead_code))] // read by the registry pull and image import of ContainerdRuntime
#[derive(Debug, Deserialize)]
pub(crate) struct OciConfig {
    pub(crate) rootfs: OciRootfs,
}

#[derive(Debug, Deserialize)]
pub(crate) struct OciRootfs {
    pub(crate) diff_ids: Vec<String>,
}

/// An OCI image layout, read whole from its tarball.
pub(crate) struct Layout {
    pub(crate) index: OciIndex,
    blobs: HashMap<String, Bytes>,
}

impl Layout {
    pub(crate) fn read(tarball: &[u8]) -> Result<Layout> {
        let mut archive = tar::Archive::new(tarball);
        let mut index = None;
        let mut blobs = HashMap::new();
        let entries = archive
            .entries()
            .map_err(|e| invalid_archive(format!("not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| invalid_archive(format!("bad tar entry: {e}")))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry
                .path()
                .map_err(|e| invalid_archive(format!("bad tar path: {e}")))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            let mut data = Vec::new();
            entry
                .read_to_end(&mut data)
                .map_err(|e| invalid_archive(format!("reading {path}: {e}")))?;
            if path == "index.json" {
                index = Some(serde_json::from_slice::<OciIndex>(&data).map_err(|e| {
                    invalid_archive(format!("index.json is not an OCI image index: {e}"))
                })?);
            } else if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                blobs.insert(format!("sha256:{hex}"), Bytes::from(data));
            }
        }
        let index = index
            .ok_or_else(|| invalid_archive("no index.json (not an OCI image layout)".into()))?;
        Ok(Layout { index, blobs })
    }

    pub(crate) fn blob(&self, digest: &str) -> Result<&Bytes> {
        self.blobs
            .get(digest)
            .ok_or_else(|| invalid_archive(format!("blob {digest} is missing")))
    }
}

pub(crate) fn invalid_archive(message: String) -> Error {
    Error::Backend {
        context: format!("import image archive: {message}"),
        source: None,
    }
}

/// The SHA-256 digest of `data`, as `sha256:<hex>`.
pub(crate) fn sha256(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = String::from("sha256:");
    for b in digest.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The CRI record of image `name` whose manifest has digest `manifest_digest`: its id is the
/// config digest, as CRI runtimes report, and its user the one its config names (which the
/// node agent checks against `runAsNonRoot` before it creates a container).
pub(crate) fn image_record(
    name: &str,
    manifest_digest: &str,
    config_digest: String,
    size: i64,
    user: &str,
) -> crate::image::Image {
    let repo = name
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .map(|(r, _)| r)
        .unwrap_or(name);
    let repo = repo.split('@').next().unwrap_or(repo);
    let (uid, username) = crate::security::image_user(user);
    crate::image::Image {
        id: config_digest,
        repo_tags: if name.contains('@') {
            Vec::new()
        } else {
            vec![name.to_string()]
        },
        repo_digests: vec![format!("{repo}@{manifest_digest}")],
        size_bytes: u64::try_from(size).unwrap_or(0),
        uid,
        username,
    }
}

/// The normalized name of the image an archive's `index.json` entry names (containerd's
/// annotation, else the OCI one). Nested indexes (multi-platform images) are refused.
pub(crate) fn entry_name(entry: &OciDescriptor) -> Result<String> {
    let name = entry
        .annotations
        .get("io.containerd.image.name")
        .or_else(|| entry.annotations.get("org.opencontainers.image.ref.name"))
        .ok_or_else(|| {
            invalid_archive(format!(
                "index.json entry {} names no image (annotation org.opencontainers.image.ref.name)",
                entry.digest
            ))
        })?;
    let name = crate::image::normalize_reference(name);
    if INDEX_MEDIA_TYPES.contains(&entry.media_type.as_str()) {
        return Err(Error::Unsupported(format!(
            "importing {name}: nested image indexes (multi-platform images)"
        )));
    }
    Ok(name)
}
