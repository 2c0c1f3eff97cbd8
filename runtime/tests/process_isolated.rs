//! ProcessRuntime in isolated mode: containers under runc in their own namespaces and
//! cgroups. Needs root and runc (scripts/test installs runc and busybox-static); without
//! them these tests fail, not skip.

#[path = "support/busybox.rs"]
mod busybox;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use kybernetes_runtime::process::{ImageCommand, ProcessRuntime};
use kybernetes_runtime::*;

/// An isolated runtime with `image: shell` mapped to `/bin/sh -c` on the host's files.
fn runtime() -> ProcessRuntime {
    assert!(
        rustix::process::geteuid().is_root(),
        "isolated mode needs root (scripts/test runs the tests as root)"
    );
    ProcessRuntime::builder()
        .isolated()
        .image("shell", ImageCommand::prefix(["/bin/sh", "-c"]))
        .build()
}

fn container(name: &str, image: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata {
            name: name.into(),
            attempt: 0,
        },
        image: image.into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

async fn sandbox(runtime: &ProcessRuntime, name: &str) -> (String, PodSandboxConfig) {
    let config = PodSandboxConfig {
        metadata: PodSandboxMetadata {
            name: name.into(),
            namespace: "default".into(),
            uid: format!("uid-{name}"),
            attempt: 0,
        },
        hostname: name.into(),
        log_directory: PathBuf::from(format!("/var/log/pods/default_{name}")),
        ..Default::default()
    };
    let id = runtime.run_pod_sandbox(&config).await.expect("sandbox");
    (id, config)
}

/// Creates and starts `config`; returns its id.
async fn start(
    runtime: &ProcessRuntime,
    sandbox: &(String, PodSandboxConfig),
    config: &ContainerConfig,
) -> String {
    runtime.pull_image(&config.image).await.expect("pull");
    let id = runtime
        .create_container(&sandbox.0, config, &sandbox.1)
        .await
        .expect("create");
    runtime.start_container(&id).await.expect("start");
    id
}

/// Waits (up to a minute) until container `id` has exited; its final status.
async fn exited(runtime: &ProcessRuntime, id: &str) -> ContainerStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = runtime.container_status(id).await.expect("status");
        if matches!(status.state, ContainerState::Exited { .. }) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "container {id} still {:?}",
            status.state
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until container `id` has logged a line `line`.
async fn logged(runtime: &ProcessRuntime, id: &str, line: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let lines = log_lines(runtime, id).await;
        if lines.iter().any(|l| l == line) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "container {id} never logged {line:?}; it logged {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn log_lines(runtime: &ProcessRuntime, id: &str) -> Vec<String> {
    runtime
        .logs(id, &LogOptions::default())
        .await
        .expect("logs")
        .map(|l| l.line)
        .collect()
        .await
}

fn reason(status: &ContainerStatus) -> (i32, String) {
    match &status.state {
        ContainerState::Exited {
            exit_code, reason, ..
        } => (*exit_code, reason.clone()),
        other => panic!("not exited: {other:?}"),
    }
}

/// Nothing of `runtime` is left: no runc state, cgroups or mounts, its own namespaces gone.
fn assert_nothing_left(root: &Path, state: &Path, cgroup_parent: &str, netns: &[PathBuf]) {
    let listed = std::process::Command::new("runc")
        .arg("--root")
        .arg(state)
        .args(["list", "-q"])
        .output()
        .expect("run runc list");
    assert!(
        String::from_utf8_lossy(&listed.stdout).trim().is_empty(),
        "runc still lists {}",
        String::from_utf8_lossy(&listed.stdout)
    );
    let rel = cgroup_parent.trim_start_matches('/');
    let mut cgroups = vec![Path::new("/sys/fs/cgroup").join(rel)];
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .expect("cgroup root")
        .flatten()
    {
        cgroups.push(h.path().join(rel));
    }
    for c in cgroups {
        assert!(!c.exists(), "cgroup {} is left", c.display());
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let root = root.to_string_lossy();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&*root)).collect();
    assert!(left.is_empty(), "mounts left: {left:#?}");
    for n in netns {
        assert!(!n.exists(), "network namespace {} is left", n.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_has_its_own_network_pid_and_uts_namespaces_and_nothing_is_left_after_shutdown()
{
    let runtime = runtime();
    let sb = sandbox(&runtime, "ns").await;
    let status = runtime.pod_sandbox_status(&sb.0).await.expect("status");
    let netns = status.netns_path.clone().expect("a pod network namespace");
    let host_net = std::fs::metadata("/proc/self/ns/net").expect("ns").ino();
    let pod_net = std::fs::metadata(&netns).expect("pod ns").ino();
    assert_ne!(host_net, pod_net);
    let id = start(
        &runtime,
        &sb,
        &container(
            "ns",
            "shell",
            &["ls /sys/class/net; echo pid $$; hostname; readlink /proc/self/ns/net"],
        ),
    )
    .await;
    let (code, _) = reason(&exited(&runtime, &id).await);
    assert_eq!(code, 0, "logs: {:?}", log_lines(&runtime, &id).await);
    assert_eq!(
        log_lines(&runtime, &id).await,
        ["lo", "pid 1", "ns", &format!("net:[{pod_net}]")]
    );
    let (state, cgroup_parent) = runtime.isolation_paths().expect("isolated");
    let (state, cgroup_parent) = (state.to_path_buf(), cgroup_parent.to_string());
    let root = runtime.root().to_path_buf();
    runtime.shutdown().await.expect("shutdown");
    assert_nothing_left(&root, &state, &cgroup_parent, &[netns]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let runtime = runtime();
    let sb = sandbox(&runtime, "oom").await;
    let mut config = container(
        "hog",
        "shell",
        &["echo growing; a=x; while true; do a=\"$a$a\"; done"],
    );
    config.resources.memory_limit_bytes = Some(32 << 20);
    let id = start(&runtime, &sb, &config).await;
    let status = exited(&runtime, &id).await;
    assert_eq!(reason(&status), (137, "OOMKilled".to_string()));
    assert_eq!(log_lines(&runtime, &id).await, ["growing"]);
    runtime.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_in_the_container_and_stats_come_from_its_cgroup() {
    let runtime = runtime();
    let sb = sandbox(&runtime, "exec").await;
    let config = container(
        "app",
        "shell",
        &["echo started; trap 'exit 0' TERM; while true; do sleep 0.1; done"],
    );
    let id = start(&runtime, &sb, &config).await;
    logged(&runtime, &id, "started").await;
    let out = runtime
        .exec_sync(
            &id,
            &[
                "/bin/sh".into(),
                "-c".into(),
                "hostname; cat /proc/1/cmdline | tr '\\0' ' '".into(),
            ],
            Duration::from_secs(30),
        )
        .await
        .expect("exec");
    assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("exec"));
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("/bin/sh -c echo started")),
        "pid 1 is the container's command: {stdout}"
    );
    let stats = runtime.container_stats(&id).await.expect("stats");
    assert!(stats.memory_working_set_bytes > 0, "{stats:?}");
    let missing = runtime
        .exec_sync(&id, &["/bin/nope".into()], Duration::from_secs(30))
        .await
        .expect("exec of a missing command");
    assert_ne!(missing.exit_code, 0);
    runtime.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sends_term_then_kills_at_the_end_of_the_grace_period() {
    let runtime = runtime();
    let sb = sandbox(&runtime, "stop").await;
    let graceful = start(
        &runtime,
        &sb,
        &container(
            "graceful",
            "shell",
            &["trap 'echo terminating; exit 0' TERM; echo up; while true; do sleep 0.1; done"],
        ),
    )
    .await;
    let stubborn = start(
        &runtime,
        &sb,
        &container(
            "stubborn",
            "shell",
            &["trap '' TERM; echo up; while true; do sleep 0.1; done"],
        ),
    )
    .await;
    logged(&runtime, &graceful, "up").await;
    logged(&runtime, &stubborn, "up").await;
    runtime
        .stop_container(&graceful, Duration::from_secs(30))
        .await
        .expect("stop");
    assert_eq!(reason(&exited(&runtime, &graceful).await).0, 0);
    assert_eq!(log_lines(&runtime, &graceful).await, ["up", "terminating"]);
    runtime
        .stop_container(&stubborn, Duration::from_millis(500))
        .await
        .expect("stop");
    assert_eq!(reason(&exited(&runtime, &stubborn).await).0, 137);
    runtime.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_from_an_oci_archive_is_the_root_filesystem_with_volumes_mounted() {
    let runtime = runtime();
    let images = runtime
        .import_image(busybox::busybox_image("busybox:1.36"))
        .await
        .expect("import busybox");
    assert_eq!(images[0].repo_tags, ["docker.io/library/busybox:1.36"]);
    let volume = tempfile::tempdir().expect("volume");
    std::fs::write(volume.path().join("greeting"), "hello").expect("write");
    let sb = sandbox(&runtime, "image").await;
    let mut config = container("app", "busybox:1.36", &[]);
    // The image's Cmd is `sh` and it has no entrypoint: args alone would replace `sh`.
    config.command = vec!["sh".into()];
    config.args = vec![
        "-c".into(),
        "ls /; cat /etc/config/greeting; echo; echo $PATH; touch /written && echo wrote".into(),
    ];
    config.mounts = vec![Mount {
        container_path: "/etc/config".into(),
        host_path: volume.path().to_path_buf(),
        readonly: true,
    }];
    let id = start(&runtime, &sb, &config).await;
    let status = exited(&runtime, &id).await;
    let lines = log_lines(&runtime, &id).await;
    assert_eq!(reason(&status).0, 0, "{lines:?}");
    // Only the image's directories: the host's /usr is not there.
    assert!(lines.contains(&"bin".to_string()), "{lines:?}");
    assert!(!lines.contains(&"usr".to_string()), "{lines:?}");
    assert!(lines.contains(&"hello".to_string()), "{lines:?}");
    assert!(
        lines.contains(&"/bin".to_string()),
        "the image's PATH: {lines:?}"
    );
    assert!(lines.contains(&"wrote".to_string()), "{lines:?}");
    // A second container of the image does not see what the first wrote.
    let second = container(
        "second",
        "busybox:1.36",
        &["sh", "-c", "ls /written || echo clean"],
    );
    let second = start(&runtime, &sb, &second).await;
    exited(&runtime, &second).await;
    assert!(
        log_lines(&runtime, &second)
            .await
            .contains(&"clean".to_string())
    );
    let (state, cgroup_parent) = runtime.isolation_paths().expect("isolated");
    let (state, cgroup_parent) = (state.to_path_buf(), cgroup_parent.to_string());
    let root = runtime.root().to_path_buf();
    runtime
        .remove_pod_sandbox(&sb.0)
        .await
        .expect("remove sandbox");
    runtime.shutdown().await.expect("shutdown");
    assert_nothing_left(&root, &state, &cgroup_parent, &[]);
}
