//! `ContainerdRuntime` against a real containerd daemon that each test starts under a temp
//! dir with its own socket (Debian's `containerd` and `runc`, which `scripts/test`
//! installs). A test fails, not skips, when containerd is missing.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use kybernetes_runtime::{
    ContainerResources, ContainerState, Error, LogOptions, LogStreamKind, Mount, Runtime,
};

#[path = "support/pods.rs"]
mod pods;
#[path = "support/containerd.rs"]
mod support;

use pods::{log_lines, pod, run_in_pod, run_to_exit, shell, with_busybox};
use support::{Containerd, busybox_image};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_and_reports_its_version() {
    let daemon = Containerd::start().await;
    let version = daemon.runtime().await.version().await.expect("version");
    assert_eq!(version.runtime_name, "containerd");
    assert!(!version.runtime_version.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_an_oci_archive_of_busybox_and_unpacks_it() {
    let daemon = Containerd::start().await;
    let runtime = daemon.runtime().await;
    let imported = runtime
        .import_image(busybox_image("busybox:test"))
        .await
        .expect("import");
    assert_eq!(imported.len(), 1);
    let image = &imported[0];
    assert_eq!(
        image.repo_tags,
        vec!["docker.io/library/busybox:test".to_string()]
    );
    assert!(image.id.starts_with("sha256:"), "{image:?}");
    assert!(image.repo_digests[0].starts_with("docker.io/library/busybox@sha256:"));
    assert!(image.size_bytes > 500_000, "{image:?}");

    // containerd itself holds the image and its unpacked layer.
    assert!(
        daemon
            .ctr(&["images", "ls", "-q"])
            .contains("docker.io/library/busybox:test")
    );
    let snapshots = daemon.ctr(&["snapshots", "--snapshotter", daemon.snapshotter, "ls"]);
    assert!(snapshots.contains("Committed"), "{snapshots}");

    // The CRI view: by tag, short name, id and digest; listed; pulled without a registry.
    for name in [
        "busybox:test",
        "docker.io/library/busybox:test",
        &image.id,
        &image.repo_digests[0],
    ] {
        assert_eq!(
            runtime.image_status(name).await.expect("status").as_ref(),
            Some(image),
            "{name}"
        );
    }
    assert_eq!(runtime.list_images().await.expect("list"), imported);

    // Importing again keeps one image; removing leaves none, and removing again is fine.
    assert_eq!(
        runtime
            .import_image(busybox_image("busybox:test"))
            .await
            .expect("reimport"),
        imported
    );
    assert_eq!(runtime.list_images().await.expect("list").len(), 1);
    runtime.remove_image("busybox:test").await.expect("remove");
    assert_eq!(
        runtime.image_status("busybox:test").await.expect("status"),
        None
    );
    runtime
        .remove_image("busybox:test")
        .await
        .expect("remove absent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_archive_is_refused_and_leaves_no_image() {
    let daemon = Containerd::start().await;
    let runtime = daemon.runtime().await;
    let err = runtime
        .import_image(Bytes::from_static(
            b"not a tarball at all, not even close......",
        ))
        .await
        .expect_err("garbage is refused");
    assert!(err.to_string().contains("import image archive"), "{err}");
    assert_eq!(runtime.list_images().await.expect("list"), Vec::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_a_container_with_image_defaults_env_mounts_and_logs() {
    let daemon = Containerd::start().await;
    let runtime = with_busybox(&daemon).await;
    let volume = tempfile::tempdir().expect("volume dir");
    std::fs::write(volume.path().join("greeting"), "hello from a volume").expect("write");
    let sandbox = pod("web");
    let sid = runtime.run_pod_sandbox(&sandbox).await.expect("sandbox");
    let mut config = shell(
        "main",
        "echo \"path=$PATH who=$WHO host=$HOSTNAME dir=$(pwd)\"; cat /config/greeting; echo; \
         echo oops >&2; cat /sys/class/net/lo/operstate; exit 3",
    );
    config.env = vec![("WHO".into(), "pod".into())];
    config.working_dir = Some("/tmp".into());
    config.mounts = vec![Mount {
        container_path: "/config".into(),
        host_path: volume.path().into(),
        readonly: true,
    }];
    let id = runtime
        .create_container(&sid, &config, &sandbox)
        .await
        .expect("create");
    assert_eq!(
        runtime.container_status(&id).await.expect("status").state,
        ContainerState::Created
    );
    match run_to_exit(&runtime, &id).await {
        ContainerState::Exited {
            exit_code, reason, ..
        } => assert_eq!((exit_code, reason.as_str()), (3, "Error")),
        other => panic!("{other:?}"),
    }
    let lines = log_lines(&runtime, &id).await;
    let text: Vec<(LogStreamKind, &str)> =
        lines.iter().map(|l| (l.stream, l.line.as_str())).collect();
    assert!(
        text.contains(&(LogStreamKind::Stdout, "path=/bin who=pod host=web dir=/tmp")),
        "{text:?}"
    );
    assert!(
        text.contains(&(LogStreamKind::Stdout, "hello from a volume")),
        "{text:?}"
    );
    assert!(text.contains(&(LogStreamKind::Stderr, "oops")), "{text:?}");
    // The pod's own network namespace has loopback up (`unknown` is lo's state when up).
    assert!(
        text.contains(&(LogStreamKind::Stdout, "unknown")),
        "{text:?}"
    );
    // The log is a CRI log file under the runtime's root.
    let status = runtime.container_status(&id).await.expect("status");
    let file = runtime
        .root()
        .join("pods/default_web_uid-web")
        .join(&status.log_path);
    let raw = std::fs::read_to_string(&file).expect("log file");
    assert!(raw.lines().any(|l| l.ends_with(" stderr F oops")), "{raw}");

    // containerd holds the container until it is removed.
    assert!(daemon.ctr(&["containers", "ls", "-q"]).contains(&id));
    runtime.remove_container(&id).await.expect("remove");
    assert!(!daemon.ctr(&["containers", "ls", "-q"]).contains(&id));
    assert!(!file.exists());
    runtime.remove_container(&id).await.expect("remove again");
    runtime
        .remove_pod_sandbox(&sid)
        .await
        .expect("remove sandbox");
    assert!(
        runtime
            .list_pod_sandboxes(&Default::default())
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_of_a_pod_share_its_network_namespace() {
    use std::os::unix::fs::MetadataExt;
    let daemon = Containerd::start().await;
    let runtime = with_busybox(&daemon).await;
    let sandbox = pod("shared");
    let sid = runtime.run_pod_sandbox(&sandbox).await.expect("sandbox");
    let netns = runtime
        .pod_sandbox_status(&sid)
        .await
        .expect("status")
        .netns_path
        .expect("a netns");
    let expected = format!(
        "net:[{}]",
        std::fs::metadata(&netns).expect("netns file").ino()
    );
    for name in ["a", "b"] {
        let id = runtime
            .create_container(&sid, &shell(name, "readlink /proc/self/ns/net"), &sandbox)
            .await
            .expect("create");
        assert_eq!(run_to_exit(&runtime, &id).await.exit_code(), Some(0));
        let lines = log_lines(&runtime, &id).await;
        assert_eq!(
            lines.first().map(|l| l.line.as_str()),
            Some(expected.as_str())
        );
    }
    runtime
        .remove_pod_sandbox(&sid)
        .await
        .expect("remove sandbox");
    assert!(!netns.exists(), "the pod's own namespace goes with it");
    assert!(daemon.ctr(&["containers", "ls", "-q"]).trim().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sends_term_then_kill_once_the_grace_period_ends() {
    let daemon = Containerd::start().await;
    let runtime = with_busybox(&daemon).await;
    let sandbox = pod("stopper");
    let sid = runtime.run_pod_sandbox(&sandbox).await.expect("sandbox");
    let graceful = runtime
        .create_container(
            &sid,
            &shell(
                "graceful",
                "trap 'echo terminating; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
            ),
            &sandbox,
        )
        .await
        .expect("create");
    let stubborn = runtime
        .create_container(
            &sid,
            &shell(
                "stubborn",
                "trap '' TERM; echo ready; while true; do sleep 0.1; done",
            ),
            &sandbox,
        )
        .await
        .expect("create");
    for id in [&graceful, &stubborn] {
        runtime.start_container(id).await.expect("start");
        // Stop only once the trap is set: the script says so in its log.
        let mut follow = runtime
            .logs(
                id,
                &LogOptions {
                    follow: true,
                    ..Default::default()
                },
            )
            .await
            .expect("follow");
        let first = tokio::time::timeout(Duration::from_secs(60), follow.next())
            .await
            .expect("the container logs within 60 s");
        assert_eq!(first.map(|l| l.line), Some("ready".to_string()));
    }

    runtime
        .stop_container(&graceful, Duration::from_secs(30))
        .await
        .expect("stop graceful");
    let state = runtime
        .container_status(&graceful)
        .await
        .expect("status")
        .state;
    assert_eq!(state.exit_code(), Some(0), "{state:?}");
    let lines = log_lines(&runtime, &graceful).await;
    assert!(lines.iter().any(|l| l.line == "terminating"), "{lines:?}");

    let before = Instant::now();
    runtime
        .stop_container(&stubborn, Duration::from_secs(1))
        .await
        .expect("stop stubborn");
    assert!(before.elapsed() >= Duration::from_secs(1));
    match runtime
        .container_status(&stubborn)
        .await
        .expect("status")
        .state
    {
        ContainerState::Exited {
            exit_code, reason, ..
        } => assert_eq!((exit_code, reason.as_str()), (137, "Error")),
        other => panic!("{other:?}"),
    }
    // Stopping an exited container is fine.
    runtime
        .stop_container(&stubborn, Duration::from_secs(1))
        .await
        .expect("stop again");
    runtime
        .remove_pod_sandbox(&sid)
        .await
        .expect("remove sandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let daemon = Containerd::start().await;
    let runtime = with_busybox(&daemon).await;
    let mut config = shell("grow", "a=x; while true; do a=\"$a$a\"; done");
    config.resources = ContainerResources {
        memory_limit_bytes: Some(16 << 20),
        ..Default::default()
    };
    match run_in_pod(&runtime, "hungry", &config).await.0 {
        ContainerState::Exited {
            exit_code, reason, ..
        } => assert_eq!((exit_code, reason.as_str()), (137, "OOMKilled")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_does_not_exist_fails_to_start() {
    let daemon = Containerd::start().await;
    let runtime = with_busybox(&daemon).await;
    let sandbox = pod("broken");
    let sid = runtime.run_pod_sandbox(&sandbox).await.expect("sandbox");
    let mut config = shell("missing", "");
    config.command = vec!["/bin/nope".into()];
    let id = runtime
        .create_container(&sid, &config, &sandbox)
        .await
        .expect("create");
    let err = runtime
        .start_container(&id)
        .await
        .expect_err("no such binary");
    assert!(err.to_string().contains("/bin/nope"), "{err}");
    match runtime.container_status(&id).await.expect("status").state {
        ContainerState::Exited {
            reason, message, ..
        } => {
            assert_eq!(reason, "StartError");
            assert!(message.contains("/bin/nope"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // An image that is not there is refused at create, leaving nothing behind.
    let mut absent = shell("absent", "true");
    absent.image = "nothing:here".into();
    match runtime.create_container(&sid, &absent, &sandbox).await {
        Err(Error::ImageNotFound { image }) => assert_eq!(image, "nothing:here"),
        other => panic!("expected ImageNotFound, got {other:?}"),
    }
    runtime
        .remove_pod_sandbox(&sid)
        .await
        .expect("remove sandbox");
    assert!(daemon.ctr(&["containers", "ls", "-q"]).trim().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_in_the_container_with_its_mounts_and_streams() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let daemon = Containerd::start().await;
    let runtime = with_busybox(&daemon).await;
    let volume = tempfile::tempdir().expect("volume dir");
    std::fs::write(volume.path().join("key"), "value-1").expect("write");
    let sandbox = pod("exec");
    let sid = runtime.run_pod_sandbox(&sandbox).await.expect("sandbox");
    let mut config = shell("main", "echo ready; while true; do sleep 1; done");
    config.env = vec![("WHO".into(), "pod".into())];
    config.mounts = vec![Mount {
        container_path: "/etc/config".into(),
        host_path: volume.path().into(),
        readonly: true,
    }];
    let id = runtime
        .create_container(&sid, &config, &sandbox)
        .await
        .expect("create");
    runtime.start_container(&id).await.expect("start");
    let cmd = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let out = runtime
        .exec_sync(
            &id,
            &cmd(&["cat", "/etc/config/key"]),
            Duration::from_secs(60),
        )
        .await
        .expect("exec cat");
    assert_eq!((out.exit_code, &out.stdout[..]), (0, &b"value-1"[..]));
    // A change on the host shows through the bind mount.
    std::fs::write(volume.path().join("key"), "value-2").expect("rewrite");
    let out = runtime
        .exec_sync(
            &id,
            &cmd(&[
                "sh",
                "-c",
                "cat /etc/config/key; echo \" $WHO\" >&2; exit 4",
            ]),
            Duration::from_secs(60),
        )
        .await
        .expect("exec sh");
    assert_eq!(out.exit_code, 4);
    assert_eq!(&out.stdout[..], b"value-2");
    assert_eq!(&out.stderr[..], b" pod\n");

    // Interactive: stdin in, stdout out, the exit code at the end.
    let mut session = runtime
        .exec(
            &id,
            kybernetes_runtime::ExecRequest {
                cmd: cmd(&["cat"]),
                stdin: true,
                stdout: true,
                ..Default::default()
            },
        )
        .await
        .expect("exec cat -");
    let mut stdin = session.stdin.take().expect("stdin");
    stdin
        .write_all(b"echoed back\n")
        .await
        .expect("write stdin");
    drop(stdin);
    let mut echoed = String::new();
    session
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut echoed)
        .await
        .expect("read stdout");
    assert_eq!(echoed, "echoed back\n");
    assert_eq!(session.exit.await.expect("exit"), 0);

    // A command still running at the timeout is a timeout.
    match runtime
        .exec_sync(&id, &cmd(&["sleep", "60"]), Duration::from_secs(1))
        .await
    {
        Err(Error::Timeout { .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    runtime
        .stop_container(&id, Duration::from_secs(1))
        .await
        .expect("stop");
    match runtime
        .exec_sync(&id, &cmd(&["true"]), Duration::from_secs(10))
        .await
    {
        Err(Error::InvalidState { .. }) => {}
        other => panic!("exec in an exited container: {other:?}"),
    }
    runtime
        .remove_pod_sandbox(&sid)
        .await
        .expect("remove sandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_probes_at_the_pod_ip_reach_a_server_in_the_pods_own_namespace() {
    use kybernetes_runtime::{HttpScheme, ProbeAction, ProbeKind, ProbeRequest};
    let daemon = Containerd::start().await;
    let runtime = with_busybox(&daemon).await;
    // The address a Network assigned without preparing a namespace: nothing routes to it.
    let mut sandbox = pod("served");
    sandbox.pod_ip = Some("10.244.7.7".parse().expect("ip"));
    let sid = runtime.run_pod_sandbox(&sandbox).await.expect("sandbox");
    let id = runtime
        .create_container(
            &sid,
            &shell(
                "httpd",
                "echo ok > /tmp/ready; exec httpd -f -p 8080 -h /tmp",
            ),
            &sandbox,
        )
        .await
        .expect("create");
    runtime.start_container(&id).await.expect("start");
    let probe = |path: &str, host: &str| ProbeRequest {
        kind: ProbeKind::Readiness,
        action: ProbeAction::HttpGet {
            scheme: HttpScheme::Http,
            host: host.into(),
            port: 8080,
            path: path.into(),
            headers: Vec::new(),
        },
        timeout: Duration::from_secs(5),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let result = runtime.probe(&id, &probe("/ready", "10.244.7.7")).await;
        if result.is_success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "httpd never answered: {result:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The same server, with an empty host; a missing file is a failure with its status.
    assert!(runtime.probe(&id, &probe("/ready", "")).await.is_success());
    let missing = runtime.probe(&id, &probe("/absent", "10.244.7.7")).await;
    assert_eq!(
        missing,
        kybernetes_runtime::ProbeResult::Failure("HTTP probe failed with statuscode: 404".into())
    );
    let tcp = ProbeRequest {
        kind: ProbeKind::Liveness,
        action: ProbeAction::TcpSocket {
            host: "10.244.7.7".into(),
            port: 8080,
        },
        timeout: Duration::from_secs(5),
    };
    assert!(runtime.probe(&id, &tcp).await.is_success());
    runtime
        .remove_pod_sandbox(&sid)
        .await
        .expect("remove sandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_dropped_without_shutdown_unmounts_the_namespaces_it_made() {
    let daemon = Containerd::start().await;
    let runtime = daemon.runtime().await;
    let sid = runtime
        .run_pod_sandbox(&pod("forgotten"))
        .await
        .expect("sandbox");
    let netns = runtime
        .pod_sandbox_status(&sid)
        .await
        .expect("status")
        .netns_path
        .expect("a netns");
    let root = runtime.root().to_path_buf();
    assert!(netns.starts_with(&root), "{}", netns.display());
    let mounted = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .contains(&*netns.to_string_lossy())
    };
    assert!(mounted(), "the pod's namespace is a mount");
    drop(runtime);
    assert!(!mounted(), "its mount goes with the runtime");
    assert!(!root.exists(), "and so does the runtime's own root");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_read_the_pods_dns_config_as_their_resolv_conf() {
    let daemon = Containerd::start().await;
    let runtime = with_busybox(&daemon).await;
    let mut sandbox = pod("dns");
    sandbox.dns_config = Some(kybernetes_runtime::DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec![
            "default.svc.cluster.local".into(),
            "svc.cluster.local".into(),
        ],
        options: vec!["ndots:5".into()],
    });
    let sid = runtime.run_pod_sandbox(&sandbox).await.expect("sandbox");
    let config = shell("cat", "cat /etc/resolv.conf");
    let id = runtime
        .create_container(&sid, &config, &sandbox)
        .await
        .expect("create");
    run_to_exit(&runtime, &id).await;
    let text: Vec<String> = log_lines(&runtime, &id)
        .await
        .into_iter()
        .map(|l| l.line)
        .collect();
    assert_eq!(
        text,
        [
            "search default.svc.cluster.local svc.cluster.local",
            "nameserver 10.96.0.10",
            "options ndots:5"
        ]
    );
    runtime
        .remove_pod_sandbox(&sid)
        .await
        .expect("remove sandbox");
}
