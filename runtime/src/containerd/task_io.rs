//! The streams of a container's main task: FIFOs the shim writes its output to, pumped into
//! the CRI log file and, as written, to whoever is attached; with `stdin: true` in the spec a
//! stdin FIFO whose write end the runtime keeps for attaches; with `tty: true` one terminal
//! output and no stderr, as containerd's CRI sets a container up.

use std::fs::File;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::unix::pipe;
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tracing::debug;

use super::{ContainerdContainer, ContainerdRuntime, backend};
use crate::Result;
use crate::container::ContainerConfig;
use crate::process::spawn::pump;
use crate::stream::LogStreamKind;

/// How many chunks of output an attach may fall behind before it misses some.
const OUTPUT_BACKLOG: usize = 1024;

/// What a container's main process wrote, as one read from its FIFO got it.
#[derive(Clone, Debug)]
pub(super) struct OutputChunk {
    /// stdout or stderr (stdout for a terminal).
    pub(super) stream: LogStreamKind,
    /// The bytes, as written (no line splitting, so a prompt shows before its newline).
    pub(super) bytes: Bytes,
}

/// The write end of a container's stdin FIFO, shared by its attaches; `None` once closed.
pub(super) type StdinPipe = Arc<tokio::sync::Mutex<Option<pipe::Sender>>>;

/// How a container's main process is wired, from its spec, and the ends of its running
/// task's streams that an attach joins.
#[derive(Debug, Default)]
pub(super) struct MainStreams {
    /// The container has a terminal (`tty: true`): one output stream, which can be resized.
    pub(super) tty: bool,
    /// Its stdin is kept open (`stdin: true`), so attaches may feed it.
    pub(super) open_stdin: bool,
    /// Its stdin closes when the first attach that fed it detaches (`stdinOnce: true`).
    pub(super) stdin_once: bool,
    /// The running task's stdin, if open.
    pub(super) stdin: Option<StdinPipe>,
    /// The running task's output as it is written; `None` while no task runs, so that
    /// attaches see the end once the last output has been read.
    pub(super) output: Option<broadcast::Sender<OutputChunk>>,
}

impl MainStreams {
    /// The wiring that `config` asks for, before any task runs.
    pub(super) fn of(config: &ContainerConfig) -> Self {
        MainStreams {
            tty: config.tty,
            open_stdin: config.stdin,
            stdin_once: config.stdin_once,
            ..Default::default()
        }
    }

    /// The task whose streams `io` opened runs: attaches may join it.
    pub(super) fn running(&mut self, io: &TaskIo) {
        self.stdin = io.stdin.clone();
        self.output = Some(io.output.clone());
    }

    /// The task is gone: new attaches are refused, and the running ones end once they have
    /// read what it wrote.
    pub(super) fn stopped(&mut self) {
        self.stdin = None;
        self.output = None;
    }
}

/// The FIFOs of a container's task and the write ends this side holds open so that the
/// readers see no end of file before the shim opens them; dropping them once the task is
/// deleted lets the readers drain and end.
pub(super) struct TaskIo {
    dir: PathBuf,
    /// The stdout FIFO (the terminal's output with a tty).
    pub(super) stdout: PathBuf,
    /// The stderr FIFO; none with a tty.
    pub(super) stderr: Option<PathBuf>,
    /// The stdin FIFO, with `stdin: true`.
    pub(super) stdin_path: Option<PathBuf>,
    stdin: Option<StdinPipe>,
    output: broadcast::Sender<OutputChunk>,
    _holders: Vec<pipe::Sender>,
}

impl TaskIo {
    /// New FIFOs for container `c`'s task under the runtime's root.
    pub(super) fn open(
        rt: &ContainerdRuntime,
        c: &ContainerdContainer,
        pumps: &mut JoinSet<()>,
    ) -> Result<TaskIo> {
        TaskIo::open_in(rt.inner.root.join("io").join(&c.status.id), rt, c, pumps)
    }

    /// The FIFOs in `dir` (made if missing), pumped into `c`'s log file: a recovered
    /// task's are where the runtime that started it made them.
    pub(super) fn open_in(
        dir: PathBuf,
        rt: &ContainerdRuntime,
        c: &ContainerdContainer,
        pumps: &mut JoinSet<()>,
    ) -> Result<TaskIo> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| backend(format!("create {}", dir.display()), e))?;
        if let Some(parent) = c.log_file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| backend(format!("create log directory {}", parent.display()), e))?;
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(&c.log_file)
            .map_err(|e| backend(format!("open log file {}", c.log_file.display()), e))?;
        let sink = Arc::new(Mutex::new(log));
        let output = broadcast::channel(OUTPUT_BACKLOG).0;
        let mut holders = Vec::new();
        let mut paths = Vec::new();
        // A terminal merges stderr into its one output, as the kubelet expects.
        let kinds: &[LogStreamKind] = if c.streams.tty {
            &[LogStreamKind::Stdout]
        } else {
            &[LogStreamKind::Stdout, LogStreamKind::Stderr]
        };
        for &kind in kinds {
            let path = dir.join(kind.as_str());
            super::exec::fifo(&path)?;
            let reader = pipe::OpenOptions::new()
                .open_receiver(&path)
                .map_err(|e| backend(format!("open FIFO {}", path.display()), e))?;
            holders.push(
                pipe::OpenOptions::new()
                    .open_sender(&path)
                    .map_err(|e| backend(format!("open FIFO {}", path.display()), e))?,
            );
            let tee = Tee {
                inner: reader,
                stream: kind,
                to: output.clone(),
            };
            pumps.spawn(pump(
                tee,
                kind,
                sink.clone(),
                rt.inner.clock.clone(),
                c.version.clone(),
            ));
            paths.push(path);
        }
        let (stdin_path, stdin) = if c.streams.open_stdin {
            let path = dir.join("stdin");
            super::exec::fifo(&path)?;
            // Read-write, so that it opens before the shim opens the read end, and the
            // process sees no end of file while no attach feeds it.
            let writer = pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(&path)
                .map_err(|e| backend(format!("open FIFO {}", path.display()), e))?;
            (
                Some(path),
                Some(Arc::new(tokio::sync::Mutex::new(Some(writer)))),
            )
        } else {
            (None, None)
        };
        let mut paths = paths.into_iter();
        Ok(TaskIo {
            dir,
            stdout: paths.next().unwrap_or_default(),
            stderr: paths.next(),
            stdin_path,
            stdin,
            output,
            _holders: holders,
        })
    }

    /// Closes this side's ends and removes the FIFOs.
    pub(super) fn close(self) {
        let dir = self.dir.clone();
        if let Some(stdin) = &self.stdin
            && let Ok(mut writer) = stdin.try_lock()
        {
            // An attach feeding it holds the lock and drops its clone once it detaches.
            writer.take();
        }
        drop(self);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            debug!(dir = %dir.display(), error = %e, "removing a task's FIFOs failed");
        }
    }
}

/// A FIFO reader that also sends what it reads to the container's attaches.
struct Tee {
    inner: pipe::Receiver,
    stream: LogStreamKind,
    to: broadcast::Sender<OutputChunk>,
}

impl AsyncRead for Tee {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            let read = &buf.filled()[before..];
            // Copied only while someone is attached.
            if !read.is_empty() && self.to.receiver_count() > 0 {
                // An error only means that the last attach has just gone.
                let _ = self.to.send(OutputChunk {
                    stream: self.stream,
                    bytes: Bytes::copy_from_slice(read),
                });
            }
        }
        polled
    }
}
