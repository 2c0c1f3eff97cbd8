//! `pods/log` through the whole cluster: the API server asks the pod's node agent, which
//! reads the fake runtime's log of the right container instance. Runs under tokio's paused
//! clock, so restarts and `sinceSeconds` windows pass at once.

use std::time::Duration;

use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams, PostParams};
use kybernetes::Cluster;
use kybernetes::runtime::FakeRuntime;
use kybernetes::runtime::fake::ContainerScript;
use serde_json::json;

async fn cluster(fake: &FakeRuntime) -> Cluster {
    Cluster::builder()
        .nodes(1)
        .runtime(fake.clone())
        .start()
        .await
        .expect("start")
}

fn pod(name: &str, containers: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": containers}
    }))
    .expect("pod")
}

async fn until_pod(pods: &Api<Pod>, name: &str, check: impl Fn(&Pod) -> bool) -> Pod {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok(Some(p)) = pods.get_opt(name).await
            && check(&p)
        {
            return p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pod {name} never got there"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .map_or(0, |c| c.restart_count)
}

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test(start_paused = true)]
async fn logs_honour_tail_timestamps_limit_and_since() {
    let fake = FakeRuntime::default();
    fake.script_container("app", ContainerScript::new().log_on_start("hello"));
    let c = cluster(&fake).await;
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    pods.create(
        &PostParams::default(),
        &pod("web", json!([{"name": "app", "image": "busybox"}])),
    )
    .await
    .expect("create");
    until_pod(&pods, "web", running).await;
    let id = fake
        .latest_container("default", "web", "app")
        .expect("container")
        .id;

    let all = pods.logs("web", &LogParams::default()).await.expect("logs");
    assert_eq!(all, "hello\n");

    tokio::time::sleep(Duration::from_secs(120)).await;
    fake.write_log(&id, "second");
    fake.write_log(&id, "third");
    let tail = LogParams {
        tail_lines: Some(2),
        ..Default::default()
    };
    assert_eq!(
        pods.logs("web", &tail).await.expect("tail"),
        "second\nthird\n"
    );

    let recent = LogParams {
        since_seconds: Some(60),
        ..Default::default()
    };
    assert_eq!(
        pods.logs("web", &recent).await.expect("since"),
        "second\nthird\n"
    );

    let limited = LogParams {
        limit_bytes: Some(8),
        ..Default::default()
    };
    assert_eq!(
        pods.logs("web", &limited).await.expect("limit"),
        "hello\nse"
    );

    let stamped = LogParams {
        timestamps: true,
        tail_lines: Some(1),
        ..Default::default()
    };
    let line = pods.logs("web", &stamped).await.expect("timestamps");
    let (time, text) = line.trim_end().split_once(' ').expect("a timestamp first");
    assert_eq!(text, "third");
    assert!(
        chrono::DateTime::parse_from_rfc3339(time).is_ok(),
        "an RFC 3339 timestamp: {line:?}"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn follow_streams_new_lines_as_they_are_written() {
    let fake = FakeRuntime::default();
    fake.script_container("app", ContainerScript::new().log_on_start("first"));
    let c = cluster(&fake).await;
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    pods.create(
        &PostParams::default(),
        &pod("tail", json!([{"name": "app", "image": "busybox"}])),
    )
    .await
    .expect("create");
    until_pod(&pods, "tail", running).await;
    let id = fake
        .latest_container("default", "tail", "app")
        .expect("container")
        .id;
    let follow = LogParams {
        follow: true,
        ..Default::default()
    };
    let mut lines = pods
        .log_stream("tail", &follow)
        .await
        .expect("stream")
        .lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.try_next())
        .await
        .expect("first line in time")
        .expect("read");
    assert_eq!(first.as_deref(), Some("first"));
    fake.write_log(&id, "later");
    let later = tokio::time::timeout(Duration::from_secs(30), lines.try_next())
        .await
        .expect("a new line in time")
        .expect("read");
    assert_eq!(later.as_deref(), Some("later"));
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn previous_reads_the_terminated_instance() {
    let fake = FakeRuntime::default();
    fake.script_container(
        "crasher",
        ContainerScript::new()
            .log_on_start("starting")
            .crash_after(Duration::from_secs(5)),
    );
    fake.script_container("steady", ContainerScript::new());
    let c = cluster(&fake).await;
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    pods.create(
        &PostParams::default(),
        &pod("crash", json!([{"name": "crasher", "image": "busybox"}])),
    )
    .await
    .expect("create");
    until_pod(&pods, "crash", |p| restarts(p) >= 1).await;
    let previous = LogParams {
        previous: true,
        ..Default::default()
    };
    assert_eq!(
        pods.logs("crash", &previous).await.expect("previous"),
        "starting\n"
    );

    pods.create(
        &PostParams::default(),
        &pod("calm", json!([{"name": "steady", "image": "busybox"}])),
    )
    .await
    .expect("create");
    until_pod(&pods, "calm", running).await;
    let err = api_error(pods.logs("calm", &previous).await.expect_err("no previous"));
    assert_eq!(err.code, 400);
    assert_eq!(
        err.message,
        "previous terminated container \"steady\" in pod \"calm\" not found"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_container_must_be_named_when_there_are_several_and_options_are_checked() {
    let fake = FakeRuntime::default();
    let c = cluster(&fake).await;
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    pods.create(
        &PostParams::default(),
        &pod(
            "two",
            json!([{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}]),
        ),
    )
    .await
    .expect("create");
    until_pod(&pods, "two", running).await;
    let err = api_error(
        pods.logs("two", &LogParams::default())
            .await
            .expect_err("ambiguous"),
    );
    assert_eq!(err.code, 400);
    assert_eq!(
        err.message,
        "a container name must be specified for pod two, choose one of: [a b]"
    );
    let named = LogParams {
        container: Some("b".into()),
        ..Default::default()
    };
    assert_eq!(pods.logs("two", &named).await.expect("named"), "");
    let wrong = LogParams {
        container: Some("c".into()),
        ..Default::default()
    };
    let err = api_error(pods.logs("two", &wrong).await.expect_err("unknown"));
    assert_eq!(err.message, "container c is not valid for pod two");

    let bad = LogParams {
        container: Some("a".into()),
        tail_lines: Some(-1),
        ..Default::default()
    };
    let err = api_error(pods.logs("two", &bad).await.expect_err("invalid"));
    assert_eq!(err.code, 422);
    assert_eq!(err.reason, "Invalid");
    assert!(err.message.contains("tailLines"), "{}", err.message);

    let missing = api_error(
        pods.logs("nope", &LogParams::default())
            .await
            .expect_err("404"),
    );
    assert_eq!(missing.code, 404);
    c.shutdown().await.expect("shutdown");
}
