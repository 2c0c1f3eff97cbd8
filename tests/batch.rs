//! Jobs through the whole cluster on the fake runtime, under tokio's paused clock: containers
//! are scripted to succeed or fail after a few virtual seconds.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kybernetes::Cluster;
use kybernetes::runtime::FakeRuntime;
use kybernetes::runtime::fake::ContainerScript;
use serde_json::json;

use crate::common;
use common::{PodView, until};

async fn cluster(fake: &FakeRuntime) -> Cluster {
    Cluster::builder()
        .nodes(1)
        .runtime(fake.clone())
        .start()
        .await
        .expect("start")
}

/// A Job named `name` whose pods run one container `container`, labelled `app=<name>`.
fn job(name: &str, container: &str, spec: serde_json::Value) -> Job {
    let mut j = json!({
        "metadata": {"name": name},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"restartPolicy": "Never",
                         "containers": [{"name": container, "image": "busybox"}]}
            }
        }
    });
    if let (Some(s), Some(extra)) = (j["spec"].as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(j).expect("job")
}

fn condition<'a>(j: &'a Job, type_: &str) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

async fn until_job(
    jobs: &Api<Job>,
    name: &str,
    within: Duration,
    check: impl Fn(&Job) -> bool,
) -> Job {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(Some(j)) = jobs.get_opt(name).await
            && check(&j)
        {
            return j;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for job {name}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn is_active(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && p.metadata.deletion_timestamp.is_none()
}

#[tokio::test(start_paused = true)]
async fn a_job_with_five_completions_and_parallelism_two_never_runs_more_than_two_pods_and_completes()
 {
    let fake = FakeRuntime::default();
    fake.script_container(
        "work",
        ContainerScript::new().complete_after(Duration::from_secs(5)),
    );
    let c = cluster(&fake).await;
    let jobs: Api<Job> = Api::default_namespaced(c.client());
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let mut view = PodView::start(&pods, "pi").await;
    jobs.create(
        &PostParams::default(),
        &job("pi", "work", json!({"completions": 5, "parallelism": 2})),
    )
    .await
    .expect("create");
    let mut most_active = 0;
    loop {
        let done = jobs
            .get("pi")
            .await
            .ok()
            .is_some_and(|j| condition(&j, "Complete").is_some());
        if done {
            break;
        }
        view.next().await;
        let active = view.pods.values().filter(|p| is_active(p)).count();
        most_active = most_active.max(active);
        assert!(
            active <= 2,
            "at most parallelism=2 active pods, saw {active}"
        );
    }
    assert_eq!(most_active, 2, "two pods ran side by side");
    let j = jobs.get("pi").await.expect("job");
    let st = j.status.clone().expect("status");
    assert_eq!(st.succeeded, Some(5));
    assert_eq!(st.active, Some(0));
    assert!(st.completion_time.is_some() && st.start_time.is_some());
    let complete = condition(&j, "Complete").expect("Complete");
    assert_eq!(complete.reason.as_deref(), Some("CompletionsReached"));
    assert!(condition(&j, "SuccessCriteriaMet").is_some());
    let list = pods
        .list(&ListParams::default().labels("app=pi"))
        .await
        .expect("pods");
    assert_eq!(list.items.len(), 5);
    for p in &list.items {
        assert!(
            !p.metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == "batch.kubernetes.io/job-tracking"),
            "counted pods lose the tracking finalizer"
        );
        let labels = p.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels
                .get("batch.kubernetes.io/job-name")
                .map(String::as_str),
            Some("pi")
        );
        assert_eq!(labels.get("job-name").map(String::as_str), Some("pi"));
        assert_eq!(
            labels.get("batch.kubernetes.io/controller-uid"),
            j.metadata.uid.as_ref()
        );
    }
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn failing_pods_stop_at_the_backoff_limit_with_a_growing_back_off() {
    let fake = FakeRuntime::default();
    fake.script_container(
        "boom",
        ContainerScript::new().exit_after(Duration::from_secs(1), 1),
    );
    let c = cluster(&fake).await;
    let jobs: Api<Job> = Api::default_namespaced(c.client());
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    jobs.create(
        &PostParams::default(),
        &job("flaky", "boom", json!({"backoffLimit": 3})),
    )
    .await
    .expect("create");
    let j = until_job(&jobs, "flaky", Duration::from_secs(1800), |j| {
        condition(j, "Failed").is_some()
    })
    .await;
    let failed = condition(&j, "Failed").expect("Failed");
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(
        failed.message.as_deref(),
        Some("Job has reached the specified backoff limit")
    );
    assert!(condition(&j, "FailureTarget").is_some());
    assert_eq!(j.status.as_ref().and_then(|s| s.failed), Some(4));
    let mut created: Vec<i64> = pods
        .list(&ListParams::default().labels("app=flaky"))
        .await
        .expect("pods")
        .items
        .iter()
        .filter_map(|p| {
            p.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second())
        })
        .collect();
    created.sort();
    assert_eq!(created.len(), 4, "backoffLimit 3 allows four pods");
    let gaps: Vec<i64> = created.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2).all(|g| g[1] > g[0]),
        "the back-off grows: {gaps:?}"
    );
    assert!(gaps[0] >= 10, "the first back-off is 10 s: {gaps:?}");
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn an_indexed_job_runs_indexes_zero_to_four_with_stable_hostnames() {
    let fake = FakeRuntime::default();
    fake.script_container(
        "work",
        ContainerScript::new().complete_after(Duration::from_secs(3)),
    );
    let c = cluster(&fake).await;
    let jobs: Api<Job> = Api::default_namespaced(c.client());
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    jobs.create(
        &PostParams::default(),
        &job(
            "idx",
            "work",
            json!({"completions": 5, "parallelism": 3, "completionMode": "Indexed"}),
        ),
    )
    .await
    .expect("create");
    let j = until_job(&jobs, "idx", Duration::from_secs(600), |j| {
        condition(j, "Complete").is_some()
    })
    .await;
    let st = j.status.expect("status");
    assert_eq!(st.completed_indexes.as_deref(), Some("0-4"));
    assert_eq!(st.succeeded, Some(5));
    let list = pods
        .list(&ListParams::default().labels("app=idx"))
        .await
        .expect("pods");
    let mut indexes = BTreeSet::new();
    for p in &list.items {
        let index = p
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("batch.kubernetes.io/job-completion-index"))
            .cloned()
            .expect("index annotation");
        assert_eq!(
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("batch.kubernetes.io/job-completion-index")),
            Some(&index)
        );
        assert_eq!(
            p.spec.as_ref().and_then(|s| s.hostname.clone()),
            Some(format!("idx-{index}"))
        );
        indexes.insert(index);
    }
    assert_eq!(indexes, ["0", "1", "2", "3", "4"].map(String::from).into());
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn active_deadline_seconds_fails_the_job_with_deadline_exceeded() {
    let fake = FakeRuntime::default();
    fake.script_container("sleep", ContainerScript::new().run_forever());
    let c = cluster(&fake).await;
    let jobs: Api<Job> = Api::default_namespaced(c.client());
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    jobs.create(
        &PostParams::default(),
        &job("slow", "sleep", json!({"activeDeadlineSeconds": 30})),
    )
    .await
    .expect("create");
    let j = until_job(&jobs, "slow", Duration::from_secs(300), |j| {
        condition(j, "Failed").is_some()
    })
    .await;
    let failed = condition(&j, "Failed").expect("Failed");
    assert_eq!(failed.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        failed.message.as_deref(),
        Some("Job was active longer than specified deadline")
    );
    assert_eq!(j.status.as_ref().and_then(|s| s.active), Some(0));
    until("the pod to be gone", Duration::from_secs(120), || {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default().labels("app=slow"))
                .await
                .is_ok_and(|l| l.items.iter().all(|p| !is_active(p)))
        }
    })
    .await;
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn ttl_seconds_after_finished_deletes_the_finished_job() {
    let fake = FakeRuntime::default();
    fake.script_container(
        "work",
        ContainerScript::new().complete_after(Duration::from_secs(2)),
    );
    let c = cluster(&fake).await;
    let jobs: Api<Job> = Api::default_namespaced(c.client());
    jobs.create(
        &PostParams::default(),
        &job("once", "work", json!({"ttlSecondsAfterFinished": 60})),
    )
    .await
    .expect("create");
    until_job(&jobs, "once", Duration::from_secs(120), |j| {
        condition(j, "Complete").is_some()
    })
    .await;
    until("the job to be deleted", Duration::from_secs(300), || {
        let jobs = jobs.clone();
        async move { jobs.get_opt("once").await.is_ok_and(|j| j.is_none()) }
    })
    .await;
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_fail_job_rule_of_the_pod_failure_policy_fails_the_job_at_once() {
    let fake = FakeRuntime::default();
    fake.script_container(
        "main",
        ContainerScript::new().exit_after(Duration::from_secs(1), 42),
    );
    let c = cluster(&fake).await;
    let jobs: Api<Job> = Api::default_namespaced(c.client());
    let policy = json!({"backoffLimit": 6, "podFailurePolicy": {"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}}
    ]}});
    jobs.create(&PostParams::default(), &job("policy", "main", policy))
        .await
        .expect("create");
    let j = until_job(&jobs, "policy", Duration::from_secs(300), |j| {
        condition(j, "Failed").is_some()
    })
    .await;
    let failed = condition(&j, "Failed").expect("Failed");
    assert_eq!(failed.reason.as_deref(), Some("PodFailurePolicy"));
    let message = failed.message.clone().unwrap_or_default();
    assert!(
        message.starts_with("Container main for pod default/policy-")
            && message.ends_with("failed with exit code 42 matching FailJob rule at index 0"),
        "{message}"
    );
    assert_eq!(j.status.as_ref().and_then(|s| s.failed), Some(1));
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_suspended_job_runs_no_pods_until_resumed() {
    let fake = FakeRuntime::default();
    fake.script_container(
        "work",
        ContainerScript::new().complete_after(Duration::from_secs(2)),
    );
    let c = cluster(&fake).await;
    let jobs: Api<Job> = Api::default_namespaced(c.client());
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    jobs.create(
        &PostParams::default(),
        &job("later", "work", json!({"suspend": true})),
    )
    .await
    .expect("create");
    let j = until_job(&jobs, "later", Duration::from_secs(60), |j| {
        condition(j, "Suspended").is_some()
    })
    .await;
    let suspended = condition(&j, "Suspended").expect("Suspended");
    assert_eq!(suspended.reason.as_deref(), Some("JobSuspended"));
    assert!(
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .is_none()
    );
    let list = pods
        .list(&ListParams::default().labels("app=later"))
        .await
        .expect("pods");
    assert!(list.items.is_empty(), "a suspended job creates no pods");
    jobs.patch(
        "later",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .expect("resume");
    let j = until_job(&jobs, "later", Duration::from_secs(120), |j| {
        condition(j, "Complete").is_some()
    })
    .await;
    let resumed = j
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Suspended"))
        .expect("Suspended condition");
    assert_eq!(
        (resumed.status.as_str(), resumed.reason.as_deref()),
        ("False", Some("JobResumed"))
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn invalid_jobs_are_rejected_with_422_and_a_cause_per_field() {
    let c = Cluster::builder().start().await.expect("start");
    let jobs: Api<Job> = Api::default_namespaced(c.client());
    let mut bad = job("bad", "work", json!({"completions": -1, "parallelism": -2}));
    if let Some(spec) = bad.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        spec.restart_policy = Some("Always".into());
    }
    let err = jobs
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("invalid");
    let kube::Error::Api(status) = err else {
        panic!("an API error: {err:?}")
    };
    assert_eq!(status.code, 422);
    assert!(
        status
            .message
            .contains("spec.completions: Invalid value: -1: must be greater than or equal to 0"),
        "{}",
        status.message
    );
    assert!(
        status.message.contains("spec.parallelism"),
        "{}",
        status.message
    );
    assert!(
        status
            .message
            .contains("spec.template.spec.restartPolicy: Unsupported value: \"Always\""),
        "{}",
        status.message
    );
    let mismatched = job(
        "mismatch",
        "work",
        json!({"manualSelector": true, "selector": {"matchLabels": {"app": "other"}}}),
    );
    let err = jobs
        .create(&PostParams::default(), &mismatched)
        .await
        .expect_err("invalid");
    let kube::Error::Api(status) = err else {
        panic!("an API error: {err:?}")
    };
    assert_eq!(status.code, 422);
    assert!(
        status
            .message
            .contains("`selector` does not match template `labels`"),
        "{}",
        status.message
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn deleting_a_running_job_removes_its_pods_despite_the_tracking_finalizer() {
    let fake = FakeRuntime::default();
    fake.script_container("sleep", ContainerScript::new().run_forever());
    let c = cluster(&fake).await;
    let jobs: Api<Job> = Api::default_namespaced(c.client());
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    jobs.create(&PostParams::default(), &job("gone", "sleep", json!({})))
        .await
        .expect("create");
    until_job(&jobs, "gone", Duration::from_secs(60), |j| {
        j.status.as_ref().and_then(|s| s.active) == Some(1)
    })
    .await;
    jobs.delete(
        "gone",
        &kube::api::DeleteParams {
            propagation_policy: Some(kube::api::PropagationPolicy::Background),
            ..Default::default()
        },
    )
    .await
    .expect("delete");
    until("the job's pod to be gone", Duration::from_secs(300), || {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default().labels("app=gone"))
                .await
                .is_ok_and(|l| l.items.is_empty())
        }
    })
    .await;
    c.shutdown().await.expect("shutdown");
}
