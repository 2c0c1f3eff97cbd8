//! Scripts: how a fake container behaves (when it exits, how its probes answer, what its
//! commands print) and how image pulls fail.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::port::PortResponder;
use super::usage::{StepStart, UsageScript, UsageStep};
use crate::probe::{ProbeKind, ProbeResult};
use crate::stream::ExecResult;

/// How a fake container behaves. The default runs until stopped, exits on SIGTERM with code
/// 143, passes every probe, runs the fake's built-in commands (`echo`, `cat`, `env`,
/// `sh -c "exit 3"`, see [`FakeRuntime`](super::FakeRuntime)) and answers every other command
/// with exit code 0, ignores what an attach writes to it, and listens on no port.
///
/// A script applies to every attempt of the container it is registered for
/// ([`FakeRuntime::script_container`](super::FakeRuntime::script_container) by container
/// name, [`FakeRuntime::script_image`](super::FakeRuntime::script_image) by image). It is read
/// when the container is created, so registering a new one changes the next attempt.
///
/// ```
/// use std::time::Duration;
/// use kybernetes_runtime::fake::{ContainerScript, ProbeScript};
/// // A container that crashes 5 s after each start:
/// let crashing = ContainerScript::new().crash_after(Duration::from_secs(5));
/// // A server whose liveness probe starts failing after a minute, and that ignores SIGTERM:
/// let stuck = ContainerScript::new()
///     .liveness(ProbeScript::fail_after(Duration::from_secs(60)))
///     .ignore_term();
/// // A server at 200m of CPU that drops to 10m after 10 minutes of running, and one whose
/// // every copy drops to 10m at a cluster-clock time:
/// let busy = ContainerScript::new()
///     .cpu_millicores(200)
///     .usage_after(Duration::from_secs(600), 10, 64 << 20);
/// let at = chrono::Utc::now() + chrono::Duration::minutes(10);
/// let quiet_later = ContainerScript::new().cpu_millicores(200).cpu_millicores_from(at, 10);
/// # let _ = (crashing, stuck, busy, quiet_later);
/// ```
#[derive(Clone, Debug)]
pub struct ContainerScript {
    pub(crate) exit: Option<(Duration, i32)>,
    pub(crate) ignores_term: bool,
    pub(crate) term_exit_code: i32,
    pub(crate) create_error: Option<String>,
    pub(crate) start_error: Option<String>,
    pub(crate) probes: HashMap<ProbeKind, ProbeScript>,
    pub(crate) exec: Vec<(Vec<String>, ExecResult)>,
    pub(crate) usage: UsageScript,
    pub(crate) start_logs: Vec<String>,
    pub(crate) term_logs: Vec<String>,
    pub(crate) echo_stdin: bool,
    pub(crate) ports: HashMap<u16, PortResponder>,
}

impl Default for ContainerScript {
    fn default() -> Self {
        ContainerScript {
            exit: None,
            ignores_term: false,
            term_exit_code: 143,
            create_error: None,
            start_error: None,
            probes: HashMap::new(),
            exec: Vec::new(),
            usage: UsageScript::default(),
            start_logs: Vec::new(),
            term_logs: Vec::new(),
            echo_stdin: false,
            ports: HashMap::new(),
        }
    }
}

impl ContainerScript {
    /// A container that runs until stopped.
    pub fn new() -> Self {
        Self::default()
    }

    /// Exits with `code` `after` each start.
    pub fn exit_after(mut self, after: Duration, code: i32) -> Self {
        self.exit = Some((after, code));
        self
    }

    /// Exits with code 0 `after` each start (a finished job).
    pub fn complete_after(self, after: Duration) -> Self {
        self.exit_after(after, 0)
    }

    /// Exits with code 1 `after` each start (a crash).
    pub fn crash_after(self, after: Duration) -> Self {
        self.exit_after(after, 1)
    }

    /// Runs until stopped (the default; undoes `exit_after`).
    pub fn run_forever(mut self) -> Self {
        self.exit = None;
        self
    }

    /// Ignores SIGTERM: a stop only ends it with SIGKILL once the grace period is over.
    pub fn ignore_term(mut self) -> Self {
        self.ignores_term = true;
        self
    }

    /// The exit code when SIGTERM ends it (default 143, as a process killed by the signal;
    /// 0 for a process that shuts down cleanly).
    pub fn term_exit_code(mut self, code: i32) -> Self {
        self.term_exit_code = code;
        self
    }

    /// `create_container` fails with this message (upstream reports `CreateContainerError`).
    pub fn fail_create(mut self, message: impl Into<String>) -> Self {
        self.create_error = Some(message.into());
        self
    }

    /// `start_container` fails with this message and the container ends `StartError` with
    /// exit code 128, as a real runtime reports a command that is not there.
    pub fn fail_start(mut self, message: impl Into<String>) -> Self {
        self.start_error = Some(message.into());
        self
    }

    /// How the liveness probe answers.
    pub fn liveness(self, probe: ProbeScript) -> Self {
        self.probe(ProbeKind::Liveness, probe)
    }

    /// How the readiness probe answers.
    pub fn readiness(self, probe: ProbeScript) -> Self {
        self.probe(ProbeKind::Readiness, probe)
    }

    /// How the startup probe answers.
    pub fn startup(self, probe: ProbeScript) -> Self {
        self.probe(ProbeKind::Startup, probe)
    }

    /// How probes of `kind` answer (`ProbeKind::Hook` for `httpGet` lifecycle hooks).
    pub fn probe(mut self, kind: ProbeKind, probe: ProbeScript) -> Self {
        self.probes.insert(kind, probe);
        self
    }

    /// What `exec_sync` (and an exec probe running it) returns for exactly `cmd`.
    pub fn on_exec(mut self, cmd: &[&str], result: ExecResult) -> Self {
        self.exec
            .push((cmd.iter().map(|s| s.to_string()).collect(), result));
        self
    }

    /// The memory working set `container_stats` reports from each start (default 16 MiB).
    pub fn memory_bytes(mut self, bytes: u64) -> Self {
        self.usage.memory_bytes = bytes;
        self
    }

    /// The CPU the container uses from each start, in millicores (default 10, 1% of a core):
    /// `container_stats` reports it as the current rate and integrates it into CPU time.
    pub fn cpu_millicores(mut self, millicores: u64) -> Self {
        self.usage.cpu_millicores = millicores;
        self
    }

    /// From `after` each start on, the container uses `cpu_millicores` and `memory_bytes`.
    pub fn usage_after(mut self, after: Duration, cpu_millicores: u64, memory_bytes: u64) -> Self {
        self.usage.steps.push(UsageStep {
            start: StepStart::AfterStart(after),
            cpu_millicores: Some(cpu_millicores),
            memory_bytes: Some(memory_bytes),
        });
        self
    }

    /// From cluster-clock time `at` on, every container of this script uses `cpu_millicores`
    /// (one started later uses it from its start). The clock follows tokio time, so a test
    /// under a paused clock reaches `at` by sleeping.
    pub fn cpu_millicores_from(mut self, at: DateTime<Utc>, cpu_millicores: u64) -> Self {
        self.usage.steps.push(UsageStep {
            start: StepStart::At(at),
            cpu_millicores: Some(cpu_millicores),
            memory_bytes: None,
        });
        self
    }

    /// From cluster-clock time `at` on, every container of this script uses `memory_bytes`.
    pub fn memory_bytes_from(mut self, at: DateTime<Utc>, memory_bytes: u64) -> Self {
        self.usage.steps.push(UsageStep {
            start: StepStart::At(at),
            cpu_millicores: None,
            memory_bytes: Some(memory_bytes),
        });
        self
    }

    /// A line written to stdout when the container starts.
    pub fn log_on_start(mut self, line: impl Into<String>) -> Self {
        self.start_logs.push(line.into());
        self
    }

    /// A line written to stdout when SIGTERM arrives (as a process that traps it and logs
    /// before it exits).
    pub fn log_on_term(mut self, line: impl Into<String>) -> Self {
        self.term_logs.push(line.into());
        self
    }

    /// The main process copies what an attach writes to its stdin to its stdout (as a
    /// container running `cat` would): each line lands in the log and in every attach.
    pub fn echo_stdin(mut self) -> Self {
        self.echo_stdin = true;
        self
    }

    /// Something listens on `port` inside the pod, answering as `responder` says; reached
    /// through port-forward. A port nothing listens on refuses connections.
    ///
    /// ```
    /// use kybernetes_runtime::fake::{ContainerScript, PortResponder};
    /// let web = ContainerScript::new()
    ///     .serve_port(8080, PortResponder::http(200, "hello\n"))
    ///     .serve_port(9000, PortResponder::Echo);
    /// # let _ = web;
    /// ```
    pub fn serve_port(mut self, port: u16, responder: PortResponder) -> Self {
        self.ports.insert(port, responder);
        self
    }

    pub(crate) fn exec_result(&self, cmd: &[String]) -> Option<&ExecResult> {
        self.exec.iter().find(|(c, _)| c == cmd).map(|(_, r)| r)
    }
}

#[derive(Clone, Debug)]
enum Steps {
    Always(bool),
    After {
        delay: Duration,
        before: bool,
        after: bool,
    },
    Sequence(Vec<bool>),
}

/// How one probe of a fake container answers.
///
/// ```
/// use std::time::Duration;
/// use kybernetes_runtime::fake::ProbeScript;
/// let flaky = ProbeScript::sequence([true, false, false, true]); // last answer repeats
/// let warming_up = ProbeScript::pass_after(Duration::from_secs(20));
/// # let _ = (flaky, warming_up);
/// ```
#[derive(Clone, Debug)]
pub struct ProbeScript {
    steps: Steps,
}

impl ProbeScript {
    /// Always passes.
    pub fn pass() -> Self {
        ProbeScript {
            steps: Steps::Always(true),
        }
    }

    /// Always fails.
    pub fn fail() -> Self {
        ProbeScript {
            steps: Steps::Always(false),
        }
    }

    /// Passes until `delay` after the container started, then fails.
    pub fn fail_after(delay: Duration) -> Self {
        ProbeScript {
            steps: Steps::After {
                delay,
                before: true,
                after: false,
            },
        }
    }

    /// Fails until `delay` after the container started, then passes.
    pub fn pass_after(delay: Duration) -> Self {
        ProbeScript {
            steps: Steps::After {
                delay,
                before: false,
                after: true,
            },
        }
    }

    /// Answers with these outcomes in order (`true` passes), then repeats the last one.
    pub fn sequence(outcomes: impl IntoIterator<Item = bool>) -> Self {
        let v: Vec<bool> = outcomes.into_iter().collect();
        if v.is_empty() {
            Self::pass()
        } else {
            ProbeScript {
                steps: Steps::Sequence(v),
            }
        }
    }

    /// The answer to call number `n` (from 0), `running_for` after the container started.
    pub(crate) fn answer(&self, n: usize, running_for: Duration) -> ProbeResult {
        let pass = match &self.steps {
            Steps::Always(p) => *p,
            Steps::After {
                delay,
                before,
                after,
            } => {
                if running_for < *delay {
                    *before
                } else {
                    *after
                }
            }
            Steps::Sequence(v) => v[n.min(v.len() - 1)],
        };
        if pass {
            ProbeResult::Success
        } else {
            ProbeResult::Failure("scripted probe failure".into())
        }
    }
}

/// How a fake image pull fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullFailure {
    /// The registry does not know the image.
    NotFound,
    /// The pull fails with this message (network error, unauthorized…).
    Error(String),
}
