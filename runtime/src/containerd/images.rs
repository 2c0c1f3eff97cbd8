//! Images on containerd: importing OCI image-layout tarballs (content, image record, unpacked
//! layers, as `ctr images import` does) and reading containerd's image store back as CRI
//! [`Image`]s.

use std::collections::HashMap;

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
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tracing::{Instrument, debug, info_span};

use super::{ContainerdRuntime, backend, grpc, is_not_found};
use crate::image::{Image, normalize_reference};
use crate::{Error, Result};

/// Content is written in chunks well under containerd's 16 MiB message limit.
const CHUNK: usize = 1 << 20;

pub(super) use crate::oci::layout::{
    INDEX_MEDIA_TYPES, Layout, OciConfig, OciDescriptor, OciIndex, OciManifest, OciRootfs,
    invalid_archive, sha256,
};

/// The containerd form of descriptor `d`.
fn to_api(d: &OciDescriptor) -> Descriptor {
    Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        annotations: HashMap::new(),
    }
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
    let lease = create_lease(rt, "import").await?;
    let result = import_under_lease(rt, &layout, &lease)
        .instrument(info_span!("containerd_import", lease = %lease))
        .await;
    release_lease(rt, &lease).await;
    result
}

async fn import_under_lease(
    rt: &ContainerdRuntime,
    layout: &Layout,
    lease: &str,
) -> Result<Vec<Image>> {
    let mut imported = Vec::new();
    for entry in &layout.index.manifests {
        let name = crate::oci::layout::entry_name(entry)?;
        let blobs = Blobs::Archive(layout);
        imported.push(store(rt, lease, &blobs, &name, None, entry).await?);
    }
    Ok(imported)
}

/// A fresh lease, so what is written under it is not garbage-collected before an image
/// record holds it; it expires within the hour if [`release_lease`] is never reached.
pub(super) async fn create_lease(rt: &ContainerdRuntime, purpose: &str) -> Result<String> {
    let lease = format!("kybernetes-{purpose}-{}", uuid_like());
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
        .map_err(|s| grpc(format!("create an {purpose} lease"), s))?;
    Ok(lease)
}

/// Deletes a lease once the image records hold the content it protected.
pub(super) async fn release_lease(rt: &ContainerdRuntime, lease: &str) {
    let request = match rt.request(
        api::DeleteRequest {
            id: lease.to_string(),
            sync: false,
        },
        None,
    ) {
        Ok(r) => r,
        Err(e) => {
            debug!(lease, error = %e, "deleting a lease failed; it expires");
            return;
        }
    };
    if let Err(s) = LeasesClient::new(rt.channel.clone()).delete(request).await {
        debug!(lease, error = %s, "deleting a lease failed; it expires");
    }
}

/// Where an image's blobs come from: an OCI archive read whole, or a registry.
pub(super) enum Blobs<'a> {
    Archive(&'a Layout),
    Registry(&'a super::registry::Fetch),
}

impl Blobs<'_> {
    /// A small blob (manifest, config), whole.
    async fn bytes(&self, desc: &OciDescriptor) -> Result<Bytes> {
        match self {
            Blobs::Archive(layout) => layout.blob(&desc.digest).cloned(),
            Blobs::Registry(fetch) => fetch.bytes(desc).await,
        }
    }

    /// `data` (blob `desc`) parsed as JSON.
    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        data: &[u8],
        desc: &OciDescriptor,
        what: &str,
    ) -> Result<T> {
        serde_json::from_slice(data).map_err(|e| {
            let message = format!("{what} {} does not parse: {e}", desc.digest);
            match self {
                Blobs::Archive(_) => invalid_archive(message),
                Blobs::Registry(fetch) => fetch.invalid(message),
            }
        })
    }

    /// Writes blob `desc` into containerd's content store; one already there is kept as is.
    async fn write(
        &self,
        rt: &ContainerdRuntime,
        lease: &str,
        desc: &OciDescriptor,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        match self {
            Blobs::Archive(layout) => {
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
                write_content(
                    rt,
                    lease,
                    desc,
                    labels,
                    futures::stream::iter([data]).boxed(),
                )
                .await
            }
            Blobs::Registry(fetch) => fetch.write(rt, lease, desc, labels).await,
        }
    }
}

/// Stores one image from `blobs` as `name`: its layers, config and manifest (and the index
/// it was picked from, if any) in the content store with the labels containerd's garbage
/// collector follows, the layers unpacked into the snapshotter, then the image record
/// pointing at the index or the manifest.
pub(super) async fn store(
    rt: &ContainerdRuntime,
    lease: &str,
    blobs: &Blobs<'_>,
    name: &str,
    index: Option<&OciDescriptor>,
    manifest_desc: &OciDescriptor,
) -> Result<Image> {
    let data = blobs.bytes(manifest_desc).await?;
    let manifest: OciManifest = blobs.parse(&data, manifest_desc, "manifest")?;
    let data = blobs.bytes(&manifest.config).await?;
    let config: OciConfig = blobs.parse(&data, &manifest.config, "image config")?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(Error::Backend {
            context: format!(
                "image config of {name} lists {} diff ids for {} layers",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            ),
            source: None,
        });
    }
    let chains = chain_ids(&config.rootfs.diff_ids);
    for (layer, diff) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        let labels = [("containerd.io/uncompressed".to_string(), diff.clone())];
        blobs.write(rt, lease, layer, labels.into()).await?;
    }
    let mut config_labels = HashMap::new();
    if let Some(top) = chains.last() {
        config_labels.insert(
            format!("containerd.io/gc.ref.snapshot.{}", rt.snapshotter),
            top.clone(),
        );
    }
    blobs
        .write(rt, lease, &manifest.config, config_labels)
        .await?;
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
    blobs
        .write(rt, lease, manifest_desc, manifest_labels)
        .await?;
    if let Some(index) = index {
        // Only this platform's manifest is fetched; the index keeps that one alive.
        let labels = HashMap::from([(
            "containerd.io/gc.ref.content.m.0".to_string(),
            manifest_desc.digest.clone(),
        )]);
        blobs.write(rt, lease, index, labels).await?;
    }
    unpack(
        rt,
        lease,
        &manifest.layers,
        &config.rootfs.diff_ids,
        &chains,
    )
    .await?;
    let target = index.unwrap_or(manifest_desc);
    put_image(rt, name, target).await?;
    image_record(rt, name, to_api(target)).await
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

/// Writes one blob, streamed as `chunks`, into containerd's content store (which checks its
/// digest and size on commit); one already there is kept as is.
pub(super) async fn write_content(
    rt: &ContainerdRuntime,
    lease: &str,
    desc: &OciDescriptor,
    labels: HashMap<String, String>,
    chunks: futures::stream::BoxStream<'static, Bytes>,
) -> Result<()> {
    let messages = write_requests(
        format!("kybernetes-{}", desc.digest),
        desc.digest.clone(),
        desc.size,
        labels,
        chunks,
    );
    // The messages go through a channel: tonic's client-streaming future over a boxed
    // stream trips rustc's Send inference for the async trait methods above it.
    let (mut tx, rx) = futures::channel::mpsc::channel::<WriteContentRequest>(4);
    let request = rt.request(rx, Some(lease))?;
    let feed = async move {
        let mut messages = messages;
        while let Some(m) = messages.next().await {
            if tx.send(m).await.is_err() {
                break;
            }
        }
    };
    let mut client = ContentClient::new(rt.channel.clone());
    let (written, ()) = futures::join!(client.write(request), feed);
    match written {
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

/// The messages of a content write: the chunks at their offsets, then the commit. (A plain
/// function, so the stream's closures borrow nothing of the async caller.)
fn write_requests(
    reference: String,
    expected: String,
    total: i64,
    labels: HashMap<String, String>,
    chunks: futures::stream::BoxStream<'static, Bytes>,
) -> futures::stream::BoxStream<'static, WriteContentRequest> {
    // Registry responses come in whatever pieces the connection gives; containerd takes
    // messages up to 16 MiB, so big pieces are split.
    let pieces = chunks.flat_map(|data| {
        let mut out = Vec::with_capacity(data.len() / CHUNK + 1);
        let mut offset = 0;
        while offset < data.len() {
            let end = (offset + CHUNK).min(data.len());
            out.push(data.slice(offset..end));
            offset = end;
        }
        futures::stream::iter(out)
    });
    let (write_ref, write_expected) = (reference.clone(), expected.clone());
    let mut offset = 0i64;
    let writes = pieces.map(move |data| {
        let at = offset;
        offset += data.len() as i64;
        WriteContentRequest {
            action: WriteAction::Write as i32,
            r#ref: write_ref.clone(),
            total,
            expected: write_expected.clone(),
            offset: at,
            data: data.to_vec(),
            labels: HashMap::new(),
        }
    });
    let commit = WriteContentRequest {
        action: WriteAction::Commit as i32,
        r#ref: reference,
        total,
        expected,
        offset: total,
        data: Vec::new(),
        labels,
    };
    writes.chain(futures::stream::iter([commit])).boxed()
}

/// Whether blob `digest` is in containerd's content store already.
pub(super) async fn has_content(rt: &ContainerdRuntime, digest: &str) -> Result<bool> {
    let info = ContentClient::new(rt.channel.clone())
        .info(rt.request(
            api::InfoRequest {
                digest: digest.to_string(),
            },
            None,
        )?)
        .await;
    match info {
        Ok(_) => Ok(true),
        Err(s) if is_not_found(&s) => Ok(false),
        Err(s) => Err(grpc(format!("look up blob {digest}"), s)),
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
                    diff: Some(to_api(layer)),
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
        target: Some(to_api(manifest)),
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
        manifest_desc = super::registry::for_this_platform(&index.manifests)
            .map(to_api)
            .ok_or_else(|| Error::Backend {
                context: format!("image index of {name} lists no manifest for this platform"),
                source: None,
            })?;
    }
    let manifest: OciManifest =
        serde_json::from_slice(&read_blob(rt, &manifest_desc.digest).await?)
            .map_err(|e| backend(format!("manifest of {name}"), e))?;
    let size = manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<i64>();
    let config: UserConfig = serde_json::from_slice(&read_blob(rt, &manifest.config.digest).await?)
        .map_err(|e| backend(format!("image config of {name}"), e))?;
    let user = config
        .config
        .as_ref()
        .and_then(|c| c.user.as_deref())
        .unwrap_or("");
    Ok(crate::oci::layout::image_record(
        name,
        &manifest_desc.digest,
        manifest.config.digest,
        size,
        user,
    ))
}

/// The part of an image config [`image_record`] reports.
#[derive(Debug, Deserialize)]
struct UserConfig {
    #[serde(default)]
    config: Option<super::spec::ImageProcess>,
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
