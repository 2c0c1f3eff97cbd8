//! The runc command lines of isolated mode. Every container runs as a foreground
//! `runc run --keep` child of the runtime: runc passes the child's stdio to the container,
//! forwards signals, and exits with the container's exit code (128 + the signal for a
//! killed one), so the runtime reaps exits as in host mode. `--keep` leaves the stopped
//! container (and its cgroup) for the runtime to read the OOM count before `runc delete`.

use std::path::Path;
use std::process::Stdio;

use tracing::debug;

use super::Isolation;

/// runc's own log in a bundle.
const RUNC_LOG: &str = "runc.log";
/// The container's pid, which runc writes once the container exists.
pub(super) const PID_FILE: &str = "pid";

/// Why runc could not start the container whose bundle is `bundle`, from runc's log: its
/// error, in the words upstream runtimes report (`unable to start container process:
/// exec: "/bin/nope": stat /bin/nope: no such file or directory`).
pub(super) fn start_error(bundle: &Path) -> Option<String> {
    let log = std::fs::read_to_string(bundle.join(RUNC_LOG)).ok()?;
    log.lines().rev().find_map(|line| {
        let entry: serde_json::Value = serde_json::from_str(line).ok()?;
        if entry["level"] != "error" {
            return None;
        }
        let msg = entry["msg"].as_str()?;
        Some(
            msg.strip_prefix("runc run failed: ")
                .unwrap_or(msg)
                .to_string(),
        )
    })
}

impl Isolation {
    fn base(&self) -> Vec<String> {
        vec![
            self.runc.to_string_lossy().into_owned(),
            "--root".into(),
            self.state.to_string_lossy().into_owned(),
        ]
    }

    /// The argv that runs container `id` from the bundle at `bundle`, in the foreground.
    /// runc's own messages go to the bundle's `runc.log` (the container's stderr is the
    /// log pipe), and it writes the container's pid to `pid` once the container exists.
    pub(super) fn run_argv(&self, bundle: &Path, id: &str) -> Vec<String> {
        let mut argv = self.base();
        let path = |name: &str| bundle.join(name).to_string_lossy().into_owned();
        argv.extend([
            "--log".into(),
            path(RUNC_LOG),
            "--log-format".into(),
            "json".into(),
            "run".into(),
            "--keep".into(),
            "--pid-file".into(),
            path(PID_FILE),
            "--bundle".into(),
            path(""),
            id.into(),
        ]);
        argv
    }

    /// The argv before an exec's command: the command then runs in container `id`'s
    /// namespaces and cgroup, with its user, environment and working directory.
    pub(crate) fn exec_argv(&self, id: &str) -> Vec<String> {
        let mut argv = self.base();
        argv.extend(["exec".into(), id.into()]);
        argv
    }

    async fn runc(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        tokio::process::Command::new(&self.runc)
            .arg("--root")
            .arg(&self.state)
            .args(args)
            .stdin(Stdio::null())
            .env_clear()
            .output()
            .await
    }

    /// Sends `signal` (`TERM`, `KILL`) to container `id`'s init. Returns whether runc did;
    /// a container that is not (or no longer, or not yet) running is not an error.
    pub(crate) async fn kill(&self, id: &str, signal: &str) -> bool {
        match self.runc(&["kill", id, signal]).await {
            Ok(out) if out.status.success() => true,
            Ok(out) => {
                debug!(container = id, signal, stderr = %String::from_utf8_lossy(&out.stderr).trim(), "runc kill did not signal");
                false
            }
            Err(e) => {
                tracing::warn!(container = id, error = %e, "running runc kill failed");
                false
            }
        }
    }

    /// Deletes container `id` from runc's state (its cgroup goes too), killing it if it
    /// still runs; one that does not exist is fine.
    pub(crate) async fn delete(&self, id: &str) {
        match self.runc(&["delete", "--force", id]).await {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                if !stderr.contains("does not exist") {
                    tracing::warn!(container = id, stderr = %stderr.trim(), "runc delete failed");
                }
            }
            Err(e) => tracing::warn!(container = id, error = %e, "running runc delete failed"),
        }
    }

    /// [`delete`](Self::delete) without an async runtime, for `Drop`.
    pub(crate) fn delete_blocking(&self, id: &str) {
        let out = std::process::Command::new(&self.runc)
            .arg("--root")
            .arg(&self.state)
            .args(["delete", "--force", id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Err(e) = out {
            debug!(container = id, error = %e, "running runc delete failed");
        }
    }
}
