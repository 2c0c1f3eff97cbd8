//! Streaming calls: exec (interactive and synchronous), attach, port-forward, logs and stats.

use std::fmt;
use std::pin::Pin;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// The outcome of [`Runtime::exec_sync`](crate::Runtime::exec_sync).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecResult {
    /// The command's exit code.
    pub exit_code: i32,
    /// What it wrote to stdout.
    pub stdout: Bytes,
    /// What it wrote to stderr.
    pub stderr: Bytes,
}

impl ExecResult {
    /// A result with exit code `code` and no output.
    pub fn exit(code: i32) -> Self {
        ExecResult {
            exit_code: code,
            ..Default::default()
        }
    }

    /// A successful result that printed `stdout`.
    pub fn stdout(text: impl Into<Bytes>) -> Self {
        ExecResult {
            exit_code: 0,
            stdout: text.into(),
            ..Default::default()
        }
    }
}

/// An interactive exec (CRI `ExecRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecRequest {
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// Allocate a terminal (stdout and stderr are then one stream).
    pub tty: bool,
    /// Attach stdin.
    pub stdin: bool,
    /// Attach stdout.
    pub stdout: bool,
    /// Attach stderr (ignored with `tty`).
    pub stderr: bool,
}

/// An attach to a container's main process (CRI `AttachRequest`): which of its streams to
/// join. The terminal is the container's own (`tty` in its spec).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttachRequest {
    /// Feed the process's stdin.
    pub stdin: bool,
    /// Receive its stdout (with a terminal: the terminal's output).
    pub stdout: bool,
    /// Receive its stderr (ignored with a terminal).
    pub stderr: bool,
    /// Whether the container has a terminal.
    pub tty: bool,
}

/// One connection to a port inside a pod's network namespace
/// ([`Runtime::port_forward`](crate::Runtime::port_forward)): bytes both ways.
pub trait PortForwardStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> PortForwardStream for T {}

/// A terminal size, for resize messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// A running interactive exec or attach: the streams asked for, a resize channel with a
/// terminal, and the exit code once the command (for attach: the container) ends.
pub struct ExecSession {
    /// Write here to feed the command's stdin (drop it to close stdin).
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    /// The command's stdout (with a terminal: the terminal's output).
    pub stdout: Option<Pin<Box<dyn AsyncRead + Send>>>,
    /// The command's stderr (`None` with a terminal).
    pub stderr: Option<Pin<Box<dyn AsyncRead + Send>>>,
    /// Resize the terminal (only with `tty`).
    pub resize: Option<mpsc::Sender<TerminalSize>>,
    /// Resolves to the exit code when the command ends.
    pub exit: BoxFuture<'static, crate::Result<i32>>,
}

impl fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecSession")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("tty", &self.resize.is_some())
            .finish_non_exhaustive()
    }
}

/// Which output stream a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogStreamKind {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl LogStreamKind {
    /// `stdout` or `stderr`, as the CRI log format writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStreamKind::Stdout => "stdout",
            LogStreamKind::Stderr => "stderr",
        }
    }
}

/// One line of a container's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// When it was written.
    pub time: DateTime<Utc>,
    /// stdout or stderr.
    pub stream: LogStreamKind,
    /// The line, without its trailing newline.
    pub line: String,
}

impl LogLine {
    /// The line in the CRI log file format: `<RFC3339Nano time> <stream> F <line>`.
    ///
    /// ```
    /// use kybernetes_runtime::{LogLine, LogStreamKind};
    /// let t = chrono::DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z").unwrap().to_utc();
    /// let l = LogLine { time: t, stream: LogStreamKind::Stdout, line: "hi".into() };
    /// assert_eq!(l.to_cri_format(), "2024-01-02T03:04:05.000000000Z stdout F hi");
    /// ```
    pub fn to_cri_format(&self) -> String {
        format!(
            "{} {} F {}",
            self.time.format("%Y-%m-%dT%H:%M:%S%.9fZ"),
            self.stream.as_str(),
            self.line
        )
    }
}

/// What [`Runtime::logs`](crate::Runtime::logs) returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep the stream open and send new lines until the container exits.
    pub follow: bool,
    /// Only the last `n` lines written so far.
    pub tail_lines: Option<usize>,
    /// Only lines written at or after this time.
    pub since: Option<DateTime<Utc>>,
}

/// A stream of log lines; with `follow`, it ends when the container exits or is removed.
pub type LogStream = BoxStream<'static, LogLine>;

/// Resource usage of one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerStats {
    /// The container.
    pub container_id: String,
    /// When the sample was taken.
    pub timestamp: DateTime<Utc>,
    /// CPU time used since the container started, in nanoseconds of one core.
    pub cpu_usage_core_nanos: u64,
    /// The current CPU rate in nanocores (a core is 1e9), if the runtime measures one (CRI's
    /// `usage_nano_cores`); without it the node agent derives the rate from two samples of
    /// `cpu_usage_core_nanos`.
    pub cpu_usage_nano_cores: Option<u64>,
    /// Memory working set, in bytes.
    pub memory_working_set_bytes: u64,
}

/// A CPU rate derived from two successive cumulative samples, for runtimes whose source
/// (`/proc`, a cgroup) gives only the total.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CpuRate(Option<(tokio::time::Instant, u64)>);

impl CpuRate {
    /// Records `cpu` (nanoseconds) taken at `now`; the rate in nanocores since the last
    /// sample, if there was one.
    pub(crate) fn sample(&mut self, now: tokio::time::Instant, cpu: u64) -> Option<u64> {
        let rate = self.0.and_then(|(at, before)| {
            let secs = now.saturating_duration_since(at).as_secs_f64();
            (secs > 0.0).then(|| (cpu.saturating_sub(before) as f64 / secs) as u64)
        });
        self.0 = Some((now, cpu));
        rate
    }
}
