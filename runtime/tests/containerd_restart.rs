//! A `ContainerdRuntime` that goes away (detaches, as a process that exits does) and a new
//! one on the same socket, namespace and root: the new one recovers the sandboxes and
//! containers from containerd instead of orphaning them. Each test starts its own containerd
//! (see `support/containerd.rs`) and fails, not skips, without it.

use std::path::Path;
use std::time::Duration;

use kybernetes_runtime::containerd::ContainerdRuntime;
use kybernetes_runtime::{
    ContainerConfig, ContainerFilter, ContainerState, Mount, PodSandboxFilter, PodSandboxState,
    Runtime,
};

#[path = "support/pods.rs"]
mod pods;
#[path = "support/containerd.rs"]
mod support;

use pods::{log_lines, pod, run_to_exit, shell};
use support::{Containerd, busybox_image};

/// How long anything may take on a loaded machine.
const WITHIN: Duration = Duration::from_secs(120);

/// A runtime on `daemon` whose root (logs, FIFOs, namespaces) is `root`, as a node's
/// `/var/lib` directory outlives its agent.
async fn runtime_at(daemon: &Containerd, root: &Path) -> ContainerdRuntime {
    ContainerdRuntime::builder()
        .snapshotter(daemon.snapshotter)
        .root(root)
        .connect(daemon.socket())
        .await
        .expect("connect to containerd")
}

/// The first runtime of a test: on `daemon` with root `root`, the busybox image imported.
async fn first_runtime_at(daemon: &Containerd, root: &Path) -> ContainerdRuntime {
    let runtime = runtime_at(daemon, root).await;
    runtime
        .import_image(busybox_image("busybox:test"))
        .await
        .expect("import busybox");
    runtime
}

/// `sh -c script` in container `main`, with the directory `volume` at `/v`: the test and
/// the container signal each other by making files there.
fn with_volume(script: &str, volume: &Path) -> ContainerConfig {
    let mut config = shell("main", script);
    config.mounts = vec![Mount {
        container_path: "/v".into(),
        host_path: volume.into(),
        readonly: false,
    }];
    config
}

/// Creates `config` in sandbox `sid` of pod `name`, starts it and waits until its log says
/// `text`; returns the container id.
async fn start_until_log(
    runtime: &ContainerdRuntime,
    sid: &str,
    name: &str,
    config: &ContainerConfig,
    text: &str,
) -> String {
    let id = runtime
        .create_container(sid, config, &pod(name))
        .await
        .expect("create");
    runtime.start_container(&id).await.expect("start");
    wait_log(runtime, &id, text).await;
    id
}

/// The runtime goes away as a node agent's process does when it exits: detached, so the
/// containers keep running.
async fn let_go(runtime: ContainerdRuntime) {
    runtime.detach().await.expect("detach");
    drop(runtime);
}

/// Polls `probe` every 50 ms until it gives `Ok`, for at most [`WITHIN`]; past that the test
/// fails with the last `Err`, which says what was awaited and what was seen.
async fn until<T, F>(mut probe: impl FnMut() -> F) -> T
where
    F: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        match probe().await {
            Ok(done) => return done,
            Err(last) => assert!(tokio::time::Instant::now() < deadline, "{last}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `check` holds for container `id`'s state and returns it.
async fn wait_state(
    runtime: &ContainerdRuntime,
    id: &str,
    what: &str,
    check: impl Fn(&ContainerState) -> bool,
) -> ContainerState {
    let check = &check;
    until(|| async move {
        let state = runtime.container_status(id).await.expect("status").state;
        if check(&state) {
            Ok(state)
        } else {
            Err(format!("{id}: timed out waiting for {what}: {state:?}"))
        }
    })
    .await
}

/// Waits until the log of container `id` has a line containing `text`.
async fn wait_log(runtime: &ContainerdRuntime, id: &str, text: &str) {
    until(|| async move {
        let lines = log_lines(runtime, id).await;
        if lines.iter().any(|l| l.line.contains(text)) {
            Ok(())
        } else {
            Err(format!("{id}: no log line with {text:?}: {lines:?}"))
        }
    })
    .await
}

/// Waits until the container has made file `path` (in a volume).
async fn wait_file(path: &Path) {
    until(|| async move {
        if path.exists() {
            Ok(())
        } else {
            Err(format!("{} never appeared", path.display()))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_runtime_reattaches_to_a_running_container_with_the_same_id_and_start() {
    let daemon = Containerd::start().await;
    let root = tempfile::tempdir().expect("root");
    let volume = tempfile::tempdir().expect("volume");
    let first = first_runtime_at(&daemon, root.path()).await;
    let sid = first.run_pod_sandbox(&pod("web")).await.expect("sandbox");
    // It says `after` while no runtime reads its output, then `again` once the test has
    // reconnected: both reach the log through the reattached FIFOs.
    let config = with_volume(
        "trap 'exit 7' TERM; echo before; \
         while [ ! -e /v/go ]; do sleep 1; done; echo after; touch /v/said; \
         while [ ! -e /v/again ]; do sleep 1; done; echo again; \
         while true; do sleep 1; done",
        volume.path(),
    );
    let id = start_until_log(&first, &sid, "web", &config, "before").await;
    let before = first.container_status(&id).await.expect("status");
    assert!(before.state.is_running(), "{before:?}");
    let_go(first).await;
    std::fs::write(volume.path().join("go"), "").expect("write go");
    wait_file(&volume.path().join("said")).await;

    let second = runtime_at(&daemon, root.path()).await;
    let sandboxes = second
        .list_pod_sandboxes(&PodSandboxFilter::default())
        .await
        .expect("sandboxes");
    assert_eq!(sandboxes.len(), 1, "{sandboxes:?}");
    assert_eq!(sandboxes[0].id, sid);
    assert_eq!(sandboxes[0].state, PodSandboxState::Ready);
    assert_eq!(sandboxes[0].metadata, pod("web").metadata);
    let containers = second
        .list_containers(&ContainerFilter::default())
        .await
        .expect("containers");
    assert_eq!(containers.len(), 1, "nothing duplicated: {containers:?}");
    // The same container: id, attempt, labels, start time.
    assert_eq!(containers[0], before);

    wait_log(&second, &id, "after").await;
    std::fs::write(volume.path().join("again"), "").expect("write again");
    wait_log(&second, &id, "again").await;
    second
        .stop_container(&id, Duration::from_secs(30))
        .await
        .expect("stop");
    match second.container_status(&id).await.expect("status").state {
        ContainerState::Exited {
            exit_code,
            started_at,
            ..
        } => {
            assert_eq!(exit_code, 7);
            assert_eq!(started_at, before_started(&before.state));
        }
        other => panic!("not exited: {other:?}"),
    }
    second.remove_pod_sandbox(&sid).await.expect("remove");
    assert_eq!(daemon.ctr(&["containers", "ls", "-q"]).trim(), "");
}

fn before_started(state: &ContainerState) -> Option<chrono::DateTime<chrono::Utc>> {
    match state {
        ContainerState::Running { started_at } => Some(*started_at),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_exited_while_no_runtime_watched_reports_its_exit_code() {
    let daemon = Containerd::start().await;
    let root = tempfile::tempdir().expect("root");
    let volume = tempfile::tempdir().expect("volume");
    let first = first_runtime_at(&daemon, root.path()).await;
    let sid = first.run_pod_sandbox(&pod("job")).await.expect("sandbox");
    let config = with_volume(
        "echo up; while [ ! -e /v/go ]; do sleep 1; done; echo leaving; exit 42",
        volume.path(),
    );
    let id = start_until_log(&first, &sid, "job", &config, "up").await;
    let started = before_started(&first.container_status(&id).await.expect("status").state);
    let_go(first).await;

    // It exits with nobody watching; containerd keeps the stopped task.
    std::fs::write(volume.path().join("go"), "").expect("write go");
    let (daemon_ref, task) = (&daemon, id.as_str());
    until(|| async move {
        let tasks = daemon_ref.ctr(&["tasks", "ls"]);
        if tasks
            .lines()
            .any(|l| l.starts_with(task) && l.contains("STOPPED"))
        {
            Ok(())
        } else {
            Err(format!("the task did not stop: {tasks}"))
        }
    })
    .await;

    let second = runtime_at(&daemon, root.path()).await;
    let state = wait_state(&second, &id, "the exit", |s| {
        matches!(s, ContainerState::Exited { .. })
    })
    .await;
    match state {
        ContainerState::Exited {
            exit_code,
            reason,
            started_at,
            ..
        } => {
            assert_eq!(exit_code, 42);
            assert_eq!(reason, "Error");
            assert_eq!(started_at, started);
        }
        other => panic!("not exited: {other:?}"),
    }
    // What it wrote before the first runtime let go is in the log. (What it wrote after,
    // up to its exit, is lost: the shim closes the FIFOs on the exit, and a FIFO that no
    // one holds open drops what it buffered.)
    wait_log(&second, &id, "up").await;
    // The exit is kept: a third runtime reads it from the record, the task being gone.
    let_go(second).await;
    let third = runtime_at(&daemon, root.path()).await;
    let state = third.container_status(&id).await.expect("status").state;
    assert_eq!(state.exit_code(), Some(42), "{state:?}");
    third.remove_pod_sandbox(&sid).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_never_started_container_stays_created_and_starts_later() {
    let daemon = Containerd::start().await;
    let root = tempfile::tempdir().expect("root");
    let first = first_runtime_at(&daemon, root.path()).await;
    let sid = first.run_pod_sandbox(&pod("late")).await.expect("sandbox");
    let id = first
        .create_container(&sid, &shell("main", "echo hello; exit 3"), &pod("late"))
        .await
        .expect("create");
    let_go(first).await;

    let second = runtime_at(&daemon, root.path()).await;
    let status = second.container_status(&id).await.expect("status");
    assert_eq!(status.state, ContainerState::Created);
    assert_eq!(status.metadata.name, "main");
    assert_eq!(status.metadata.attempt, 0);
    // The node agent starts a container it finds created (an agent stopped between create
    // and start); the recovered one starts as any other.
    let exited = run_to_exit(&second, &id).await;
    assert_eq!(exited.exit_code(), Some(3), "{exited:?}");
    wait_log(&second, &id, "hello").await;
    second.remove_pod_sandbox(&sid).await.expect("remove");
    assert_eq!(daemon.ctr(&["containers", "ls", "-q"]).trim(), "");
}
