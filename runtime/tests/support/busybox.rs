//! A busybox OCI image built from Debian's `busybox-static` binary, for every test that runs
//! containers from an image archive (ContainerdRuntime's, and ProcessRuntime's isolated
//! mode). Included with `#[path]`, directly or through `containerd.rs`.

#![allow(dead_code)]

use std::io::Write;

use bytes::Bytes;

/// Hex SHA-256, as OCI digests spell it.
pub fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An OCI image-layout tarball named `name`: one layer with /bin/busybox and the applet
/// symlinks a test uses, its config, manifest and index.
pub fn busybox_image(name: &str) -> Bytes {
    busybox_layout(name, None)
}

/// The users of [`busybox_image_as`]'s `/etc/passwd`: `app` (1234, group 1234, also in
/// `staff`, 50) and `nobody` (65534).
pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234::/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n";
/// The groups of [`busybox_image_as`]'s `/etc/group`.
pub const GROUP: &str = "root:x:0:\nstaff:x:50:app\napp:x:1234:\nnogroup:x:65534:\n";

/// [`busybox_image`] with `/etc/passwd` ([`PASSWD`]), `/etc/group` ([`GROUP`]) and `USER
/// user` in its config.
pub fn busybox_image_as(name: &str, user: &str) -> Bytes {
    busybox_layout(name, Some(user))
}

fn busybox_layout(name: &str, user: Option<&str>) -> Bytes {
    let busybox =
        std::fs::read("/bin/busybox").expect("/bin/busybox (apt-get install busybox-static)");
    let mut layer = tar::Builder::new(Vec::new());
    let mut dir = |path: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        layer
            .append_data(&mut h, path, std::io::empty())
            .expect("layer dir");
    };
    for d in ["bin/", "tmp/", "etc/", "proc/", "sys/", "dev/"] {
        dir(d);
    }
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(busybox.len() as u64);
    h.set_mtime(0);
    layer
        .append_data(&mut h, "bin/busybox", busybox.as_slice())
        .expect("layer busybox");
    for applet in [
        "sh", "cat", "echo", "env", "sleep", "httpd", "ls", "true", "false", "readlink", "pwd",
        "touch", "rm", "mkdir", "id", "grep", "stat",
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(0);
        layer
            .append_link(&mut h, format!("bin/{applet}"), "busybox")
            .expect("layer applet");
    }
    if user.is_some() {
        for (path, text) in [("etc/passwd", PASSWD), ("etc/group", GROUP)] {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(text.len() as u64);
            h.set_mtime(0);
            layer
                .append_data(&mut h, path, text.as_bytes())
                .expect("layer account file");
        }
    }
    let layer = layer.into_inner().expect("layer tar");
    let layer_digest = sha256_hex(&layer);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/", "User": user.unwrap_or("")},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
    })
    .to_string()
    .into_bytes();
    let config_digest = sha256_hex(&config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{config_digest}"), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{layer_digest}"), "size": layer.len()}],
    })
    .to_string()
    .into_bytes();
    let manifest_digest = sha256_hex(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": format!("sha256:{manifest_digest}"), "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": name}}],
    })
    .to_string()
    .into_bytes();
    let mut archive = tar::Builder::new(Vec::new());
    let mut file = |path: String, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        archive
            .append_data(&mut h, path, data)
            .expect("archive entry");
    };
    file("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    file("index.json".into(), &index);
    for (digest, data) in [
        (&layer_digest, &layer),
        (&config_digest, &config),
        (&manifest_digest, &manifest),
    ] {
        file(format!("blobs/sha256/{digest}"), data);
    }
    let mut out = archive.into_inner().expect("archive tar");
    out.flush().expect("flush");
    Bytes::from(out)
}
