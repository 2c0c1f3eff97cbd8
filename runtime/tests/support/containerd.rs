//! A containerd daemon for tests and a busybox OCI image to import into it, shared by every
//! test binary that runs ContainerdRuntime (`runtime/tests`, `node/tests`, the repo's
//! whole-cluster `tests/`), which include this file with `#[path]`.
//!
//! Each daemon runs under its own temp dir with its own socket (Debian's `containerd` and
//! `runc`, which `scripts/test` installs), so tests never touch a system containerd. A test
//! fails, not skips, when containerd is missing.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kybernetes_runtime::containerd::ContainerdRuntime;

/// A containerd daemon under a temp dir, killed and cleaned up on drop.
pub struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
    /// The snapshotter that works on this machine (overlayfs, else native).
    pub snapshotter: &'static str,
}

impl Containerd {
    /// Starts containerd with the overlayfs snapshotter where overlayfs mounts here, else
    /// the native one, and waits until it answers on its socket.
    pub async fn start() -> Containerd {
        let binary = which("containerd")
            .expect("containerd is not installed (apt-get install containerd runc)");
        which("runc").expect("runc is not installed (apt-get install runc)");
        let dir = tempfile::tempdir().expect("temp dir");
        let snapshotter = if overlay_mounts(dir.path()) {
            "overlayfs"
        } else {
            "native"
        };
        let root = dir.path().join("root");
        let state = dir.path().join("state");
        let socket = dir.path().join("containerd.sock");
        // The CRI plugin is off: this runtime speaks containerd's own services, and CRI
        // would look for CNI and take the kubelet's sockets.
        let config = format!(
            "version = 2\nroot = {root:?}\nstate = {state:?}\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = {socket:?}\n\
             [ttrpc]\n  address = {ttrpc:?}\n\
             [debug]\n  address = \"\"\n\
             [metrics]\n  address = \"\"\n",
            ttrpc = dir.path().join("containerd.ttrpc.sock"),
        );
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config).expect("write containerd config");
        let log = std::fs::File::create(dir.path().join("containerd.log")).expect("log file");
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let mut daemon = Containerd {
            child,
            dir,
            snapshotter,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = daemon.child.try_wait().expect("wait for containerd") {
                panic!("containerd exited with {status}: {}", daemon.log());
            }
            if daemon.socket().exists() && ContainerdRuntime::connect(daemon.socket()).await.is_ok()
            {
                return daemon;
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not answer within 60 s: {}",
                daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    pub async fn runtime(&self) -> ContainerdRuntime {
        ContainerdRuntime::builder()
            .snapshotter(self.snapshotter)
            .connect(self.socket())
            .await
            .expect("connect to containerd")
    }

    /// `ctr` against this daemon, as an oracle of what containerd holds.
    pub fn ctr(&self, args: &[&str]) -> String {
        let out = Command::new("ctr")
            .arg("-a")
            .arg(self.socket())
            .args(["-n", "kybernetes"])
            .args(args)
            .output()
            .expect("run ctr");
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // The tasks of a runtime dropped without a shutdown (a test that failed, a harness
        // that ended with pods running) would outlive the daemon: their shims are made to
        // survive restarts. Delete them first.
        let tasks = Command::new("ctr")
            .arg("-a")
            .arg(self.socket())
            .args(["-n", "kybernetes", "tasks", "ls", "-q"])
            .output();
        if let Ok(out) = tasks {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("ctr")
                    .arg("-a")
                    .arg(self.socket())
                    .args(["-n", "kybernetes", "tasks", "delete", "--force", id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if let Err(e) = self.child.kill() {
            eprintln!("killing containerd: {e}");
        }
        let _ = self.child.wait();
        // Snapshots may still be mounted if a test failed half-way; unmount before the
        // temp dir goes.
        let _ = Command::new("umount")
            .args(["-R", "-l"])
            .arg(self.dir.path().join("root"))
            .stderr(Stdio::null())
            .status();
    }
}

/// `name` on the PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Whether an overlay filesystem mounts under `dir` (not in every sandbox).
pub fn overlay_mounts(dir: &Path) -> bool {
    let base = dir.join("overlay-check");
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir_all(base.join(d)).expect("overlay check dirs");
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        base.join("lower").display(),
        base.join("upper").display(),
        base.join("work").display()
    );
    let mounted = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(base.join("merged"))
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if mounted {
        let _ = Command::new("umount").arg(base.join("merged")).status();
    }
    let _ = std::fs::remove_dir_all(&base);
    mounted
}

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
