//! The runtimes the node-agent behaviour suite runs on. A test says what each container does
//! ([`Act`]); a [`Backend`] makes that true: the fake through a [`ContainerScript`], the
//! process runtime through a `/bin/sh` command (and `busybox httpd` to serve HTTP).

use std::sync::Arc;
use std::time::Duration;

use kybernetes_runtime::fake::{ContainerScript, ProbeScript};
use kybernetes_runtime::process::ProcessRuntime;
use serde_json::{Value, json};

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
}

/// A runtime the suite runs on.
pub trait Backend {
    /// A harness whose agents drive this runtime.
    fn harness() -> impl std::future::Future<Output = Harness>;
    /// The spec of container `name` doing `act` (scripting the runtime if it needs it).
    fn container(h: &Harness, name: &str, act: Act) -> Value;
}

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
        let forever = "while true; do sleep 0.1; done";
        let script = match act {
            Act::Forever => forever.to_string(),
            Act::LogThenExit { line, after, code } => {
                format!("echo {line}; sleep {}; exit {code}", after.as_secs_f64())
            }
            Act::TrapTerm => format!("trap 'echo terminating; exit 0' TERM; {forever}"),
            Act::IgnoreTerm => format!("trap '' TERM; {forever}"),
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
        };
        json!({ "name": name, "image": "busybox:1.36", "command": ["/bin/sh", "-c", script] })
    }
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}
