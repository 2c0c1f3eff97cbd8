//! A real OCI distribution registry on loopback for pull tests: Debian's `docker-registry`
//! (distribution 2.8, which `scripts/test` installs) serving from a temp dir on a free
//! 127.0.0.1 port, optionally behind htpasswd basic auth. A test fails, not skips, when it
//! is missing. Images are pushed with the same registry client the runtime pulls with.

#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

/// The user and password of a registry started with [`Registry::start_with_auth`].
pub const USER: &str = "puller";
pub const PASSWORD: &str = "s3cret";
/// bcrypt (cost 4, to keep each checked request cheap) of [`PASSWORD`], as htpasswd files hold.
const PASSWORD_BCRYPT: &str = "$2b$04$Kw.L5wYi.Iq6r9SCVSbpeuBXyZAMdP/5SxYO4acJzHOIg5fahKctm";

/// A `docker-registry serve` process, killed on drop.
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`, the registry part of image references.
    pub host: String,
    auth: bool,
}

impl Registry {
    /// An open registry (anonymous pulls and pushes).
    pub async fn start() -> Registry {
        Registry::spawn(false).await
    }

    /// A registry that answers only requests with [`USER`] and [`PASSWORD`].
    pub async fn start_with_auth() -> Registry {
        Registry::spawn(true).await
    }

    async fn spawn(auth: bool) -> Registry {
        let binary = super::support::which("docker-registry")
            .expect("docker-registry is not installed (apt-get install docker-registry)");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            listener.local_addr().expect("addr").port()
        };
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {data:?}\n\
             http:\n  addr: {host}\n",
            data = dir.path().join("data"),
        );
        if auth {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{USER}:{PASSWORD_BCRYPT}\n")).expect("htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: kybernetes-test\n    path: {htpasswd:?}\n"
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut registry = Registry {
            child,
            dir,
            host,
            auth,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = registry.child.try_wait().expect("wait for registry") {
                panic!("docker-registry exited with {status}: {}", registry.log());
            }
            if registry.answers() {
                return registry;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer within 60 s: {}",
                registry.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether `GET /v2/` gets an HTTP answer (200, or 401 behind auth).
    fn answers(&self) -> bool {
        use std::io::Write;
        let Ok(mut conn) = std::net::TcpStream::connect(&self.host) else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        if conn
            .write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.host).as_bytes())
            .is_err()
        {
            return false;
        }
        let mut head = [0u8; 12];
        conn.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn client(&self) -> (Client, RegistryAuth) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(vec![self.host.clone()]),
            ..ClientConfig::default()
        });
        let auth = if self.auth {
            RegistryAuth::Basic(USER.into(), PASSWORD.into())
        } else {
            RegistryAuth::Anonymous
        };
        (client, auth)
    }

    /// Pushes the image of an OCI image-layout tarball (as `busybox_image` builds) as
    /// `HOST/repo_tag`; with `other_arch`, as an index whose linux/amd64 entry is that image
    /// and whose second entry is a copy configured for `other_arch`. Returns the config
    /// digest of the amd64 image (its image id).
    pub async fn push(&self, repo_tag: &str, tarball: &[u8], other_arch: Option<&str>) -> String {
        let reference: Reference = format!("{}/{repo_tag}", self.host)
            .parse()
            .expect("reference");
        let (client, auth) = self.client();
        client.store_auth_if_needed(&self.host, &auth).await;
        let blobs = layout_blobs(tarball);
        let index: serde_json::Value =
            serde_json::from_slice(&blobs["index.json"]).expect("index.json");
        let manifest_digest = index["manifests"][0]["digest"]
            .as_str()
            .expect("manifest digest")
            .to_string();
        let manifest_bytes = &blobs[&manifest_digest];
        let manifest: serde_json::Value = serde_json::from_slice(manifest_bytes).expect("manifest");
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .expect("config")
            .to_string();
        for layer in manifest["layers"].as_array().expect("layers") {
            let digest = layer["digest"].as_str().expect("layer digest");
            push_blob(&client, &reference, &blobs[digest], digest).await;
        }
        push_blob(&client, &reference, &blobs[&config_digest], &config_digest).await;
        let Some(arch) = other_arch else {
            let typed: OciManifest = serde_json::from_slice(manifest_bytes).expect("typed");
            client
                .push_manifest(&reference, &typed)
                .await
                .expect("push manifest");
            return config_digest;
        };
        // The other platform: the same layer under a config that says `arch`.
        let mut config: serde_json::Value =
            serde_json::from_slice(&blobs[&config_digest]).expect("config");
        config["architecture"] = arch.into();
        let other_config = serde_json::to_vec(&config).expect("config json");
        let other_config_digest = format!("sha256:{}", super::support::sha256_hex(&other_config));
        push_blob(&client, &reference, &other_config, &other_config_digest).await;
        let mut other = manifest.clone();
        other["config"]["digest"] = other_config_digest.clone().into();
        other["config"]["size"] = other_config.len().into();
        let mut entries = Vec::new();
        for (m, arch) in [(&manifest, "amd64"), (&other, arch)] {
            let typed: OciManifest = serde_json::from_value(m.clone()).expect("typed");
            // Pushed by a tag of its own, then read back for the digest and size the
            // registry holds (the client's serialization is its own).
            let by_tag: Reference = format!("{}/{}:{arch}", self.host, reference.repository())
                .parse()
                .expect("reference");
            client
                .push_manifest(&by_tag, &typed)
                .await
                .expect("push platform manifest");
            let (body, digest) = client
                .pull_manifest_raw(
                    &by_tag,
                    &auth,
                    &["application/vnd.oci.image.manifest.v1+json"],
                )
                .await
                .expect("read back platform manifest");
            entries.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest, "size": body.len(),
                "platform": {"os": "linux", "architecture": arch},
            }));
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        });
        let typed: OciManifest = serde_json::from_value(index).expect("typed index");
        client
            .push_manifest(&reference, &typed)
            .await
            .expect("push index");
        config_digest
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Err(e) = self.child.kill() {
            eprintln!("killing docker-registry: {e}");
        }
        let _ = self.child.wait();
    }
}

async fn push_blob(client: &Client, reference: &Reference, data: &[u8], digest: &str) {
    client
        .push_blob(reference, Bytes::copy_from_slice(data), digest)
        .await
        .unwrap_or_else(|e| panic!("push blob {digest}: {e}"));
}

/// The files of an OCI image-layout tarball: `index.json` by name, blobs by digest.
fn layout_blobs(tarball: &[u8]) -> std::collections::HashMap<String, Vec<u8>> {
    let mut out = std::collections::HashMap::new();
    let mut archive = tar::Archive::new(tarball);
    for entry in archive.entries().expect("tar") {
        let mut entry = entry.expect("tar entry");
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read entry");
        let key = match path.strip_prefix("blobs/sha256/") {
            Some(hex) => format!("sha256:{hex}"),
            None => path,
        };
        out.insert(key, data);
    }
    out
}
