//! A pod network namespace for sandboxes the `Network` gave none (`LocalNetwork`): a fresh
//! namespace with loopback up, bind-mounted on a file under the runtime's root so that it
//! outlives the thread that made it and every container of the pod can join it. And work
//! done inside a pod's namespace (probes, port-forward) on a thread of its own.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use super::backend;
use crate::{Error, Result};

/// Creates a network namespace bound at `path`, with `lo` up.
pub(crate) async fn create(path: PathBuf) -> Result<PathBuf> {
    let target = path.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Namespaces belong to threads: a thread of its own enters the new one and ends.
    std::thread::Builder::new()
        .name("kyb-netns".into())
        .spawn(move || {
            // The receiver is gone only if the caller was cancelled; nothing to report then.
            let _ = tx.send(create_here(&target));
        })
        .map_err(|e| backend("spawning a thread to create a network namespace", e))?;
    let made = rx
        .await
        .map_err(|e| backend("the network namespace thread died", e))?;
    if made.is_err() {
        remove(&path);
    }
    made.map(|()| path)
}

fn create_here(target: &Path) -> Result<()> {
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| backend(format!("creating {}", dir.display()), e))?;
    }
    File::create(target).map_err(|e| backend(format!("creating {}", target.display()), e))?;
    nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|e| {
        backend(
            "unsharing a network namespace (needs root: CAP_SYS_ADMIN)",
            e,
        )
    })?;
    nix::mount::mount(
        Some("/proc/thread-self/ns/net"),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        backend(
            format!("bind-mounting a network namespace on {}", target.display()),
            e,
        )
    })?;
    // This thread is in the new namespace, so a netlink socket opened here talks to it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| backend("building a runtime for netlink", e))?;
    runtime.block_on(async {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|e| backend("opening a netlink socket", e))?;
        tokio::spawn(connection);
        // A fresh namespace holds only `lo`, index 1.
        handle
            .link()
            .set(rtnetlink::LinkUnspec::new_with_index(1).up().build())
            .execute()
            .await
            .map_err(|e| backend("setting lo up in a pod network namespace", e))
    })
}

/// Unmounts and removes the namespace at `path`; one already gone is fine.
pub(crate) fn remove(path: &Path) {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            tracing::warn!(netns = %path.display(), error = %e, "unmounting a pod network namespace failed")
        }
    }
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(netns = %path.display(), error = %e, "removing a pod network namespace file failed");
    }
}

/// Runs `work` on a thread of its own that first enters the network namespace at `path`: a
/// namespace belongs to a thread, and a socket to the namespace it was opened in, so the
/// process's own threads never change namespace while what `work` opens stays in the pod's.
pub(crate) async fn run_in<T: Send + 'static>(
    path: PathBuf,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("kyb-in-netns".into())
        .spawn(move || {
            let entered = File::open(&path).map_err(|e| e.to_string()).and_then(|f| {
                nix::sched::setns(f, CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())
            });
            let done = match entered {
                Ok(()) => Ok(work()),
                Err(e) => Err(Error::Backend {
                    context: format!(
                        "entering the pod's network namespace {}: {e}",
                        path.display()
                    ),
                    source: None,
                }),
            };
            // The receiver is gone only if the caller was cancelled; nothing to report then.
            let _ = tx.send(done);
        })
        .map_err(|e| backend("spawning a thread to enter a network namespace", e))?;
    rx.await
        .map_err(|e| backend("the network namespace thread died", e))?
}

/// A TCP connection to `127.0.0.1:port` inside the network namespace at `path` (a socket
/// stays in the namespace it was opened in, so only the connect needs the namespace).
pub(crate) async fn connect(path: PathBuf, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let stream = run_in(path, move || {
        std::net::TcpStream::connect(("127.0.0.1", port))
    })
    .await
    .map_err(std::io::Error::other)??;
    stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(stream)
}
