//! ContainerdRuntime's streaming calls against a real containerd daemon that each test starts
//! under a temp dir with its own socket: exec with a terminal, attach (plain and to a
//! container's terminal) and port-forward into the pod's network namespace. A test fails,
//! not skips, when containerd is missing.

use std::pin::Pin;
use std::time::Duration;

use kybernetes_runtime::containerd::ContainerdRuntime;
use kybernetes_runtime::{
    AttachRequest, ContainerConfig, ContainerState, Error, ExecRequest, Runtime, TerminalSize,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[path = "support/pods.rs"]
mod pods;
#[path = "support/streams.rs"]
mod streams;
#[path = "support/containerd.rs"]
mod support;

use pods::{create_in_pod, log_lines, shell, with_busybox};
use streams::{ASK_SIZE, SIZE, STTY_SIZE, ask_until, read_until};
use support::Containerd;

/// How long a test waits for anything: containers start for real on a loaded machine.
const WITHIN: Duration = Duration::from_secs(120);

/// A shell loop that exits promptly on TERM.
const IDLE: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

type Reader = Pin<Box<dyn AsyncRead + Send>>;
type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// Resizes the terminal, then waits until the shell behind `stdin` reports the new size.
async fn resize_and_check(
    resize: &tokio::sync::mpsc::Sender<TerminalSize>,
    stdin: &mut Writer,
    stdout: &mut Reader,
) {
    let (width, height) = SIZE;
    resize
        .send(TerminalSize { width, height })
        .await
        .expect("resize");
    ask_until(stdin, stdout, ASK_SIZE, STTY_SIZE, WITHIN).await;
}

/// A running container `config` in a new sandbox for pod `name`: the sandbox id and the
/// container id.
async fn running(
    runtime: &ContainerdRuntime,
    name: &str,
    config: &ContainerConfig,
) -> (String, String) {
    let (sid, id) = create_in_pod(runtime, name, config).await;
    runtime.start_container(&id).await.expect("start");
    (sid, id)
}

fn cmd(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_a_terminal_merges_stderr_follows_resizes_and_reports_the_exit_code() {
    let daemon = Containerd::start().await;
    let runtime = with_busybox(&daemon).await;
    let (sid, id) = running(&runtime, "exec-tty", &shell("main", IDLE)).await;
    let mut session = runtime
        .exec(
            &id,
            ExecRequest {
                cmd: cmd(&["sh"]),
                tty: true,
                stdin: true,
                stdout: true,
                stderr: true,
            },
        )
        .await
        .expect("exec -it sh");
    assert!(
        session.stderr.is_none(),
        "a terminal has no separate stderr"
    );
    let resize = session.resize.take().expect("a terminal can be resized");
    let mut stdin = session.stdin.take().expect("stdin");
    let mut stdout = session.stdout.take().expect("stdout");
    resize_and_check(&resize, &mut stdin, &mut stdout).await;
    stdin
        .write_all(b"test -t 0 && echo stdin-is-a-tty; echo to-stderr >&2; exit 3\n")
        .await
        .expect("write stdin");
    let mut rest = String::new();
    stdout
        .read_to_string(&mut rest)
        .await
        .expect("read to the end");
    // The terminal turns "\n" into "\r\n"; what went to stderr arrives on the one stream.
    assert!(rest.contains("stdin-is-a-tty\r\n"), "{rest:?}");
    assert!(rest.contains("to-stderr\r\n"), "{rest:?}");
    assert_eq!(session.exit.await.expect("exit"), 3);
    runtime.remove_pod_sandbox(&sid).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_feeds_stdin_and_streams_output_and_stdin_once_closes_stdin_on_detach() {
    let daemon = Containerd::start().await;
    let runtime = with_busybox(&daemon).await;
    let mut config = shell(
        "repl",
        "while read l; do echo \"out: $l\"; echo \"err: $l\" >&2; done; echo 'stdin closed'; exit 4",
    );
    config.stdin = true;
    config.stdin_once = true;
    let (sid, id) = running(&runtime, "attach", &config).await;
    let mut session = runtime
        .attach(
            &id,
            AttachRequest {
                stdin: true,
                stdout: true,
                stderr: true,
                tty: false,
            },
        )
        .await
        .expect("attach");
    assert!(session.resize.is_none(), "no terminal");
    let mut stdin = session.stdin.take().expect("stdin");
    let mut stdout = session.stdout.take().expect("stdout");
    let mut stderr = session.stderr.take().expect("stderr");
    stdin.write_all(b"hello\n").await.expect("write stdin");
    let (mut out, mut err) = (String::new(), String::new());
    assert!(read_until(&mut stdout, &mut out, "out: hello\n", WITHIN).await);
    assert!(read_until(&mut stderr, &mut err, "err: hello\n", WITHIN).await);
    // Detaching stdin closes the process's stdin (`stdinOnce`); the output stays attached
    // until the container exits, and the exit code is the container's.
    drop(stdin);
    stdout.read_to_string(&mut out).await.expect("read stdout");
    assert_eq!(out, "out: hello\nstdin closed\n");
    assert_eq!(session.exit.await.expect("exit"), 4);
    match runtime.container_status(&id).await.expect("status").state {
        ContainerState::Exited { exit_code: 4, .. } => {}
        other => panic!("expected exit code 4, got {other:?}"),
    }
    // What went through the attach is in the log too.
    // (stdout and stderr are pumped apart, so only each stream's own order is certain).
    let mut lines: Vec<String> = log_lines(&runtime, &id)
        .await
        .into_iter()
        .map(|l| l.line)
        .collect();
    lines.sort();
    assert_eq!(lines, ["err: hello", "out: hello", "stdin closed"]);
    // An exited container cannot be attached to.
    match runtime.attach(&id, AttachRequest::default()).await {
        Err(Error::InvalidState { .. }) => {}
        other => panic!("attach to an exited container: {other:?}"),
    }
    runtime.remove_pod_sandbox(&sid).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_to_a_terminal_shows_the_prompt_resizes_and_detaches_when_stdin_closes() {
    let daemon = Containerd::start().await;
    let runtime = with_busybox(&daemon).await;
    let mut config = shell("term", "");
    config.command = cmd(&["sh"]);
    config.tty = true;
    config.stdin = true;
    let (sid, id) = running(&runtime, "attach-tty", &config).await;
    let request = AttachRequest {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: true,
    };
    let mut session = runtime.attach(&id, request.clone()).await.expect("attach");
    assert!(
        session.stderr.is_none(),
        "a terminal has no separate stderr"
    );
    let resize = session.resize.take().expect("a terminal can be resized");
    let mut stdin = session.stdin.take().expect("stdin");
    let mut stdout = session.stdout.take().expect("stdout");
    // The shell's prompt has no newline: it arrives as written, not a line at a time.
    stdin.write_all(b"\n").await.expect("write stdin");
    let mut seen = String::new();
    assert!(
        read_until(&mut stdout, &mut seen, "# ", WITHIN).await,
        "{seen:?}"
    );
    resize_and_check(&resize, &mut stdin, &mut stdout).await;
    // Closing stdin detaches (no `stdinOnce`): the attach ends, the shell keeps running.
    drop(stdin);
    let mut rest = Vec::new();
    stdout
        .read_to_end(&mut rest)
        .await
        .expect("read to the end");
    assert_eq!(session.exit.await.expect("exit"), 0);
    assert!(
        runtime
            .container_status(&id)
            .await
            .expect("status")
            .state
            .is_running()
    );
    // A second attach finds the same shell, and its exit ends the attach with its code.
    let mut session = runtime.attach(&id, request).await.expect("attach again");
    let mut stdin = session.stdin.take().expect("stdin");
    stdin.write_all(b"exit 7\n").await.expect("write stdin");
    assert_eq!(session.exit.await.expect("exit"), 7);
    // The terminal's output is the container's log (one stream, as stdout).
    let log = log_lines(&runtime, &id).await;
    assert!(
        log.iter().any(|l| l.line.contains(STTY_SIZE)),
        "{:?}",
        log.iter().map(|l| &l.line).collect::<Vec<_>>()
    );
    runtime.remove_pod_sandbox(&sid).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_with_stdin_to_a_container_without_stdin_is_refused() {
    let daemon = Containerd::start().await;
    let runtime = with_busybox(&daemon).await;
    let (sid, id) = running(&runtime, "no-stdin", &shell("main", IDLE)).await;
    let request = AttachRequest {
        stdin: true,
        stdout: true,
        ..Default::default()
    };
    match runtime.attach(&id, request).await {
        Err(Error::InvalidState { message, .. }) => {
            assert!(message.contains("stdin: true"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    runtime.remove_pod_sandbox(&sid).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_connects_to_loopback_inside_the_pods_network_namespace() {
    let daemon = Containerd::start().await;
    let runtime = with_busybox(&daemon).await;
    // httpd binds 8080 in the pod's own namespace, where only loopback is up.
    let (sid, _id) = running(
        &runtime,
        "web",
        &shell(
            "web",
            "echo hello-from-the-pod > /tmp/index.html; exec httpd -f -p 8080 -h /tmp",
        ),
    )
    .await;
    let deadline = tokio::time::Instant::now() + WITHIN;
    let response = loop {
        // Until httpd listens, the connection is refused.
        if let Ok(mut conn) = runtime.port_forward(&sid, 8080).await {
            conn.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
                .await
                .expect("write request");
            let mut response = String::new();
            conn.read_to_string(&mut response)
                .await
                .expect("read response");
            break response;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "httpd never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("hello-from-the-pod\n"), "{response}");
    match runtime.port_forward(&sid, 9).await {
        Err(Error::Backend { context, .. }) => {
            assert!(
                context.contains("failed to connect to localhost:9 inside namespace"),
                "{context}"
            );
            assert!(context.contains("refused"), "{context}");
        }
        Err(other) => panic!("expected a refused connection, got {other:?}"),
        Ok(_) => panic!("nothing listens on port 9"),
    }
    match runtime.port_forward("no-such-sandbox", 8080).await {
        Err(Error::NotFound { .. }) => {}
        Err(other) => panic!("expected NotFound, got {other:?}"),
        Ok(_) => panic!("an unknown sandbox has no network"),
    }
    runtime.remove_pod_sandbox(&sid).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_that_recovers_a_container_attaches_to_its_stdin_and_output() {
    let daemon = Containerd::start().await;
    let root = tempfile::tempdir().expect("runtime root");
    let connect = || {
        ContainerdRuntime::builder()
            .snapshotter(daemon.snapshotter)
            .root(root.path())
            .connect(daemon.socket())
    };
    let first = connect().await.expect("connect");
    first
        .import_image(support::busybox_image("busybox:test"))
        .await
        .expect("import busybox");
    let mut config = shell("repl", "while read l; do echo \"out: $l\"; done");
    config.stdin = true;
    let (sid, id) = running(&first, "recovered", &config).await;
    // The first runtime goes as a node agent's process does; the container keeps running.
    first.detach().await.expect("detach");
    drop(first);
    let second = connect().await.expect("reconnect");
    let mut session = second
        .attach(
            &id,
            AttachRequest {
                stdin: true,
                stdout: true,
                ..Default::default()
            },
        )
        .await
        .expect("attach to the recovered container");
    let mut stdin = session.stdin.take().expect("stdin");
    let mut stdout = session.stdout.take().expect("stdout");
    stdin.write_all(b"again\n").await.expect("write stdin");
    let mut seen = String::new();
    assert!(
        read_until(&mut stdout, &mut seen, "out: again\n", WITHIN).await,
        "{seen:?}"
    );
    second.remove_pod_sandbox(&sid).await.expect("remove");
}
