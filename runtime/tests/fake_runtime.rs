//! FakeRuntime behaviour: scripted exits, stop with grace, logs, probes, image pulls and
//! events. All under tokio's paused clock.

use std::time::Duration;

use futures::StreamExt;
use kybernetes_runtime::fake::{ContainerScript, ProbeScript, PullFailure, Signal};
use kybernetes_runtime::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn sandbox() -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: PodSandboxMetadata {
            name: "p".into(),
            namespace: "default".into(),
            uid: "uid-1".into(),
            attempt: 0,
        },
        hostname: "p".into(),
        labels: [(labels::POD_UID.to_string(), "uid-1".to_string())].into(),
        pod_ip: Some("10.244.0.5".parse().unwrap()),
        ..Default::default()
    }
}

fn container(name: &str, image: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata {
            name: name.into(),
            attempt: 0,
        },
        image: image.into(),
        ..Default::default()
    }
}

async fn started(fake: &FakeRuntime, name: &str, image: &str) -> String {
    let sb = sandbox();
    let sid = fake.run_pod_sandbox(&sb).await.unwrap();
    fake.pull_image(image).await.unwrap();
    let id = fake
        .create_container(&sid, &container(name, image), &sb)
        .await
        .unwrap();
    fake.start_container(&id).await.unwrap();
    id
}

#[tokio::test(start_paused = true)]
async fn scripted_container_exits_after_its_delay_and_reports_an_event() {
    let fake = FakeRuntime::default();
    fake.script_container(
        "job",
        ContainerScript::new().exit_after(Duration::from_secs(30), 3),
    );
    let mut events = fake.container_events();
    let id = started(&fake, "job", "busybox").await;
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert!(fake.container_status(&id).await.unwrap().state.is_running());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st = fake.container_status(&id).await.unwrap();
    match st.state {
        ContainerState::Exited {
            exit_code,
            reason,
            started_at,
            finished_at,
            ..
        } => {
            assert_eq!(exit_code, 3);
            assert_eq!(reason, "Error");
            assert_eq!((finished_at - started_at.unwrap()).num_seconds(), 30);
        }
        other => panic!("expected exited, got {other:?}"),
    }
    let kinds: Vec<_> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            ContainerEventKind::Created,
            ContainerEventKind::Started,
            ContainerEventKind::Stopped
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn stop_kills_a_container_that_ignores_term_after_the_grace_period() {
    let fake = FakeRuntime::default();
    fake.script_container("stubborn", ContainerScript::new().ignore_term());
    let id = started(&fake, "stubborn", "busybox").await;
    let t0 = tokio::time::Instant::now();
    fake.stop_container(&id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(t0.elapsed(), Duration::from_secs(30));
    assert_eq!(fake.signals(&id), vec![Signal::Term, Signal::Kill]);
    assert_eq!(
        fake.container_status(&id).await.unwrap().state.exit_code(),
        Some(137)
    );

    let polite = started(&fake, "polite", "busybox").await;
    fake.stop_container(&polite, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(fake.signals(&polite), vec![Signal::Term]);
    assert_eq!(
        fake.container_status(&polite)
            .await
            .unwrap()
            .state
            .exit_code(),
        Some(143)
    );
}

#[tokio::test(start_paused = true)]
async fn followed_logs_stream_new_lines_until_the_container_exits() {
    let fake = FakeRuntime::default();
    let id = started(&fake, "app", "busybox").await;
    fake.write_log(&id, "one");
    let mut logs = fake
        .logs(
            &id,
            &LogOptions {
                follow: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(logs.next().await.unwrap().line, "one");
    let f2 = fake.clone();
    let id2 = id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        f2.write_log_to(&id2, LogStreamKind::Stderr, "two");
        f2.exit_container(&id2, 0);
    });
    let two = logs.next().await.unwrap();
    assert_eq!(
        (two.line.as_str(), two.stream),
        ("two", LogStreamKind::Stderr)
    );
    assert!(logs.next().await.is_none());
    let tail = fake
        .logs(
            &id,
            &LogOptions {
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        tail.map(|l| l.line).collect::<Vec<_>>().await,
        vec!["two".to_string()]
    );
}

#[tokio::test(start_paused = true)]
async fn probes_answer_as_scripted() {
    let fake = FakeRuntime::default();
    fake.script_image(
        "web:1",
        ContainerScript::new()
            .liveness(ProbeScript::fail_after(Duration::from_secs(60)))
            .readiness(ProbeScript::sequence([false, true])),
    );
    let id = started(&fake, "web", "web:1").await;
    let req = |kind| ProbeRequest {
        kind,
        action: ProbeAction::Exec {
            command: vec!["true".into()],
        },
        timeout: Duration::from_secs(1),
    };
    assert!(
        fake.probe(&id, &req(ProbeKind::Liveness))
            .await
            .is_success()
    );
    assert!(
        !fake
            .probe(&id, &req(ProbeKind::Readiness))
            .await
            .is_success()
    );
    assert!(
        fake.probe(&id, &req(ProbeKind::Readiness))
            .await
            .is_success()
    );
    assert!(fake.probe(&id, &req(ProbeKind::Startup)).await.is_success());
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert!(
        !fake
            .probe(&id, &req(ProbeKind::Liveness))
            .await
            .is_success()
    );
    assert_eq!(fake.probe_count(&id, ProbeKind::Readiness), 2);
}

#[tokio::test]
async fn exec_probe_uses_the_scripted_command_result() {
    let fake = FakeRuntime::default();
    fake.script_container(
        "db",
        ContainerScript::new().on_exec(&["pg_isready"], ExecResult::exit(2)),
    );
    let id = started(&fake, "db", "postgres:16").await;
    let req = ProbeRequest {
        kind: ProbeKind::Readiness,
        action: ProbeAction::Exec {
            command: vec!["pg_isready".into()],
        },
        timeout: Duration::from_secs(1),
    };
    assert!(!fake.probe(&id, &req).await.is_success());
    let r = fake
        .exec_sync(&id, &["pg_isready".to_string()], Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(r.exit_code, 2);
    assert_eq!(fake.exec_calls().len(), 2);
}

#[tokio::test]
async fn image_pull_failures_are_scripted() {
    let fake = FakeRuntime::default();
    fake.fail_image_pull("nope:1", PullFailure::NotFound);
    fake.fail_image_pull("private:1", PullFailure::Error("unauthorized".into()));
    assert!(matches!(
        fake.pull_image("nope:1").await,
        Err(Error::ImageNotFound { .. })
    ));
    assert!(matches!(
        fake.pull_image("private:1").await,
        Err(Error::ImagePull { .. })
    ));
    fake.allow_image_pull("private:1");
    let img = fake.pull_image("private:1").await.unwrap();
    assert_eq!(
        img.repo_tags,
        vec!["docker.io/library/private:1".to_string()]
    );
    assert!(
        fake.image_status("docker.io/library/private:1")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        fake.pulled_images(),
        vec!["nope:1", "private:1", "private:1"]
    );
    // A container cannot be created from an absent image.
    let sb = sandbox();
    let sid = fake.run_pod_sandbox(&sb).await.unwrap();
    let err = fake
        .create_container(&sid, &container("c", "absent"), &sb)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ImageNotFound { .. }));
    fake.import_image(bytes::Bytes::from_static(b"tar"))
        .await
        .unwrap();
    assert_eq!(fake.imported_images().len(), 1);
}

#[tokio::test]
async fn interactive_exec_streams_stdin_back_for_cat() {
    let fake = FakeRuntime::default();
    let id = started(&fake, "shell", "busybox").await;
    let req = ExecRequest {
        cmd: vec!["cat".into()],
        stdin: true,
        stdout: true,
        ..Default::default()
    };
    let mut session = fake.exec(&id, req).await.unwrap();
    let mut stdin = session.stdin.take().unwrap();
    stdin.write_all(b"hello").await.unwrap();
    drop(stdin);
    let mut out = String::new();
    session
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    assert_eq!(out, "hello");
    assert_eq!(session.exit.await.unwrap(), 0);
}

#[tokio::test]
async fn sandboxes_and_containers_are_listed_by_label_and_removed_together() {
    let fake = FakeRuntime::default();
    let id = started(&fake, "app", "busybox").await;
    let sbs = fake
        .list_pod_sandboxes(&PodSandboxFilter::default().label(labels::POD_UID, "uid-1"))
        .await
        .unwrap();
    assert_eq!(sbs.len(), 1);
    assert_eq!(sbs[0].ip, Some("10.244.0.5".parse().unwrap()));
    let cs = fake
        .list_containers(&ContainerFilter::in_sandbox(&sbs[0].id))
        .await
        .unwrap();
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0].id, id);
    let stats = fake.container_stats(&id).await.unwrap();
    assert!(stats.memory_working_set_bytes > 0);
    fake.remove_pod_sandbox(&sbs[0].id).await.unwrap();
    assert!(fake.containers().is_empty());
    assert!(fake.sandboxes().is_empty());
}
