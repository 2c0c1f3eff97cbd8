//! A containerd daemon for tests and a busybox OCI image to import into it, shared by every
//! test binary that runs ContainerdRuntime (`runtime/tests`, `node/tests`, the repo's
//! whole-cluster `tests/`), which include this file with `#[path]`.
//!
//! Each daemon runs under its own temp dir with its own socket (Debian's `containerd` and
//! `runc`, which `scripts/test` installs), so tests never touch a system containerd. A test
//! fails, not skips, when containerd is missing.

#![allow(dead_code)]

// Relative to this file's directory, whoever includes it.
#[path = "busybox.rs"]
mod busybox;
pub use busybox::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
