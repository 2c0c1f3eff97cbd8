//! Jobs, CronJobs and DaemonSets on an in-process cluster, under tokio's paused clock: a Job of
//! five completions two at a time, a CronJob that runs every five minutes for a virtual hour,
//! and a DaemonSet that follows the nodes, in a few seconds of real time.
//!
//! Run with `cargo run --example batch_workloads`.

use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kybernetes::Cluster;
use kybernetes::runtime::FakeRuntime;
use kybernetes::runtime::fake::ContainerScript;

const MANIFESTS: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: pi}
spec:
  completions: 5
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: pi, image: perl:5.34}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report}
spec:
  schedule: "*/5 * * * *"
  timeZone: Europe/Berlin
  concurrencyPolicy: Forbid
  successfulJobsHistoryLimit: 3
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: report, image: busybox}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: node-exporter}
spec:
  selector: {matchLabels: {app: node-exporter}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 1}}
  template:
    metadata: {labels: {app: node-exporter}}
    spec:
      containers: [{name: exporter, image: prom/node-exporter:v1.8.0}]
"#;

fn main() -> anyhow::Result<()> {
    // A paused clock: virtual time jumps ahead whenever every task is waiting.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let fake = FakeRuntime::default();
    fake.script_container(
        "pi",
        ContainerScript::new().complete_after(Duration::from_secs(30)),
    );
    fake.script_container(
        "report",
        ContainerScript::new().complete_after(Duration::from_secs(60)),
    );
    let cluster = Cluster::builder()
        .nodes(3)
        .runtime(fake.clone())
        .start()
        .await?;
    cluster.apply_yaml(MANIFESTS).await?;

    let jobs: Api<Job> = Api::default_namespaced(cluster.client());
    let start = tokio::time::Instant::now();
    loop {
        let pi = jobs.get("pi").await?;
        let st = pi.status.unwrap_or_default();
        let complete = st
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Complete" && c.status == "True");
        if complete {
            println!(
                "job pi: {} succeeded after {:?} of virtual time",
                st.succeeded.unwrap_or(0),
                start.elapsed()
            );
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }

    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    let exporters = || async {
        let list = pods
            .list(&ListParams::default().labels("app=node-exporter"))
            .await?;
        let mut nodes: Vec<String> = list
            .items
            .iter()
            .filter_map(|p| p.spec.as_ref()?.node_name.clone())
            .collect();
        nodes.sort();
        anyhow::Ok(nodes)
    };
    println!("node-exporter runs on {:?}", exporters().await?);
    cluster.add_node("node-4")?;
    tokio::time::sleep(Duration::from_secs(30)).await;
    println!("after adding node-4: {:?}", exporters().await?);

    tokio::time::sleep(Duration::from_secs(3600)).await;
    let cronjobs: Api<CronJob> = Api::default_namespaced(cluster.client());
    let report = cronjobs.get("report").await?;
    let kept = jobs
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .filter(|n| n.starts_with("report-"))
        .collect::<Vec<_>>();
    println!(
        "cronjob report after an hour: last scheduled {:?}, jobs kept {kept:?}",
        report
            .status
            .and_then(|s| s.last_schedule_time)
            .map(|t| t.0.to_string())
    );
    let ds: Api<DaemonSet> = Api::default_namespaced(cluster.client());
    let st = ds.get("node-exporter").await?.status.unwrap_or_default();
    println!(
        "daemonset node-exporter: desired {}, ready {}, up to date {}",
        st.desired_number_scheduled,
        st.number_ready,
        st.updated_number_scheduled.unwrap_or(0)
    );
    cluster.shutdown().await?;
    Ok(())
}
