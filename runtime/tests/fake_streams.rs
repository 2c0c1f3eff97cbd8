//! FakeRuntime's streams: interactive exec with the built-in commands, attach to the main
//! process, and port-forward to scripted ports.

use std::time::Duration;

use kybernetes_runtime::fake::{ContainerScript, PortResponder};
use kybernetes_runtime::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

fn sandbox() -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: PodSandboxMetadata {
            name: "web-0".into(),
            namespace: "default".into(),
            uid: "uid-1".into(),
            attempt: 0,
        },
        hostname: "web-0".into(),
        labels: [(labels::POD_UID.to_string(), "uid-1".to_string())].into(),
        ..Default::default()
    }
}

/// A running container named `name`; returns its sandbox and container ids.
async fn started(fake: &FakeRuntime, name: &str) -> (String, String) {
    let sb = sandbox();
    let sid = fake.run_pod_sandbox(&sb).await.expect("sandbox");
    fake.pull_image("busybox").await.expect("pull");
    let config = ContainerConfig {
        metadata: ContainerMetadata {
            name: name.into(),
            attempt: 0,
        },
        image: "busybox".into(),
        env: vec![("GREETING".into(), "hello".into())],
        ..Default::default()
    };
    let id = fake
        .create_container(&sid, &config, &sb)
        .await
        .expect("create");
    fake.start_container(&id).await.expect("start");
    (sid, id)
}

fn exec(cmd: &[&str], stdin: bool) -> ExecRequest {
    ExecRequest {
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        stdin,
        stdout: true,
        stderr: true,
        tty: false,
    }
}

/// Runs a command to its end; returns stdout, stderr and the exit code.
async fn run(fake: &FakeRuntime, id: &str, cmd: &[&str], input: &[u8]) -> (String, String, i32) {
    let mut s = fake.exec(id, exec(cmd, true)).await.expect("exec");
    let mut stdin = s.stdin.take().expect("stdin");
    stdin.write_all(input).await.expect("write stdin");
    drop(stdin);
    let (mut out, mut err) = (String::new(), String::new());
    let mut stdout = s.stdout.take().expect("stdout");
    let mut stderr = s.stderr.take().expect("stderr");
    let (a, b) = tokio::join!(
        stdout.read_to_string(&mut out),
        stderr.read_to_string(&mut err)
    );
    a.expect("read stdout");
    b.expect("read stderr");
    (out, err, s.exit.await.expect("exit code"))
}

#[tokio::test]
async fn builtin_commands_print_and_exit_as_a_shell_would() {
    let fake = FakeRuntime::default();
    let (_, id) = started(&fake, "app").await;
    assert_eq!(
        run(&fake, &id, &["echo", "hi"], b"").await,
        ("hi\n".into(), "".into(), 0)
    );
    assert_eq!(run(&fake, &id, &["sh", "-c", "exit 3"], b"").await.2, 3);
    assert_eq!(run(&fake, &id, &["cat"], b"typed\n").await.0, "typed\n");
    assert_eq!(
        run(&fake, &id, &["printenv", "GREETING"], b"").await.0,
        "hello\n"
    );
    assert!(
        run(&fake, &id, &["env"], b"")
            .await
            .0
            .contains("GREETING=hello\n")
    );
    assert_eq!(run(&fake, &id, &["hostname"], b"").await.0, "web-0\n");
    let (out, _, code) = run(
        &fake,
        &id,
        &["sh"],
        b"echo one\necho two; exit 4\necho never\n",
    )
    .await;
    assert_eq!((out.as_str(), code), ("one\ntwo\n", 4));
}

#[tokio::test]
async fn scripted_exec_results_win_over_builtins() {
    let fake = FakeRuntime::default();
    fake.script_container(
        "db",
        ContainerScript::new().on_exec(
            &["psql", "-c", "select 1"],
            ExecResult {
                exit_code: 0,
                stdout: "1\n".into(),
                stderr: "warning\n".into(),
            },
        ),
    );
    let (_, id) = started(&fake, "db").await;
    let got = run(&fake, &id, &["psql", "-c", "select 1"], b"").await;
    assert_eq!(got, ("1\n".into(), "warning\n".into(), 0));
}

#[tokio::test(start_paused = true)]
async fn a_running_exec_is_killed_when_its_container_stops() {
    let fake = FakeRuntime::default();
    let (_, id) = started(&fake, "app").await;
    let s = fake
        .exec(&id, exec(&["sleep", "3600"], false))
        .await
        .expect("exec");
    fake.stop_container(&id, Duration::from_secs(1))
        .await
        .expect("stop");
    assert_eq!(s.exit.await.expect("exit code"), 137);
    let err = fake.exec(&id, exec(&["echo"], false)).await.unwrap_err();
    assert!(matches!(err, Error::InvalidState { .. }), "{err}");
}

#[tokio::test]
async fn attach_echoes_stdin_through_the_log_for_an_echoing_container() {
    let fake = FakeRuntime::default();
    fake.script_container("repl", ContainerScript::new().echo_stdin());
    let (_, id) = started(&fake, "repl").await;
    let request = AttachRequest {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let mut s = fake.attach(&id, request).await.expect("attach");
    let mut stdin = s.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(s.stdout.take().expect("stdout"));
    stdin.write_all(b"ping\n").await.expect("write");
    let mut line = String::new();
    stdout.read_line(&mut line).await.expect("read");
    assert_eq!(line, "ping\n");
    // What the process writes itself reaches the attach too.
    fake.write_log(&id, "from the app");
    line.clear();
    stdout.read_line(&mut line).await.expect("read");
    assert_eq!(line, "from the app\n");
    assert_eq!(fake.log_lines(&id).len(), 2);
    fake.exit_container(&id, 5);
    assert_eq!(s.exit.await.expect("exit"), 5);
}

#[tokio::test]
async fn port_forward_reaches_scripted_ports_and_is_refused_elsewhere() {
    let fake = FakeRuntime::default();
    fake.script_container(
        "web",
        ContainerScript::new()
            .serve_port(8080, PortResponder::http(200, "hello\n"))
            .serve_port(9000, PortResponder::Echo),
    );
    let (sid, _) = started(&fake, "web").await;
    let mut echo = fake.port_forward(&sid, 9000).await.expect("echo port");
    echo.write_all(b"abc").await.expect("write");
    let mut buf = [0u8; 3];
    echo.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"abc");

    let mut web = fake.port_forward(&sid, 8080).await.expect("http port");
    web.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    web.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nhello\n"), "{response}");

    let refused = fake.port_forward(&sid, 1234).await.err().expect("refused");
    assert!(
        refused.to_string().contains("connection refused"),
        "{refused}"
    );
}
