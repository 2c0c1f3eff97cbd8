//! Images on containerd: importing OCI image-layout tarballs (content, image record, unpacked
//! layers, as `ctr images import` does) and reading containerd's image store back as CRI
//! [`Image`]s.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use bytes::Bytes;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    self as api, ApplyRequest, CreateImageRequest, DeleteImageRequest, GetImageRequest,
    ListImagesRequest, ReadContentRequest, UpdateImageRequest, WriteAction, WriteContentRequest,
};
use containerd_client::types::Descriptor;
use futures::StreamExt;
use serde::Deserialize;
use tracing::{Instrument, debug, info_span};

use super::{ContainerdRuntime, backend, grpc, is_not_found};
use crate::image::{Image, normalize_reference};
use crate::{Error, Result};

/// Content is written in chunks well under containerd's 16 MiB message limit.
const CHUNK: usize = 1 << 20;

const INDEX_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// The parts of an OCI descriptor this module reads.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciDescriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

impl OciDescriptor {
    fn to_api(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            annotations: HashMap::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct OciIndex {
    manifests: Vec<OciDescriptor>,
}

#[derive(Debug, Deserialize)]
struct OciManifest {
    config: OciDescriptor,
    layers: Vec<OciDescriptor>,
}

#[derive(Debug, Deserialize)]
struct OciConfig {
    rootfs: OciRootfs,
}

#[derive(Debug, Deserialize)]
struct OciRootfs {
    diff_ids: Vec<String>,
}

/// An OCI image layout, read whole from its tarball.
struct Layout {
    index: OciIndex,
    blobs: HashMap<String, Bytes>,
}

impl Layout {
    fn read(tarball: &[u8]) -> Result<Layout> {
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

    fn blob(&self, digest: &str) -> Result<&Bytes> {
        self.blobs
            .get(digest)
            .ok_or_else(|| invalid_archive(format!("blob {digest} is missing")))
    }

    fn json<T: for<'de> Deserialize<'de>>(&self, digest: &str, what: &str) -> Result<T> {
        serde_json::from_slice(self.blob(digest)?)
            .map_err(|e| invalid_archive(format!("{what} {digest} does not parse: {e}")))
    }
}

fn invalid_archive(message: String) -> Error {
    Error::Backend {
        context: format!("import image archive: {message}"),
        source: None,
    }
}

/// The SHA-256 digest of `data`, as `sha256:<hex>`.
fn sha256(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = String::from("sha256:");
    for b in digest.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The chain ids of a stack of layers (OCI image spec): the first is the first diff id, each
/// next is the digest of the previous chain id, a space and the next diff id.
fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => diff.clone(),
            Some(prev) => sha256(format!("{prev} {diff}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// Imports every image named in the tarball's `index.json`.
pub(super) async fn import(rt: &ContainerdRuntime, tarball: Bytes) -> Result<Vec<Image>> {
    let layout = Layout::read(&tarball)?;
    let lease = format!("kybernetes-import-{}", uuid_like());
    LeasesClient::new(rt.channel.clone())
        .create(rt.request(
            api::CreateRequest {
                id: lease.clone(),
                labels: HashMap::from([(
                    "containerd.io/gc.expire".to_string(),
                    (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
                )]),
            },
            None,
        )?)
        .await
        .map_err(|s| grpc("create an import lease", s))?;
    let result = import_under_lease(rt, &layout, &lease)
        .instrument(info_span!("containerd_import", lease = %lease))
        .await;
    // The image records now hold the content; the lease only protected it while importing.
    if let Err(s) = LeasesClient::new(rt.channel.clone())
        .delete(rt.request(
            api::DeleteRequest {
                id: lease.clone(),
                sync: false,
            },
            None,
        )?)
        .await
    {
        debug!(lease = %lease, error = %s, "deleting the import lease failed; it expires");
    }
    result
}

async fn import_under_lease(
    rt: &ContainerdRuntime,
    layout: &Layout,
    lease: &str,
) -> Result<Vec<Image>> {
    let mut imported = Vec::new();
    for entry in &layout.index.manifests {
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
        let name = normalize_reference(name);
        if INDEX_MEDIA_TYPES.contains(&entry.media_type.as_str()) {
            return Err(Error::Unsupported(format!(
                "importing {name}: nested image indexes (multi-platform images)"
            )));
        }
        let manifest: OciManifest = layout.json(&entry.digest, "manifest")?;
        let config: OciConfig = layout.json(&manifest.config.digest, "image config")?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(invalid_archive(format!(
                "image config of {name} lists {} diff ids for {} layers",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            )));
        }
        let chains = chain_ids(&config.rootfs.diff_ids);
        for (layer, diff) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            let labels = [("containerd.io/uncompressed".to_string(), diff.clone())];
            write_blob(rt, lease, layout, layer, labels.into()).await?;
        }
        let mut config_labels = HashMap::new();
        if let Some(top) = chains.last() {
            config_labels.insert(
                format!("containerd.io/gc.ref.snapshot.{}", rt.snapshotter),
                top.clone(),
            );
        }
        write_blob(rt, lease, layout, &manifest.config, config_labels).await?;
        let mut manifest_labels = HashMap::from([(
            "containerd.io/gc.ref.content.config".to_string(),
            manifest.config.digest.clone(),
        )]);
        for (i, layer) in manifest.layers.iter().enumerate() {
            manifest_labels.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                layer.digest.clone(),
            );
        }
        write_blob(rt, lease, layout, entry, manifest_labels).await?;
        unpack(
            rt,
            lease,
            &manifest.layers,
            &config.rootfs.diff_ids,
            &chains,
        )
        .await?;
        put_image(rt, &name, entry).await?;
        imported.push(image_record(rt, &name, entry.to_api()).await?);
    }
    Ok(imported)
}

/// A unique enough suffix for lease and snapshot keys.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes one blob into containerd's content store; one already there is kept as is.
async fn write_blob(
    rt: &ContainerdRuntime,
    lease: &str,
    layout: &Layout,
    desc: &OciDescriptor,
    labels: HashMap<String, String>,
) -> Result<()> {
    let data = layout.blob(&desc.digest)?.clone();
    let actual = sha256(&data);
    if actual != desc.digest || data.len() as i64 != desc.size {
        return Err(invalid_archive(format!(
            "blob {} has digest {actual} and size {} (descriptor says size {})",
            desc.digest,
            data.len(),
            desc.size
        )));
    }
    let reference = format!("kybernetes-{}", desc.digest);
    let total = data.len() as i64;
    let mut messages = Vec::new();
    let mut offset = 0usize;
    loop {
        let end = (offset + CHUNK).min(data.len());
        messages.push(WriteContentRequest {
            action: WriteAction::Write as i32,
            r#ref: reference.clone(),
            total,
            expected: desc.digest.clone(),
            offset: offset as i64,
            data: data.slice(offset..end).to_vec(),
            labels: HashMap::new(),
        });
        offset = end;
        if offset >= data.len() {
            break;
        }
    }
    messages.push(WriteContentRequest {
        action: WriteAction::Commit as i32,
        r#ref: reference.clone(),
        total,
        expected: desc.digest.clone(),
        offset: total,
        data: Vec::new(),
        labels: labels.clone(),
    });
    let request = rt.request(futures::stream::iter(messages), Some(lease))?;
    match ContentClient::new(rt.channel.clone()).write(request).await {
        Ok(response) => {
            let mut responses = response.into_inner();
            while let Some(item) = responses.next().await {
                match item {
                    Ok(_) => {}
                    Err(s) if s.code() == tonic::Code::AlreadyExists => return Ok(()),
                    Err(s) => return Err(grpc(format!("write blob {}", desc.digest), s)),
                }
            }
            Ok(())
        }
        Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(()),
        Err(s) => Err(grpc(format!("write blob {}", desc.digest), s)),
    }
}

use containerd_client::tonic;

/// Unpacks the layers into the snapshotter, skipping those already there.
async fn unpack(
    rt: &ContainerdRuntime,
    lease: &str,
    layers: &[OciDescriptor],
    diff_ids: &[String],
    chains: &[String],
) -> Result<()> {
    let mut snapshots = SnapshotsClient::new(rt.channel.clone());
    let mut parent = String::new();
    for ((layer, diff), chain) in layers.iter().zip(diff_ids).zip(chains) {
        let stat = snapshots
            .stat(rt.request(
                StatSnapshotRequest {
                    snapshotter: rt.snapshotter.clone(),
                    key: chain.clone(),
                },
                Some(lease),
            )?)
            .await;
        match stat {
            Ok(_) => {
                parent = chain.clone();
                continue;
            }
            Err(s) if is_not_found(&s) => {}
            Err(s) => return Err(grpc(format!("stat snapshot {chain}"), s)),
        }
        let key = format!("extract-{}-{chain}", uuid_like());
        let mounts = snapshots
            .prepare(rt.request(
                PrepareSnapshotRequest {
                    snapshotter: rt.snapshotter.clone(),
                    key: key.clone(),
                    parent: parent.clone(),
                    labels: HashMap::new(),
                },
                Some(lease),
            )?)
            .await
            .map_err(|s| grpc(format!("prepare snapshot for layer {}", layer.digest), s))?
            .into_inner()
            .mounts;
        let applied = DiffClient::new(rt.channel.clone())
            .apply(rt.request(
                ApplyRequest {
                    diff: Some(layer.to_api()),
                    mounts,
                    payloads: HashMap::new(),
                    sync_fs: false,
                },
                Some(lease),
            )?)
            .await;
        let outcome = match applied {
            Ok(r) => match r.into_inner().applied {
                Some(d) if d.digest == *diff => Ok(()),
                other => Err(invalid_archive(format!(
                    "layer {} unpacked to {:?}, but the image config says diff id {diff}",
                    layer.digest,
                    other.map(|d| d.digest)
                ))),
            },
            Err(s) => Err(grpc(format!("apply layer {}", layer.digest), s)),
        };
        let outcome = match outcome {
            Ok(()) => snapshots
                .commit(rt.request(
                    CommitSnapshotRequest {
                        snapshotter: rt.snapshotter.clone(),
                        name: chain.clone(),
                        key: key.clone(),
                        labels: HashMap::new(),
                    },
                    Some(lease),
                )?)
                .await
                .map(|_| ())
                .or_else(|s| {
                    // Another import committed the same layer meanwhile: it is there.
                    if s.code() == tonic::Code::AlreadyExists {
                        Ok(())
                    } else {
                        Err(grpc(format!("commit snapshot {chain}"), s))
                    }
                }),
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            remove_snapshot(rt, &key).await;
            return Err(e);
        }
        parent = chain.clone();
    }
    Ok(())
}

pub(super) async fn remove_snapshot(rt: &ContainerdRuntime, key: &str) {
    let Ok(request) = rt.request(
        RemoveSnapshotRequest {
            snapshotter: rt.snapshotter.clone(),
            key: key.to_string(),
        },
        None,
    ) else {
        return;
    };
    if let Err(s) = SnapshotsClient::new(rt.channel.clone())
        .remove(request)
        .await
        && !is_not_found(&s)
    {
        debug!(key, error = %s, "removing a half-unpacked snapshot failed");
    }
}

/// Creates the image record, or points an existing one at the new manifest.
async fn put_image(rt: &ContainerdRuntime, name: &str, manifest: &OciDescriptor) -> Result<()> {
    let image = api::Image {
        name: name.to_string(),
        labels: HashMap::new(),
        target: Some(manifest.to_api()),
        created_at: None,
        updated_at: None,
    };
    let mut images = ImagesClient::new(rt.channel.clone());
    let created = images
        .create(rt.request(
            CreateImageRequest {
                image: Some(image.clone()),
                source_date_epoch: None,
            },
            None,
        )?)
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::AlreadyExists => images
            .update(rt.request(
                UpdateImageRequest {
                    image: Some(image),
                    update_mask: None,
                    source_date_epoch: None,
                },
                None,
            )?)
            .await
            .map(|_| ())
            .map_err(|s| grpc(format!("update image {name}"), s)),
        Err(s) => Err(grpc(format!("create image {name}"), s)),
    }
}

/// Reads a whole blob from containerd's content store.
async fn read_blob(rt: &ContainerdRuntime, digest: &str) -> Result<Vec<u8>> {
    let mut stream = ContentClient::new(rt.channel.clone())
        .read(rt.request(
            ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            },
            None,
        )?)
        .await
        .map_err(|s| grpc(format!("read blob {digest}"), s))?
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend(
            chunk
                .map_err(|s| grpc(format!("read blob {digest}"), s))?
                .data,
        );
    }
    Ok(out)
}

/// The CRI image record of containerd image `name` with target `target`: its id is the
/// config digest, as CRI runtimes report.
async fn image_record(rt: &ContainerdRuntime, name: &str, target: Descriptor) -> Result<Image> {
    let mut manifest_desc = target;
    if INDEX_MEDIA_TYPES.contains(&manifest_desc.media_type.as_str()) {
        let index: OciIndex = serde_json::from_slice(&read_blob(rt, &manifest_desc.digest).await?)
            .map_err(|e| backend(format!("image index of {name}"), e))?;
        let first = index.manifests.first().ok_or_else(|| Error::Backend {
            context: format!("image index of {name} lists no manifests"),
            source: None,
        })?;
        manifest_desc = first.to_api();
    }
    let manifest: OciManifest =
        serde_json::from_slice(&read_blob(rt, &manifest_desc.digest).await?)
            .map_err(|e| backend(format!("manifest of {name}"), e))?;
    let size = manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<i64>();
    let repo = name
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .map(|(r, _)| r)
        .unwrap_or(name);
    let repo = repo.split('@').next().unwrap_or(repo);
    Ok(Image {
        id: manifest.config.digest,
        repo_tags: if name.contains('@') {
            Vec::new()
        } else {
            vec![name.to_string()]
        },
        repo_digests: vec![format!("{repo}@{}", manifest_desc.digest)],
        size_bytes: u64::try_from(size).unwrap_or(0),
    })
}

/// What a container of an image is made from: the image, its default process and the chain
/// id of its top layer (the parent of the container's snapshot).
pub(super) struct Resolved {
    pub(super) image: Image,
    pub(super) name: String,
    pub(super) process: super::spec::ImageProcess,
    pub(super) top_chain: String,
}

/// The full image config, for the parts a container needs.
#[derive(Debug, Deserialize)]
struct RunConfig {
    #[serde(default)]
    config: Option<super::spec::ImageProcess>,
    rootfs: OciRootfs,
}

/// The image `name` answers to, with what a container of it needs; `None` if absent.
pub(super) async fn resolve(rt: &ContainerdRuntime, name: &str) -> Result<Option<Resolved>> {
    let Some(image) = status(rt, name).await? else {
        return Ok(None);
    };
    let config: RunConfig = serde_json::from_slice(&read_blob(rt, &image.id).await?)
        .map_err(|e| backend(format!("image config of {name}"), e))?;
    let top_chain = chain_ids(&config.rootfs.diff_ids)
        .pop()
        .ok_or_else(|| Error::Backend {
            context: format!("image {name} has no layers"),
            source: None,
        })?;
    Ok(Some(Resolved {
        name: image
            .repo_tags
            .first()
            .cloned()
            .unwrap_or_else(|| normalize_reference(name)),
        image,
        process: config.config.unwrap_or_default(),
        top_chain,
    }))
}

/// The image `name` answers to: a reference (looked up directly) or an id or digest (looked
/// up among all images).
pub(super) async fn status(rt: &ContainerdRuntime, name: &str) -> Result<Option<Image>> {
    let reference = normalize_reference(name);
    let got = ImagesClient::new(rt.channel.clone())
        .get(rt.request(
            GetImageRequest {
                name: reference.clone(),
            },
            None,
        )?)
        .await;
    match got {
        Ok(r) => {
            if let Some(image) = r.into_inner().image
                && let Some(target) = image.target
            {
                return Ok(Some(image_record(rt, &image.name, target).await?));
            }
        }
        Err(s) if is_not_found(&s) => {}
        Err(s) => return Err(grpc(format!("get image {reference}"), s)),
    }
    Ok(list(rt).await?.into_iter().find(|i| i.answers_to(name)))
}

/// Every image in the runtime's namespace.
pub(super) async fn list(rt: &ContainerdRuntime) -> Result<Vec<Image>> {
    let images = ImagesClient::new(rt.channel.clone())
        .list(rt.request(
            ListImagesRequest {
                filters: Vec::new(),
            },
            None,
        )?)
        .await
        .map_err(|s| grpc("list images", s))?
        .into_inner()
        .images;
    let mut out = Vec::with_capacity(images.len());
    for image in images {
        if let Some(target) = image.target {
            out.push(image_record(rt, &image.name, target).await?);
        }
    }
    Ok(out)
}

/// Removes every image record `name` answers to; containerd collects the content and
/// snapshots no record refers to any more.
pub(super) async fn remove(rt: &ContainerdRuntime, name: &str) -> Result<()> {
    let Some(image) = status(rt, name).await? else {
        return Ok(());
    };
    for tag in &image.repo_tags {
        let deleted = ImagesClient::new(rt.channel.clone())
            .delete(rt.request(
                DeleteImageRequest {
                    name: tag.clone(),
                    sync: false,
                    target: None,
                },
                None,
            )?)
            .await;
        match deleted {
            Ok(_) => {}
            Err(s) if is_not_found(&s) => {}
            Err(s) => return Err(grpc(format!("delete image {tag}"), s)),
        }
    }
    Ok(())
}

/// An image already present answers a pull; reaching a registry is not implemented yet, so an
/// absent image fails as a pull that could not find it does.
pub(super) async fn pull(rt: &ContainerdRuntime, name: &str) -> Result<Image> {
    if let Some(image) = status(rt, name).await? {
        return Ok(image);
    }
    Err(Error::ImagePull {
        image: name.to_string(),
        message: format!(
            "{} is not present in containerd namespace {:?} and pulling from a registry is not \
             supported yet; import it from an OCI archive (kybernetes image import FILE)",
            normalize_reference(name),
            rt.namespace.to_str().unwrap_or_default()
        ),
        source: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_spec() {
        let diffs = vec!["sha256:a".to_string(), "sha256:b".to_string()];
        let chains = chain_ids(&diffs);
        assert_eq!(chains[0], "sha256:a");
        assert_eq!(chains[1], sha256(b"sha256:a sha256:b"));
    }
}
