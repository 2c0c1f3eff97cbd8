//! Pulling images from OCI distribution registries, client-side (containerd 1.6 has no
//! transfer service): the manifest (from an index or manifest list, the one for this
//! machine's platform), then the config and layers, streamed into containerd's content store
//! and unpacked by the same code an archive import uses.
//!
//! References resolve as containerd's do: `busybox` is `docker.io/library/busybox:latest`;
//! a digest pins the content. Registries are asked over HTTPS, except loopback ones
//! (`localhost`, `127.0.0.0/8`, `[::1]`), which containerd also lets speak plain HTTP.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tracing::{Instrument, debug, info_span};

use super::ContainerdRuntime;
use super::images::{self, Blobs, INDEX_MEDIA_TYPES, OciDescriptor, OciIndex};
use crate::image::{Image, normalize_reference};
use crate::pull_auth::PullAuth;
use crate::{Error, Result};

/// The manifest media types a pull accepts: OCI and Docker v2 schema 2, images and indexes.
const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1";

/// How long connecting to a registry, and each read from it, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Pulls `name` from its registry with the credentials `auth` has for it, and stores it as
/// an import does.
pub(super) async fn pull(rt: &ContainerdRuntime, name: &str, auth: &PullAuth) -> Result<Image> {
    let reference_name = normalize_reference(name);
    let reference: Reference = reference_name.parse().map_err(|e| Error::ImagePull {
        image: name.to_string(),
        message: format!("{reference_name:?} is not a valid image reference: {e}"),
        source: None,
    })?;
    let started = Instant::now();
    let fetch = Fetch::new(name, reference, auth)?;
    let span = info_span!("containerd_pull", image = %reference_name);
    let (index, manifest) = fetch.resolve().instrument(span.clone()).await?;
    let lease = images::create_lease(rt, "pull").await?;
    let blobs = Blobs::Registry(&fetch);
    let stored = images::store(
        rt,
        &lease,
        &blobs,
        &reference_name,
        index.as_ref(),
        &manifest,
    )
    .instrument(span)
    .await;
    images::release_lease(rt, &lease).await;
    let image = stored?;
    debug!(image = %reference_name, took = ?started.elapsed(), size = image.size_bytes, "pulled");
    Ok(image)
}

/// The index entry for this machine's platform (`linux` and its architecture, in Go's
/// names as image indexes spell them); an index of one entry without a platform is that one.
pub(super) fn for_this_platform(manifests: &[OciDescriptor]) -> Option<&OciDescriptor> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    manifests
        .iter()
        .find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .or_else(|| match manifests {
            [only] if only.platform.is_none() => Some(only),
            _ => None,
        })
}

/// One pull's registry client and what it fetched so far.
pub(super) struct Fetch {
    /// The image as asked for, for error messages.
    image: String,
    reference: Reference,
    client: Client,
    auth: RegistryAuth,
    anonymous: bool,
    /// Manifests, the index and the config, kept to be written after they were read.
    fetched: Mutex<HashMap<String, Bytes>>,
}

impl Fetch {
    fn new(image: &str, reference: Reference, auth: &PullAuth) -> Result<Fetch> {
        // The registry client's TLS takes the process's rustls provider; ring is the one the
        // rest of this project uses. Installing fails only when one is installed already,
        // which is then the one used: nothing to do.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let registry = reference.resolve_registry().to_string();
        let protocol = if is_loopback(&registry) {
            ClientProtocol::HttpsExcept(vec![registry])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| Error::ImagePull {
            image: image.to_string(),
            message: format!("cannot set up the registry client: {e}"),
            source: Some(Box::new(e)),
        })?;
        let credential = auth.for_reference(&reference.whole());
        let (auth, anonymous) = match credential {
            Some(c) => (
                RegistryAuth::Basic(c.username.clone(), c.password.clone()),
                false,
            ),
            None => (RegistryAuth::Anonymous, true),
        };
        Ok(Fetch {
            image: image.to_string(),
            reference,
            client,
            auth,
            anonymous,
            fetched: Mutex::new(HashMap::new()),
        })
    }

    fn cached(&self, digest: &str) -> Option<Bytes> {
        self.fetched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .cloned()
    }

    fn keep(&self, digest: &str, data: Bytes) {
        self.fetched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest.to_string(), data);
    }

    /// The manifest `reference` names, with a descriptor of it.
    async fn manifest(&self, reference: &Reference) -> Result<(Bytes, OciDescriptor)> {
        let (body, _) = self
            .client
            .pull_manifest_raw(reference, &self.auth, &MANIFEST_MEDIA_TYPES)
            .await
            .map_err(|e| self.error(e))?;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Kind {
            #[serde(default)]
            media_type: Option<String>,
            #[serde(default)]
            manifests: Option<serde_json::Value>,
        }
        let kind: Kind = serde_json::from_slice(&body)
            .map_err(|e| self.invalid(format!("the manifest does not parse: {e}")))?;
        let media_type = match (kind.media_type, kind.manifests) {
            (Some(t), _) => t,
            // OCI makes mediaType optional; an index is told by its manifests.
            (None, Some(_)) => INDEX_MEDIA_TYPES[0].to_string(),
            (None, None) => MANIFEST_MEDIA_TYPES[0].to_string(),
        };
        if media_type.starts_with(DOCKER_SCHEMA1) {
            return Err(self.invalid(
                "it is a Docker schema 1 manifest, which is deprecated and not supported; \
                 push the image again with a current client"
                    .into(),
            ));
        }
        let desc = OciDescriptor::of(media_type, &body);
        if let Some(want) = reference.digest()
            && want != desc.digest
        {
            return Err(self.invalid(format!(
                "the registry sent a manifest with digest {} for {want}",
                desc.digest
            )));
        }
        self.keep(&desc.digest, body.clone());
        Ok((body, desc))
    }

    /// The index (if the reference names one) and the manifest to pull.
    async fn resolve(&self) -> Result<(Option<OciDescriptor>, OciDescriptor)> {
        let (body, desc) = self.manifest(&self.reference).await?;
        if !INDEX_MEDIA_TYPES.contains(&desc.media_type.as_str()) {
            return Ok((None, desc));
        }
        let index: OciIndex = serde_json::from_slice(&body)
            .map_err(|e| self.invalid(format!("the image index does not parse: {e}")))?;
        let chosen = for_this_platform(&index.manifests).ok_or_else(|| {
            let platforms: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|m| m.platform.as_ref())
                .map(|p| format!("{}/{}", p.os, p.architecture))
                .collect();
            self.invalid(format!(
                "its index has no manifest for linux/{} (it has {})",
                std::env::consts::ARCH,
                platforms.join(", ")
            ))
        })?;
        let by_digest = Reference::with_digest(
            self.reference.registry().to_string(),
            self.reference.repository().to_string(),
            chosen.digest.clone(),
        );
        let (_, manifest) = self.manifest(&by_digest).await?;
        Ok((Some(desc), manifest))
    }

    fn layer(desc: &OciDescriptor) -> oci_client::manifest::OciDescriptor {
        oci_client::manifest::OciDescriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.clone(),
            size: desc.size,
            urls: None,
            annotations: None,
            artifact_type: None,
        }
    }

    /// A small blob (manifest, config), whole.
    pub(super) async fn bytes(&self, desc: &OciDescriptor) -> Result<Bytes> {
        if let Some(data) = self.cached(&desc.digest) {
            return Ok(data);
        }
        let mut out = Vec::new();
        self.client
            .pull_blob(&self.reference, &Self::layer(desc), &mut out)
            .await
            .map_err(|e| self.error(e))?;
        let data = Bytes::from(out);
        self.keep(&desc.digest, data.clone());
        Ok(data)
    }

    /// Writes blob `desc` into containerd's content store, streaming it from the registry
    /// unless it was read already or containerd has it.
    pub(super) async fn write(
        &self,
        rt: &ContainerdRuntime,
        lease: &str,
        desc: &OciDescriptor,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        if let Some(data) = self.cached(&desc.digest) {
            let chunks = futures::stream::iter([data]).boxed();
            return images::write_content(rt, lease, desc, labels, chunks).await;
        }
        if images::has_content(rt, &desc.digest).await? {
            return Ok(());
        }
        let response = self
            .client
            .pull_blob_stream(&self.reference, &Self::layer(desc))
            .await
            .map_err(|e| self.error(e))?;
        // The request stream to containerd carries no errors: a failed read ends it (so the
        // write fails) and is reported from here.
        let failed: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
        let chunks = until_error(response.stream, failed.clone());
        let written = images::write_content(rt, lease, desc, labels, chunks).await;
        if let Some(e) = failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(self.error(OciDistributionError::IoError(e)));
        }
        written
    }

    /// A pull error for content the registry sent that cannot be used.
    pub(super) fn invalid(&self, message: String) -> Error {
        Error::ImagePull {
            image: self.image.clone(),
            message: format!(
                "{} from registry {}: {message}",
                self.reference.whole(),
                self.reference.registry()
            ),
            source: None,
        }
    }

    /// A registry error as a pull error a person can act on.
    fn error(&self, e: OciDistributionError) -> Error {
        let reference = self.reference.whole();
        let registry = self.reference.registry();
        let codes: Vec<&OciErrorCode> = match &e {
            OciDistributionError::RegistryError { envelope, .. } => {
                envelope.errors.iter().map(|x| &x.code).collect()
            }
            _ => Vec::new(),
        };
        let not_found = || {
            format!(
                "{reference} not found: registry {registry} has no such repository, tag or \
                 digest (check the image name)"
            )
        };
        let refused = || {
            let hint = if self.anonymous {
                format!(
                    "no credentials were given for {registry}; add an imagePullSecret \
                     (kubernetes.io/dockerconfigjson) with them to the pod"
                )
            } else {
                format!("check the username and password the imagePullSecret has for {registry}")
            };
            format!("registry {registry} refused to serve {reference} (unauthorized): {hint}")
        };
        let message = match &e {
            OciDistributionError::ImageManifestNotFoundError(_) => not_found(),
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => refused(),
            OciDistributionError::RegistryError { .. }
                if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NotFound
                    )
                }) =>
            {
                not_found()
            }
            OciDistributionError::RegistryError { .. }
                if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied)) =>
            {
                refused()
            }
            OciDistributionError::ServerError { code: 404, .. } => not_found(),
            OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => refused(),
            OciDistributionError::ServerError { code, .. } => {
                format!("registry {registry} answered HTTP {code} for {reference}")
            }
            OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout() => {
                format!(
                    "cannot reach registry {registry} for {reference}: {} (check the registry \
                     name and that this node can reach it)",
                    error_chain(r)
                )
            }
            other => format!(
                "pulling {reference} from {registry}: {}",
                error_chain(other)
            ),
        };
        Error::ImagePull {
            image: self.image.clone(),
            message,
            source: Some(Box::new(e)),
        }
    }
}

/// The chunks of `stream` up to its first error, which goes into `slot`. (A plain function,
/// so the stream's closures borrow nothing of the async caller.)
fn until_error(
    stream: BoxStream<'static, std::io::Result<Bytes>>,
    slot: Arc<Mutex<Option<std::io::Error>>>,
) -> BoxStream<'static, Bytes> {
    futures::stream::unfold(stream, move |mut stream| {
        let slot = slot.clone();
        async move {
            match stream.next().await {
                Some(Ok(data)) => Some((data, stream)),
                Some(Err(e)) => {
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    None
                }
                None => None,
            }
        }
    })
    .boxed()
}

/// An error and its causes on one line: reqwest's own message hides why a connection failed.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// Whether a registry host (`host[:port]`) is on loopback.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_told_apart() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1:41234"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example:5000"));
        assert!(!is_loopback("index.docker.io"));
    }
}
