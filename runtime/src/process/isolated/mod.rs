//! Isolated mode of [`ProcessRuntime`](crate::process::ProcessRuntime) (root only): each
//! container runs under `runc`, in its own mount, pid, ipc and uts namespaces and its pod's
//! network namespace, with its resources as cgroup limits.
//!
//! runc rather than youki's `libcontainer` crate: Debian ships runc (containerd uses it
//! already, so the machine has it and tests install it), the OCI spec this mode hands it is
//! the one ContainerdRuntime hands containerd (`crate::oci::spec`), so both runtimes run
//! containers the same way, and no fork of the agent ever runs in-process container setup
//! code; libcontainer would add a large tree and a second implementation to trust.
//!
//! Set-up, in the order the kernel needs it, and teardown in reverse:
//! 1. sandbox: the pod's network namespace (the `Network`'s, or a fresh one with `lo` up),
//!    and the pod directory with its `resolv.conf`;
//! 2. container: a bundle (`bundle.rs`) with the root filesystem mounted and `config.json`;
//! 3. start: a foreground `runc run --keep` child (`runc.rs`), which creates the cgroup
//!    `/kybernetes-<root>/<id>` and the namespaces;
//! 4. exit: the OOM count read from the kept cgroup, then `runc delete` (cgroup and state);
//! 5. removal: the bundle (overlay unmounted first); sandbox removal: its own netns;
//! 6. shutdown: every container killed and deleted, the cgroup parent and runc's state
//!    directory removed.

pub(crate) mod bundle;
mod images;
mod runc;
mod service;
mod unpack;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::debug;

pub(crate) use bundle::Bundle;
pub(crate) use images::UnpackedImage;

use crate::oci::{cgroup, netns};
use crate::sandbox::PodSandboxConfig;
use crate::{Error, Result};

/// The pod directory's resolver file, mounted at `/etc/resolv.conf`.
pub(crate) const RESOLV_CONF: &str = "resolv.conf";

/// The runc binary isolated mode runs by default (found on `PATH`).
pub(crate) const DEFAULT_RUNC: &str = "runc";

/// How a container's runc ended.
pub(crate) struct Reaped {
    /// The OOM killer killed a process of the container.
    pub(crate) oom: bool,
    /// runc could not start the container, and said why.
    pub(crate) start_error: Option<String>,
}

/// What isolated mode keeps beside the process runtime's state.
pub(crate) struct Isolation {
    runc: PathBuf,
    /// The runtime's root directory.
    root: PathBuf,
    /// runc's state directory (`--root`).
    state: PathBuf,
    /// The parent of every container's cgroup, relative to each hierarchy's root.
    cgroup_parent: String,
    /// Archives the builder named, imported on the first pull.
    archives: Mutex<Vec<PathBuf>>,
    images: Mutex<Vec<UnpackedImage>>,
}

impl Isolation {
    pub(crate) fn new(root: &Path, runc: PathBuf, archives: Vec<PathBuf>) -> Isolation {
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "root".into());
        Isolation {
            runc,
            root: root.to_path_buf(),
            state: root.join("runc"),
            cgroup_parent: if name.starts_with("kybernetes") {
                format!("/{name}")
            } else {
                format!("/kybernetes-{name}")
            },
            archives: Mutex::new(archives),
            images: Mutex::new(Vec::new()),
        }
    }

    /// runc's state directory: `runc --root <this> list` shows the running containers.
    pub(crate) fn state_dir(&self) -> &Path {
        &self.state
    }

    /// The parent of every container cgroup.
    pub(crate) fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }

    /// Where imported images are unpacked.
    pub(crate) fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    /// Sets up the network side of sandbox `id`: the `Network`'s namespace, or a fresh one
    /// this runtime owns; and the pod's `resolv.conf` in `dir`. Returns the namespace and
    /// whether it is owned.
    pub(crate) async fn sandbox_netns(
        &self,
        id: &str,
        config: &PodSandboxConfig,
        dir: &Path,
    ) -> Result<(PathBuf, bool)> {
        let (path, owned) = match &config.netns_path {
            Some(p) => (p.clone(), false),
            None => (netns::create(self.root.join("netns").join(id)).await?, true),
        };
        if let Some(dns) = &config.dns_config {
            let file = dir.join(RESOLV_CONF);
            if let Err(e) = std::fs::write(&file, dns.resolv_conf()) {
                if owned {
                    netns::remove(&path);
                }
                return Err(Error::Backend {
                    context: format!("write {}", file.display()),
                    source: Some(Box::new(e)),
                });
            }
        }
        Ok((path, owned))
    }

    /// Removes a namespace [`sandbox_netns`](Self::sandbox_netns) made.
    pub(crate) fn remove_netns(&self, path: &Path) {
        netns::remove(path);
    }

    /// After container `id`'s runc exited: whether the OOM killer struck in its cgroup
    /// (read before the cgroup goes) or runc could not start it, then the container
    /// deleted from runc's state.
    pub(crate) async fn reap(&self, id: &str, bundle: &Bundle) -> Reaped {
        let oom = cgroup::oom_killed(&bundle.cgroups_path);
        let start_error = runc::start_error(&bundle.dir);
        self.delete(id).await;
        Reaped { oom, start_error }
    }

    /// Whether runc has created container `bundle`'s container (it wrote the pid).
    pub(crate) fn created(bundle: &Bundle) -> bool {
        bundle.dir.join(runc::PID_FILE).exists()
    }

    /// CPU nanoseconds and working-set bytes of a running container's cgroup.
    pub(crate) fn usage(bundle: &Bundle) -> Result<(u64, u64)> {
        cgroup::usage(Path::new(cgroup::ROOT), &bundle.cgroups_path)
    }

    /// Undoes what is left once every container is reaped: the cgroup parent and runc's
    /// state directory.
    pub(crate) fn teardown(&self) {
        cgroup::remove(&self.cgroup_parent);
        match std::fs::remove_dir_all(&self.state) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                debug!(state = %self.state.display(), error = %e, "removing runc's state failed")
            }
        }
    }
}
