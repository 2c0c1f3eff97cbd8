//! ProcessRuntime in host mode against real processes (`/bin/sh`): exits and exit codes,
//! CRI log files, stop with a grace period, exec, attach, port-forward, port claims, stats and
//! shutdown. Real processes need the real clock: every wait is for a positive signal, with a
//! generous limit.

use std::time::Duration;

use futures::StreamExt;
use kybernetes_runtime::process::{ImageCommand, ProcessRuntime};
use kybernetes_runtime::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(20);

fn sandbox(uid: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: PodSandboxMetadata {
            name: format!("pod-{uid}"),
            namespace: "default".into(),
            uid: uid.into(),
            attempt: 0,
        },
        hostname: format!("pod-{uid}"),
        log_directory: format!("/var/log/pods/default_pod-{uid}_{uid}").into(),
        labels: [(labels::POD_UID.to_string(), uid.to_string())].into(),
        pod_ip: Some("10.244.0.5".parse().unwrap()),
        ..Default::default()
    }
}

fn sh(name: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata {
            name: name.into(),
            attempt: 0,
        },
        image: "local".into(),
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        labels: [
            (labels::POD_UID.to_string(), "uid-1".to_string()),
            (labels::CONTAINER_NAME.to_string(), name.to_string()),
        ]
        .into(),
        log_path: format!("{name}/0.log").into(),
        ..Default::default()
    }
}

async fn run(rt: &ProcessRuntime, uid: &str, config: &ContainerConfig) -> String {
    let sb = sandbox(uid);
    let sid = rt.run_pod_sandbox(&sb).await.unwrap();
    rt.pull_image(&config.image).await.unwrap();
    let id = rt.create_container(&sid, config, &sb).await.unwrap();
    rt.start_container(&id).await.unwrap();
    id
}

async fn wait_exit(rt: &ProcessRuntime, id: &str) -> ContainerState {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let st = rt.container_status(id).await.unwrap().state;
        if st.exit_code().is_some() {
            return st;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "container {id} did not exit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn log_text(rt: &ProcessRuntime, id: &str, options: LogOptions) -> Vec<String> {
    let lines: Vec<LogLine> = rt.logs(id, &options).await.unwrap().collect().await;
    lines.into_iter().map(|l| l.line).collect()
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}

#[tokio::test]
async fn exit_codes_reasons_and_the_cri_log_file() {
    let rt = ProcessRuntime::host();
    let mut events = rt.container_events();
    let id = run(
        &rt,
        "uid-1",
        &sh("job", "echo out; echo err >&2; echo $GREETING; exit 3"),
    )
    .await;
    let ContainerState::Exited {
        exit_code, reason, ..
    } = wait_exit(&rt, &id).await
    else {
        unreachable!()
    };
    assert_eq!((exit_code, reason.as_str()), (3, "Error"));
    let kinds: Vec<ContainerEventKind> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            ContainerEventKind::Created,
            ContainerEventKind::Started,
            ContainerEventKind::Stopped
        ]
    );
    let mut lines = log_text(&rt, &id, LogOptions::default()).await;
    lines.sort();
    assert_eq!(lines, ["", "err", "out"]);
    let file = rt.root().join("pods/default_pod-uid-1_uid-1/job/0.log");
    let text = std::fs::read_to_string(&file).unwrap();
    let first = text.lines().next().unwrap();
    let mut parts = first.splitn(4, ' ');
    assert!(
        chrono::DateTime::parse_from_rfc3339(parts.next().unwrap()).is_ok(),
        "{first}"
    );
    assert!(matches!(parts.next(), Some("stdout" | "stderr")), "{first}");
    assert_eq!(parts.next(), Some("F"));
    assert_eq!(
        log_text(
            &rt,
            &id,
            LogOptions {
                tail_lines: Some(1),
                ..Default::default()
            }
        )
        .await
        .len(),
        1
    );
}

#[tokio::test]
async fn env_working_dir_and_hostname_reach_the_process() {
    let rt = ProcessRuntime::host();
    let dir = tempfile::tempdir().unwrap();
    let mut config = sh("env", "echo \"$GREETING $HOSTNAME $(pwd)\"");
    config.env = vec![("GREETING".into(), "hello".into())];
    config.working_dir = Some(dir.path().to_string_lossy().into_owned());
    let id = run(&rt, "uid-1", &config).await;
    assert_eq!(wait_exit(&rt, &id).await.exit_code(), Some(0));
    let want = format!("hello pod-uid-1 {}", dir.path().display());
    assert_eq!(log_text(&rt, &id, LogOptions::default()).await, [want]);
}

#[tokio::test]
async fn a_trapped_term_logs_and_exits_zero_and_an_ignored_one_is_killed_after_grace() {
    let rt = ProcessRuntime::host();
    let polite = run(
        &rt,
        "uid-1",
        &sh(
            "polite",
            "trap 'echo terminating; exit 0' TERM; echo up; while true; do sleep 0.1; done",
        ),
    )
    .await;
    // The trap is set once the script printed.
    let up = rt
        .logs(
            &polite,
            &LogOptions {
                follow: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let first = tokio::time::timeout(LIMIT, up.into_future())
        .await
        .unwrap()
        .0
        .unwrap();
    assert_eq!(first.line, "up");
    rt.stop_container(&polite, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        rt.container_status(&polite)
            .await
            .unwrap()
            .state
            .exit_code(),
        Some(0)
    );
    assert_eq!(
        log_text(&rt, &polite, LogOptions::default()).await,
        ["up", "terminating"]
    );

    let stubborn = run(
        &rt,
        "uid-2",
        &sh(
            "stubborn",
            "trap '' TERM; echo up; while true; do sleep 0.1; done",
        ),
    )
    .await;
    let up = rt
        .logs(
            &stubborn,
            &LogOptions {
                follow: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let _ = tokio::time::timeout(LIMIT, up.into_future()).await.unwrap();
    let pid = rt.container_pid(&stubborn).unwrap();
    let started = tokio::time::Instant::now();
    rt.stop_container(&stubborn, Duration::from_millis(500))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(
        rt.container_status(&stubborn)
            .await
            .unwrap()
            .state
            .exit_code(),
        Some(137)
    );
    assert!(!alive(pid));
}

#[tokio::test]
async fn a_missing_command_fails_to_start_with_a_clear_error() {
    let rt = ProcessRuntime::host();
    let sb = sandbox("uid-1");
    let sid = rt.run_pod_sandbox(&sb).await.unwrap();
    rt.pull_image("local").await.unwrap();
    let mut config = sh("x", "");
    config.command = vec!["no-such-command-kyb".into()];
    let id = rt.create_container(&sid, &config, &sb).await.unwrap();
    let err = rt.start_container(&id).await.unwrap_err().to_string();
    assert!(err.contains("executable file not found in $PATH"), "{err}");
    let ContainerState::Exited {
        exit_code, reason, ..
    } = rt.container_status(&id).await.unwrap().state
    else {
        panic!("not exited");
    };
    assert_eq!((exit_code, reason.as_str()), (128, "StartError"));

    config.command.clear();
    let err = rt
        .create_container(&sid, &config, &sb)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no command"), "{err}");
}

#[tokio::test]
async fn an_image_mapping_supplies_the_program() {
    let rt = ProcessRuntime::builder()
        .image("shell", ImageCommand::prefix(["/bin/sh", "-c"]))
        .build();
    let mut config = sh("mapped", "");
    config.image = "shell".into();
    config.command = vec!["echo mapped".into()];
    let id = run(&rt, "uid-1", &config).await;
    assert_eq!(wait_exit(&rt, &id).await.exit_code(), Some(0));
    assert_eq!(log_text(&rt, &id, LogOptions::default()).await, ["mapped"]);
    assert!(rt.image_status("shell").await.unwrap().is_some());
}

#[tokio::test]
async fn exec_runs_in_the_container_environment_with_streams_and_exit_code() {
    let rt = ProcessRuntime::host();
    let mut config = sh("app", "while true; do sleep 0.1; done");
    config.env = vec![("MODE".into(), "blue".into())];
    let id = run(&rt, "uid-1", &config).await;
    let r = rt
        .exec_sync(
            &id,
            &["/bin/sh".into(), "-c".into(), "echo $MODE; exit 4".into()],
            LIMIT,
        )
        .await
        .unwrap();
    assert_eq!((r.exit_code, r.stdout.as_ref()), (4, b"blue\n".as_ref()));
    let err = rt
        .exec_sync(
            &id,
            &["/bin/sleep".into(), "5".into()],
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");

    let mut session = rt
        .exec(
            &id,
            ExecRequest {
                cmd: vec!["/bin/cat".into()],
                stdin: true,
                stdout: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut stdin = session.stdin.take().unwrap();
    stdin.write_all(b"ping\n").await.unwrap();
    drop(stdin);
    let mut out = String::new();
    session
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    assert_eq!(out, "ping\n");
    assert_eq!(
        tokio::time::timeout(LIMIT, session.exit)
            .await
            .unwrap()
            .unwrap(),
        0
    );
    rt.stop_container(&id, Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn attach_feeds_stdin_reads_new_output_and_stdin_once_closes_on_detach() {
    let rt = ProcessRuntime::host();
    // Echoes each stdin line; says goodbye and exits 7 when stdin ends.
    let mut config = sh(
        "repl",
        "while read line; do echo \"got $line\"; done; echo bye; exit 7",
    );
    config.stdin = true;
    config.stdin_once = true;
    let id = run(&rt, "uid-attach", &config).await;
    let mut session = rt
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
        .unwrap();
    let mut stdin = session.stdin.take().unwrap();
    let mut stdout = session.stdout.take().unwrap();
    stdin.write_all(b"one\n").await.unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    while !seen.contains("got one\n") {
        let n = tokio::time::timeout(LIMIT, stdout.read(&mut buf))
            .await
            .expect("output within the limit")
            .unwrap();
        assert!(n > 0, "attach output ended early: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // Detaching closes stdin (stdinOnce): the loop ends and the container exits.
    drop(stdin);
    let code = tokio::time::timeout(LIMIT, session.exit)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 7);
    assert_eq!(
        log_text(&rt, &id, LogOptions::default()).await,
        ["got one", "bye"]
    );

    // A container without `stdin: true` has no stdin to attach to.
    let other = run(&rt, "uid-attach-2", &sh("plain", "sleep 30")).await;
    let err = rt
        .attach(
            &other,
            AttachRequest {
                stdin: true,
                stdout: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("stdin: true"), "{err}");
    rt.stop_container(&other, Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn port_forward_reaches_a_listener_and_ports_cannot_be_claimed_twice() {
    let rt = ProcessRuntime::host();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"hi").await.unwrap();
    });
    let mut first = sandbox("uid-1");
    first.port_mappings = vec![PortMapping {
        protocol: "TCP".into(),
        container_port: port,
        ..Default::default()
    }];
    let sid = rt.run_pod_sandbox(&first).await.unwrap();
    let mut conn = rt.port_forward(&sid, port).await.unwrap();
    let mut got = String::new();
    conn.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "hi");

    let mut second = sandbox("uid-2");
    second.port_mappings = first.port_mappings.clone();
    let err = rt.run_pod_sandbox(&second).await.unwrap_err().to_string();
    assert!(err.contains(&format!("port {port}/TCP")), "{err}");
    assert!(err.contains("default/pod-uid-1"), "{err}");
    // Once the first pod's sandbox stops, the port is free again.
    rt.stop_pod_sandbox(&sid).await.unwrap();
    rt.run_pod_sandbox(&second).await.unwrap();
}

#[tokio::test]
async fn stats_read_cpu_and_memory_of_the_process_group() {
    let rt = ProcessRuntime::host();
    let id = run(&rt, "uid-1", &sh("busy", "while true; do :; done")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = rt.container_stats(&id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = rt.container_stats(&id).await.unwrap();
    assert!(first.memory_working_set_bytes > 0);
    assert!(second.cpu_usage_core_nanos > 0);
    assert!(second.cpu_usage_nano_cores.is_some_and(|n| n > 0));
}

#[tokio::test]
async fn shutdown_kills_every_process_including_children() {
    let rt = ProcessRuntime::host();
    let a = run(&rt, "uid-1", &sh("a", "sleep 300 & echo $!; wait")).await;
    let b = run(&rt, "uid-2", &sh("b", "sleep 300")).await;
    let mut pids = rt.running_pids();
    let follow = rt
        .logs(
            &a,
            &LogOptions {
                follow: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let child = tokio::time::timeout(LIMIT, follow.into_future())
        .await
        .unwrap()
        .0
        .unwrap();
    pids.push(child.line.parse().unwrap());
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|p| alive(*p)));
    rt.shutdown().await.unwrap();
    for id in [&a, &b] {
        assert_eq!(
            rt.container_status(id).await.unwrap().state.exit_code(),
            Some(137)
        );
    }
    let deadline = tokio::time::Instant::now() + LIMIT;
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "processes left: {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn run_as_user_and_group_switch_the_process_and_what_a_host_process_cannot_do_is_refused() {
    assert_eq!(
        effective_uid(),
        0,
        "switching users needs the test to run as root"
    );
    let rt = ProcessRuntime::host();
    let mut config = sh("user", "id -u; id -g; id -G");
    config.working_dir = Some("/".into());
    config.security = ContainerSecurity {
        run_as_user: Some(1000),
        run_as_group: Some(3000),
        ..Default::default()
    };
    let id = run(&rt, "uid-user", &config).await;
    assert_eq!(wait_exit(&rt, &id).await.exit_code(), Some(0));
    // The agent's supplementary groups are dropped: only the primary group is left.
    assert_eq!(
        log_text(&rt, &id, LogOptions::default()).await,
        ["1000", "3000", "3000"]
    );

    let sb = sandbox("uid-refused");
    let sid = rt.run_pod_sandbox(&sb).await.unwrap();
    let mut refused = sh("ro", "true");
    refused.security.readonly_rootfs = true;
    match rt.create_container(&sid, &refused, &sb).await {
        Err(Error::Unsupported(what)) => {
            assert_eq!(
                what,
                "securityContext readOnlyRootFilesystem on local processes"
            )
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    rt.shutdown().await.unwrap();
}

fn effective_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(u32::MAX)
}
