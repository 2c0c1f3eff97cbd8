//! CronJobs through the whole cluster on the fake runtime, under tokio's paused clock, so an
//! hour of schedules passes in moments.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, ListParams, PostParams};
use kybernetes::Cluster;
use kybernetes::runtime::FakeRuntime;
use kybernetes::runtime::fake::ContainerScript;
use serde_json::json;

use crate::common;
use common::until;

async fn cluster(fake: &FakeRuntime) -> Cluster {
    Cluster::builder()
        .nodes(1)
        .runtime(fake.clone())
        .start()
        .await
        .expect("start")
}

/// A CronJob `name` on `schedule` whose Jobs run one container `container` and are labelled
/// `cron=<name>`.
fn cronjob(name: &str, schedule: &str, container: &str, extra: serde_json::Value) -> CronJob {
    let mut cj = json!({
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {
                "metadata": {"labels": {"cron": name}},
                "spec": {"template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": container, "image": "busybox"}]
                }}}
            }
        }
    });
    if let (Some(s), Some(extra)) = (cj["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(cj).expect("cronjob")
}

async fn jobs_of(jobs: &Api<Job>, name: &str) -> Vec<Job> {
    jobs.list(&ListParams::default().labels(&format!("cron={name}")))
        .await
        .expect("jobs")
        .items
}

fn finished(j: &Job, type_: &str) -> bool {
    j.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

#[tokio::test(start_paused = true)]
async fn every_five_minutes_runs_twelve_jobs_in_one_virtual_hour() {
    let fake = FakeRuntime::default();
    fake.script_container(
        "tick",
        ContainerScript::new().complete_after(Duration::from_secs(20)),
    );
    let c = cluster(&fake).await;
    let cronjobs: Api<CronJob> = Api::default_namespaced(c.client());
    let jobs: Api<Job> = Api::default_namespaced(c.client());
    let start = c.clock().now().timestamp();
    cronjobs
        .create(
            &PostParams::default(),
            &cronjob(
                "tick",
                "*/5 * * * *",
                "tick",
                json!({"successfulJobsHistoryLimit": 20}),
            ),
        )
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_secs(3600 + 60)).await;
    let end = start + 3600;
    let mut scheduled: Vec<i64> = jobs_of(&jobs, "tick")
        .await
        .iter()
        .filter_map(|j| {
            let a = j.metadata.annotations.as_ref()?;
            let t = a.get("batch.kubernetes.io/cronjob-scheduled-timestamp")?;
            t.parse::<k8s_openapi::jiff::Timestamp>()
                .ok()
                .map(|t| t.as_second())
        })
        .filter(|t| *t > start && *t <= end)
        .collect();
    scheduled.sort();
    assert_eq!(
        scheduled.len(),
        12,
        "one job per five minutes: {scheduled:?}"
    );
    assert!(
        scheduled.windows(2).all(|w| w[1] - w[0] == 300),
        "{scheduled:?}"
    );
    for j in jobs_of(&jobs, "tick").await {
        let name = j.metadata.name.clone().unwrap_or_default();
        let minutes: i64 = name
            .trim_start_matches("tick-")
            .parse()
            .expect("minutes in the name");
        assert_eq!(minutes % 5, 0, "{name} is named after its scheduled minute");
    }
    let cj = cronjobs.get("tick").await.expect("cronjob");
    let st = cj.status.expect("status");
    assert!(st.last_schedule_time.is_some());
    assert!(st.last_successful_time.is_some());
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn forbid_skips_runs_while_a_long_job_is_still_running() {
    let fake = FakeRuntime::default();
    fake.script_container("long", ContainerScript::new().run_forever());
    let c = cluster(&fake).await;
    let cronjobs: Api<CronJob> = Api::default_namespaced(c.client());
    let jobs: Api<Job> = Api::default_namespaced(c.client());
    cronjobs
        .create(
            &PostParams::default(),
            &cronjob(
                "long",
                "* * * * *",
                "long",
                json!({"concurrencyPolicy": "Forbid"}),
            ),
        )
        .await
        .expect("create");
    until("the first job", Duration::from_secs(120), || {
        let jobs = jobs.clone();
        async move { !jobs_of(&jobs, "long").await.is_empty() }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10 * 60)).await;
    let all = jobs_of(&jobs, "long").await;
    assert_eq!(all.len(), 1, "no second job while the first runs");
    let st = cronjobs
        .get("long")
        .await
        .expect("cronjob")
        .status
        .expect("status");
    assert_eq!(st.active.map(|a| a.len()), Some(1));
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn replace_deletes_the_running_job_for_the_next_run() {
    let fake = FakeRuntime::default();
    fake.script_container("long", ContainerScript::new().run_forever());
    let c = cluster(&fake).await;
    let cronjobs: Api<CronJob> = Api::default_namespaced(c.client());
    let jobs: Api<Job> = Api::default_namespaced(c.client());
    cronjobs
        .create(
            &PostParams::default(),
            &cronjob(
                "swap",
                "* * * * *",
                "long",
                json!({"concurrencyPolicy": "Replace"}),
            ),
        )
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_secs(5 * 60 + 30)).await;
    until(
        "one live job after replacements",
        Duration::from_secs(300),
        || {
            let jobs = jobs.clone();
            async move {
                let live: Vec<Job> = jobs_of(&jobs, "swap")
                    .await
                    .into_iter()
                    .filter(|j| j.metadata.deletion_timestamp.is_none())
                    .collect();
                live.len() == 1
            }
        },
    )
    .await;
    let st = cronjobs
        .get("swap")
        .await
        .expect("cronjob")
        .status
        .expect("status");
    assert_eq!(st.active.map(|a| a.len()), Some(1));
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn history_limits_prune_old_finished_jobs() {
    let fake = FakeRuntime::default();
    fake.script_container(
        "ok",
        ContainerScript::new().complete_after(Duration::from_secs(5)),
    );
    fake.script_container(
        "bad",
        ContainerScript::new().exit_after(Duration::from_secs(5), 1),
    );
    let c = cluster(&fake).await;
    let cronjobs: Api<CronJob> = Api::default_namespaced(c.client());
    let jobs: Api<Job> = Api::default_namespaced(c.client());
    cronjobs
        .create(
            &PostParams::default(),
            &cronjob(
                "good",
                "* * * * *",
                "ok",
                json!({"successfulJobsHistoryLimit": 2}),
            ),
        )
        .await
        .expect("create");
    let mut failing = cronjob(
        "failing",
        "* * * * *",
        "bad",
        json!({"failedJobsHistoryLimit": 1}),
    );
    if let Some(spec) = failing
        .spec
        .as_mut()
        .and_then(|s| s.job_template.spec.as_mut())
    {
        spec.backoff_limit = Some(0);
    }
    cronjobs
        .create(&PostParams::default(), &failing)
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_secs(10 * 60)).await;
    until(
        "history pruned to the limits",
        Duration::from_secs(300),
        || {
            let jobs = jobs.clone();
            async move {
                let good = jobs_of(&jobs, "good").await;
                let bad = jobs_of(&jobs, "failing").await;
                let done = |js: &[Job], t: &str| {
                    js.iter()
                        .filter(|j| finished(j, t) && j.metadata.deletion_timestamp.is_none())
                        .count()
                };
                done(&good, "Complete") == 2 && done(&bad, "Failed") == 1
            }
        },
    )
    .await;
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn an_invalid_schedule_or_time_zone_is_rejected_with_422() {
    let c = Cluster::builder().start().await.expect("start");
    let cronjobs: Api<CronJob> = Api::default_namespaced(c.client());
    let err = cronjobs
        .create(
            &PostParams::default(),
            &cronjob("bad", "61 * * * *", "x", json!({})),
        )
        .await
        .expect_err("invalid");
    let kube::Error::Api(status) = err else {
        panic!("an API error: {err:?}")
    };
    assert_eq!(status.code, 422);
    assert!(
        status
            .message
            .contains("spec.schedule: Invalid value: \"61 * * * *\""),
        "{}",
        status.message
    );
    let err = cronjobs
        .create(
            &PostParams::default(),
            &cronjob("tz", "@daily", "x", json!({"timeZone": "Mars/Olympus"})),
        )
        .await
        .expect_err("invalid");
    let kube::Error::Api(status) = err else {
        panic!("an API error: {err:?}")
    };
    assert_eq!(status.code, 422);
    assert!(
        status.message.contains("spec.timeZone"),
        "{}",
        status.message
    );
    c.shutdown().await.expect("shutdown");
}
