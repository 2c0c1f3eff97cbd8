//! The runtimes the node-agent behaviour suite runs on. A test says what each container does
//! ([`Act`]); a [`Backend`] makes that true: the fake through a [`ContainerScript`], the
//! process runtime through a `/bin/sh` command (and `busybox httpd` to serve HTTP), and
//! (feature `containerd`) a containerd daemon per harness running the same commands in a
//! busybox image.

use std::sync::Arc;
use std::time::Duration;

use kybernetes_runtime::fake::{ContainerScript, ProbeScript, PullFailure};
use kybernetes_runtime::process::ProcessRuntime;
use kybernetes_runtime::{ExecRequest, Runtime};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use super::{Harness, harness_with};

/// The static busybox the process backend serves HTTP with (scripts/test installs
/// `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";

/// What a test container does.
#[derive(Clone, Copy, Debug)]
pub enum Act {
    /// Runs until stopped; exits on SIGTERM.
    Forever,
    /// Writes `line` to stdout, then exits with `code` after `after`.
    LogThenExit {
        line: &'static str,
        after: Duration,
        code: i32,
    },
    /// On SIGTERM writes `terminating` and exits 0.
    TrapTerm,
    /// Ignores SIGTERM (only SIGKILL ends it).
    IgnoreTerm,
    /// `cat healthy` succeeds for `healthy_for` after each start, then fails.
    HealthyFor(Duration),
    /// Serves HTTP 200 on `GET /` at `port` from `after` on.
    ServeHttpAfter { after: Duration, port: u16 },
    /// Its command, [`MISSING_COMMAND`], does not exist.
    CommandNotFound,
}

/// The command of [`Act::CommandNotFound`].
pub const MISSING_COMMAND: &str = "/bin/nope";

/// A runtime the suite runs on.
pub trait Backend {
    /// A harness whose agents drive this runtime.
    fn harness() -> impl std::future::Future<Output = Harness>;
    /// The spec of container `name` doing `act` (scripting the runtime if it needs it).
    fn container(h: &Harness, name: &str, act: Act) -> Value;
}

/// A runtime with images that may be absent and volumes mounted into its containers (not
/// the process runtime's host mode, which runs any image and sees the host's files).
pub trait Isolated: Backend {
    /// An image that cannot be pulled.
    fn missing_image(h: &Harness) -> &'static str;
    /// The content of `path` as container `id` sees it, if it is a file there.
    fn read_file(h: &Harness, id: &str, path: &str) -> impl Future<Output = Option<String>>;
}

/// The image [`Isolated::missing_image`] names.
const MISSING_IMAGE: &str = "registry.invalid/nothing:1";

/// [`FakeRuntime`](kybernetes_runtime::FakeRuntime): scripted containers.
pub struct Fake;

impl Backend for Fake {
    async fn harness() -> Harness {
        super::harness().await
    }

    fn container(h: &Harness, name: &str, act: Act) -> Value {
        let script = match act {
            Act::Forever => ContainerScript::new(),
            Act::LogThenExit { line, after, code } => ContainerScript::new()
                .log_on_start(line)
                .exit_after(after, code),
            Act::TrapTerm => ContainerScript::new()
                .log_on_term("terminating")
                .term_exit_code(0),
            Act::IgnoreTerm => ContainerScript::new().ignore_term(),
            Act::HealthyFor(d) => ContainerScript::new().liveness(ProbeScript::fail_after(d)),
            Act::ServeHttpAfter { after, .. } => {
                ContainerScript::new().readiness(ProbeScript::pass_after(after))
            }
            Act::CommandNotFound => ContainerScript::new().fail_start(format!(
                "exec: \"{MISSING_COMMAND}\": stat {MISSING_COMMAND}: no such file or directory"
            )),
        };
        h.fake.script_container(name, script);
        json!({ "name": name, "image": "busybox:1.36" })
    }
}

/// [`ProcessRuntime`] in host mode: real processes.
pub struct Processes;

impl Backend for Processes {
    async fn harness() -> Harness {
        harness_with(|clock, _| Arc::new(ProcessRuntime::builder().clock(clock).build())).await
    }

    fn container(_: &Harness, name: &str, act: Act) -> Value {
        shell_container(name, act)
    }
}

/// [`ProcessRuntime`] in isolated mode (root): every container under runc in its own
/// namespaces and the pod's network namespace, on the test busybox image imported as
/// `busybox:1.36`.
pub struct IsolatedProcesses;

impl Backend for IsolatedProcesses {
    async fn harness() -> Harness {
        assert!(
            rustix::process::geteuid().is_root(),
            "isolated mode needs root (scripts/test runs the tests as root)"
        );
        let h = harness_with(|clock, _| {
            Arc::new(ProcessRuntime::builder().isolated().clock(clock).build())
        })
        .await;
        h.runtime
            .import_image(super::busybox_support::busybox_image("busybox:1.36"))
            .await
            .expect("import busybox");
        h
    }

    fn container(_: &Harness, name: &str, act: Act) -> Value {
        shell_container(name, act)
    }
}

/// Container `name` doing `act` through `/bin/sh -c` and busybox's applets (`httpd` to
/// serve), which the host and the test image both have at the same paths.
fn shell_container(name: &str, act: Act) -> Value {
    // A trap, not the default action: as a container's init (PID 1) the shell would
    // ignore TERM without one.
    let forever = "trap 'exit 143' TERM; while true; do sleep 0.1; done";
    let loop_only = "while true; do sleep 0.1; done";
    let script = match act {
        Act::Forever => forever.to_string(),
        Act::LogThenExit { line, after, code } => {
            format!("echo {line}; sleep {}; exit {code}", after.as_secs_f64())
        }
        Act::TrapTerm => format!("trap 'echo terminating; exit 0' TERM; {loop_only}"),
        Act::IgnoreTerm => format!("trap '' TERM; {loop_only}"),
        Act::HealthyFor(d) => format!(
            "touch healthy; sleep {}; rm -f healthy; {forever}",
            d.as_secs_f64()
        ),
        Act::ServeHttpAfter { after, port } => {
            assert!(
                std::path::Path::new(BUSYBOX).exists(),
                "{BUSYBOX} is missing: install busybox-static (scripts/test does)"
            );
            format!(
                "sleep {}; echo ok > index.html; exec {BUSYBOX} httpd -f -p 127.0.0.1:{port} -h .",
                after.as_secs_f64()
            )
        }
        Act::CommandNotFound => {
            return json!({ "name": name, "image": "busybox:1.36", "command": [MISSING_COMMAND] });
        }
    };
    json!({ "name": name, "image": "busybox:1.36", "command": ["/bin/sh", "-c", script] })
}

impl Isolated for Fake {
    fn missing_image(h: &Harness) -> &'static str {
        h.fake.fail_image_pull(MISSING_IMAGE, PullFailure::NotFound);
        MISSING_IMAGE
    }

    /// The file under the host directory the agent mounted at `path`'s volume.
    async fn read_file(h: &Harness, id: &str, path: &str) -> Option<String> {
        let config = h.fake.container_config(id)?;
        let path = std::path::Path::new(path);
        let mount = config
            .mounts
            .iter()
            .filter(|m| path.starts_with(&m.container_path))
            .max_by_key(|m| m.container_path.components().count())?;
        let rest = path.strip_prefix(&mount.container_path).ok()?;
        std::fs::read_to_string(mount.host_path.join(rest)).ok()
    }
}

/// Runs `cmd` in container `id`; its stdout and exit code.
pub async fn exec_output(runtime: &dyn Runtime, id: &str, cmd: &[&str]) -> (String, i32) {
    let request = ExecRequest {
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        stdout: true,
        ..Default::default()
    };
    let mut session = runtime.exec(id, request).await.expect("exec");
    let mut out = String::new();
    session
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .await
        .expect("read");
    (out, session.exit.await.expect("exit code"))
}

/// [`ContainerdRuntime`](kybernetes_runtime::containerd::ContainerdRuntime) on a daemon of
/// the harness's own, with the test busybox imported as `busybox:1.36`.
#[cfg(feature = "containerd")]
pub struct Containerd;

#[cfg(feature = "containerd")]
impl Backend for Containerd {
    async fn harness() -> Harness {
        use super::containerd_support::{Containerd as Daemon, busybox_image};
        let daemon = Daemon::start().await;
        let mut h = super::harness().await;
        let runtime = kybernetes_runtime::containerd::ContainerdRuntime::builder()
            .snapshotter(daemon.snapshotter)
            .clock(h.clock.clone())
            .connect(daemon.socket())
            .await
            .expect("connect to containerd");
        runtime
            .import_image(busybox_image("busybox:1.36"))
            .await
            .expect("import busybox");
        h.runtime = Arc::new(runtime);
        h.keep.push(Box::new(daemon));
        h
    }

    fn container(_: &Harness, name: &str, act: Act) -> Value {
        shell_container(name, act)
    }
}

#[cfg(feature = "containerd")]
impl Isolated for Containerd {
    fn missing_image(_: &Harness) -> &'static str {
        MISSING_IMAGE
    }

    async fn read_file(h: &Harness, id: &str, path: &str) -> Option<String> {
        let (out, code) = exec_output(h.runtime.as_ref(), id, &["cat", path]).await;
        (code == 0).then_some(out)
    }
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}
