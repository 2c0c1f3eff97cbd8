//! Pod lifecycle on the fake runtime, through the whole cluster: restarts with back-off,
//! restart policies, probes, and env from ConfigMaps and Secrets. Tests run under tokio's
//! paused clock, so a 5-minute back-off passes in microseconds.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Event, Pod, Secret, Service};
use kube::api::{Api, ListParams, PostParams};
use kybernetes::Cluster;
use kybernetes::runtime::FakeRuntime;
use kybernetes::runtime::fake::{ContainerScript, ProbeScript};
use serde_json::json;

async fn cluster(fake: &FakeRuntime) -> Cluster {
    Cluster::builder()
        .nodes(1)
        .runtime(fake.clone())
        .start()
        .await
        .expect("start")
}

fn pod(name: &str, restart: &str, container: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"restartPolicy": restart, "containers": [container]}
    }))
    .expect("pod")
}

async fn until_pod(
    pods: &Api<Pod>,
    name: &str,
    within: Duration,
    check: impl Fn(&Pod) -> bool,
) -> Pod {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(Some(p)) = pods.get_opt(name).await
            && check(&p)
        {
            return p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for pod {name}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map(|c| c.restart_count)
        .unwrap_or(0)
}

fn waiting_reason(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(start_paused = true)]
async fn a_crashing_container_restarts_with_growing_back_off_into_crash_loop_back_off() {
    let fake = FakeRuntime::default();
    fake.script_container(
        "crasher",
        ContainerScript::new().crash_after(Duration::from_secs(1)),
    );
    let c = cluster(&fake).await;
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    pods.create(
        &PostParams::default(),
        &pod(
            "crash",
            "Always",
            json!({"name": "crasher", "image": "busybox"}),
        ),
    )
    .await
    .expect("create");
    let start = tokio::time::Instant::now();
    let mut seen = Vec::new();
    let mut loop_back_off = false;
    while seen.len() < 4 {
        let p = until_pod(&pods, "crash", Duration::from_secs(900), |p| {
            restarts(p) > seen.len() as i32
        })
        .await;
        seen.push(start.elapsed());
        loop_back_off |= waiting_reason(&p).as_deref() == Some("CrashLoopBackOff");
    }
    let p = until_pod(&pods, "crash", Duration::from_secs(900), |p| {
        waiting_reason(p).as_deref() == Some("CrashLoopBackOff")
    })
    .await;
    loop_back_off |= waiting_reason(&p).is_some();
    assert!(
        loop_back_off,
        "the container waits in CrashLoopBackOff between restarts"
    );
    let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2).all(|g| g[1] > g[0]),
        "back-off grows between restarts: {gaps:?}"
    );
    assert!(
        gaps[0] >= Duration::from_secs(10),
        "the first back-off is about 10 s: {gaps:?}"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn restart_policy_never_fails_and_on_failure_with_exit_zero_succeeds() {
    let fake = FakeRuntime::default();
    fake.script_container(
        "fails",
        ContainerScript::new().exit_after(Duration::from_secs(2), 3),
    );
    fake.script_container(
        "works",
        ContainerScript::new().complete_after(Duration::from_secs(2)),
    );
    let c = cluster(&fake).await;
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    pods.create(
        &PostParams::default(),
        &pod(
            "never",
            "Never",
            json!({"name": "fails", "image": "busybox"}),
        ),
    )
    .await
    .expect("create");
    pods.create(
        &PostParams::default(),
        &pod(
            "onfailure",
            "OnFailure",
            json!({"name": "works", "image": "busybox"}),
        ),
    )
    .await
    .expect("create");
    let failed = until_pod(&pods, "never", Duration::from_secs(120), |p| {
        phase(p) == "Failed"
    })
    .await;
    let term = failed
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.state)
        .and_then(|s| s.terminated);
    assert_eq!(term.as_ref().map(|t| t.exit_code), Some(3));
    assert_eq!(term.and_then(|t| t.reason).as_deref(), Some("Error"));
    let ok = until_pod(&pods, "onfailure", Duration::from_secs(120), |p| {
        phase(p) == "Succeeded"
    })
    .await;
    assert_eq!(restarts(&ok), 0);
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_failing_liveness_probe_restarts_the_container() {
    let fake = FakeRuntime::default();
    fake.script_container(
        "app",
        ContainerScript::new()
            .run_forever()
            .liveness(ProbeScript::fail_after(Duration::from_secs(20))),
    );
    let c = cluster(&fake).await;
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let container = json!({"name": "app", "image": "busybox",
        "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 5, "failureThreshold": 3}});
    pods.create(&PostParams::default(), &pod("live", "Always", container))
        .await
        .expect("create");
    until_pod(&pods, "live", Duration::from_secs(60), |p| {
        phase(p) == "Running"
    })
    .await;
    until_pod(&pods, "live", Duration::from_secs(300), |p| {
        restarts(p) >= 1
    })
    .await;
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_failing_readiness_probe_removes_the_pod_from_endpoints_without_a_restart() {
    let fake = FakeRuntime::default();
    fake.script_container(
        "web",
        ContainerScript::new()
            .run_forever()
            .readiness(ProbeScript::fail_after(Duration::from_secs(30))),
    );
    let c = cluster(&fake).await;
    let svcs: Api<Service> = Api::default_namespaced(c.client());
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "ready"}, "spec": {"selector": {"app": "ready"}, "ports": [{"port": 80}]}}))
            .expect("svc"),
    )
    .await
    .expect("service");
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let container = json!({"name": "web", "image": "nginx",
        "readinessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 2, "failureThreshold": 1}});
    pods.create(&PostParams::default(), &pod("ready", "Always", container))
        .await
        .expect("create");
    let eps: Api<Endpoints> = Api::default_namespaced(c.client());
    let addresses = |e: &Endpoints, not_ready: bool| -> usize {
        e.subsets
            .iter()
            .flatten()
            .map(|s| {
                if not_ready {
                    s.not_ready_addresses.as_ref()
                } else {
                    s.addresses.as_ref()
                }
                .map_or(0, Vec::len)
            })
            .sum()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    loop {
        if let Ok(Some(e)) = eps.get_opt("ready").await
            && addresses(&e, false) == 1
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ready pod is listed in the endpoints"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let p = until_pod(&pods, "ready", Duration::from_secs(120), |p| !is_ready(p)).await;
    assert_eq!(
        phase(&p),
        "Running",
        "a readiness failure does not stop the pod"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let e = eps.get("ready").await.expect("endpoints");
        if addresses(&e, false) == 0 && addresses(&e, true) == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pod moves to notReadyAddresses"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        restarts(&pods.get("ready").await.expect("pod")),
        0,
        "readiness failures never restart"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn env_from_config_map_and_secret_keys_reaches_the_container() {
    let fake = FakeRuntime::default();
    let c = cluster(&fake).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client());
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "cfg"}, "data": {"mode": "fast", "extra": "1"}}),
        )
        .expect("cm"),
    )
    .await
    .expect("cm");
    let secrets: Api<Secret> = Api::default_namespaced(c.client());
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "creds"}, "data": {"password": "czNjcjN0"}}),
            )
            .expect("secret"),
        )
        .await
        .expect("secret");
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let container = json!({"name": "app", "image": "busybox",
        "env": [
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "PLAIN", "value": "x-$(MODE)"}
        ],
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}]});
    pods.create(&PostParams::default(), &pod("envy", "Always", container))
        .await
        .expect("create");
    until_pod(&pods, "envy", Duration::from_secs(60), |p| {
        phase(p) == "Running"
    })
    .await;
    let created = fake.created_containers();
    let config = created
        .iter()
        .find(|c| c.metadata.name == "app")
        .expect("the runtime saw the container");
    let env: std::collections::BTreeMap<String, String> = config.env.iter().cloned().collect();
    assert_eq!(env.get("MODE").map(String::as_str), Some("fast"));
    assert_eq!(env.get("PASSWORD").map(String::as_str), Some("s3cr3t"));
    assert_eq!(env.get("POD_NAME").map(String::as_str), Some("envy"));
    assert_eq!(env.get("PLAIN").map(String::as_str), Some("x-fast"));
    assert_eq!(env.get("CFG_extra").map(String::as_str), Some("1"));
    c.shutdown().await.expect("shutdown");
}

/// A crash loop writes one `Started` Event whose count grows, not one Event per restart: the
/// node agent's events go through upstream's correlator, as kubelet's do. (Its spam filter
/// then stops the flood: a pod has a burst of 25 events, which the BackOff events spend too.)
#[tokio::test(start_paused = true)]
async fn a_crash_loop_folds_its_repeated_events_into_one_event_with_a_count() {
    let fake = FakeRuntime::default();
    fake.script_container(
        "crasher",
        ContainerScript::new().crash_after(Duration::from_secs(1)),
    );
    let c = cluster(&fake).await;
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    pods.create(
        &PostParams::default(),
        &pod(
            "folded",
            "Always",
            json!({"name": "crasher", "image": "busybox"}),
        ),
    )
    .await
    .expect("create");
    let events: Api<Event> = Api::default_namespaced(c.client());
    let started = || async {
        events
            .list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some("folded"))
            .filter(|e| e.reason.as_deref() == Some("Started"))
            .collect::<Vec<Event>>()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1800);
    loop {
        let found = started().await;
        if found.iter().any(|e| e.count.unwrap_or(1) >= 3) {
            assert_eq!(
                found.len(),
                1,
                "the restarts update one Started event: {found:?}"
            );
            let e = &found[0];
            assert!(
                e.last_timestamp.as_ref().map(|t| &t.0) > e.first_timestamp.as_ref().map(|t| &t.0),
                "lastTimestamp moves past firstTimestamp: {e:?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Started event reached a count of 3: {found:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    c.shutdown().await.expect("shutdown");
}
