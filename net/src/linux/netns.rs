//! Named network namespaces: created, entered and removed without `ip netns`, the way
//! iproute2 does it (a thread unshares its network namespace, which is then bind-mounted
//! under `/run/netns`, so it outlives the thread).
//!
//! Network namespaces belong to threads, not processes, so every step that must happen
//! inside one runs on a short-lived thread of its own: it enters the namespace, does its
//! work and exits, and no thread of the tokio runtime ever changes namespace. A netlink
//! socket belongs to the namespace it was opened in, so [`connect`] opens one there and
//! hands it back to the async world.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use crate::{Error, Result};

/// Where named network namespaces live (iproute2's directory, so `ip netns` sees them).
pub(crate) const NETNS_DIR: &str = "/run/netns";

fn backend(context: String, source: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Backend {
        context,
        source: Some(Box::new(source)),
    }
}

/// Runs `work` on a fresh thread and waits for it without blocking the async runtime.
async fn on_own_thread<T: Send + 'static>(
    what: String,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("kyb-netns".into())
        .spawn(move || {
            // Sockets opened here register with the caller's reactor.
            let _enter = runtime.enter();
            // The receiver only goes away if the caller was cancelled; nothing to report then.
            let _ = tx.send(work());
        })
        .map_err(|e| backend(format!("{what}: spawning a thread"), e))?;
    rx.await
        .map_err(|e| backend(format!("{what}: the thread died"), e))?
}

/// Moves the calling thread into the network namespace at `path`.
pub(crate) fn enter(path: &Path) -> Result<()> {
    let ns = File::open(path)
        .map_err(|e| backend(format!("opening network namespace {}", path.display()), e))?;
    nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
        .map_err(|e| backend(format!("entering network namespace {}", path.display()), e))
}

/// The path of the namespace named `name`.
pub(crate) fn path_of(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Creates the network namespace `name` and returns its path. A namespace of that name
/// left behind is replaced.
pub(crate) async fn create(name: &str) -> Result<PathBuf> {
    let path = path_of(name);
    remove(&path);
    let target = path.clone();
    on_own_thread(format!("creating network namespace {name}"), move || {
        std::fs::create_dir_all(NETNS_DIR)
            .map_err(|e| backend(format!("creating {NETNS_DIR}"), e))?;
        share_netns_dir()?;
        File::create(&target).map_err(|e| backend(format!("creating {}", target.display()), e))?;
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|e| {
            backend(
                "unsharing a network namespace (needs root: CAP_SYS_ADMIN)".into(),
                e,
            )
        })?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            backend(
                format!("bind-mounting the namespace on {}", target.display()),
                e,
            )
        })
    })
    .await
    .inspect_err(|_| remove(&path))?;
    Ok(path)
}

/// Makes [`NETNS_DIR`] a shared mount point of its own before a namespace is mounted in it,
/// as iproute2's `ip netns add` does. Otherwise the first `ip netns add` anyone runs later
/// bind-mounts the directory over itself and hides the namespaces mounted before it: they can
/// then be neither unmounted nor removed through their paths, and teardown leaves them.
fn share_netns_dir() -> Result<()> {
    let share = || {
        nix::mount::mount(
            None::<&str>,
            NETNS_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match share() {
        Ok(()) => return Ok(()),
        // Not a mount point yet: bind it onto itself first.
        Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(backend(format!("making {NETNS_DIR} a shared mount"), e)),
    }
    nix::mount::mount(
        Some(NETNS_DIR),
        NETNS_DIR,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| backend(format!("bind-mounting {NETNS_DIR} onto itself"), e))?;
    share().map_err(|e| backend(format!("making {NETNS_DIR} a shared mount"), e))
}

/// Removes the namespace at `path`: its bind mount and the file under it. The kernel frees
/// the namespace, and every interface in it, once no process and no mount holds it. A
/// namespace that is already gone is fine.
pub(crate) fn remove(path: &Path) {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            tracing::warn!(netns = %path.display(), error = %e, "unmounting a network namespace failed")
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(netns = %path.display(), error = %e, "removing a network namespace file failed")
        }
    }
}

/// The namespaces under [`NETNS_DIR`] whose names start with `prefix`.
pub(crate) fn list(prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// A netlink connection inside the namespace at `path`. The connection task runs on the
/// caller's runtime and ends when the last clone of the handle is dropped.
pub(crate) async fn connect(path: &Path) -> Result<rtnetlink::Handle> {
    let target = path.to_owned();
    let (connection, handle) = on_own_thread(
        format!("opening netlink in {}", path.display()),
        move || {
            enter(&target)?;
            let (connection, handle, _) = rtnetlink::new_connection()
                .map_err(|e| backend("opening a netlink socket".into(), e))?;
            Ok((connection, handle))
        },
    )
    .await?;
    tokio::spawn(connection);
    Ok(handle)
}

/// Writes `value` to the sysctl at `key` (`net/ipv4/ip_forward`) inside the namespace at
/// `path`: `/proc/sys/net` shows the namespace of the thread that opens it.
pub(crate) async fn write_sysctl(
    path: &Path,
    key: &'static str,
    value: &'static str,
) -> Result<()> {
    let target = path.to_owned();
    on_own_thread(format!("setting {key} in {}", path.display()), move || {
        enter(&target)?;
        std::fs::write(Path::new("/proc/sys").join(key), value)
            .map_err(|e| backend(format!("writing /proc/sys/{key}"), e))
    })
    .await
}

/// Opens the namespace file at `path`, for netlink requests that move an interface there.
pub(crate) fn open(path: &Path) -> Result<File> {
    File::open(path)
        .map_err(|e| backend(format!("opening network namespace {}", path.display()), e))
}

/// Runs blocking `work` on a thread of its own inside the namespace at `path` (processes it
/// starts are born there).
pub(crate) async fn in_namespace<T: Send + 'static>(
    what: String,
    path: PathBuf,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    on_own_thread(what, move || {
        enter(&path)?;
        work()
    })
    .await
}
