//! P7: pod start latency, from the create call until the pod's status says Running, p50 and
//! p99 over `KYB_P7_PODS` pods (default 100), on FakeRuntime and ProcessRuntime in one run.
//! Target p99 ≤ 500 ms.
//!
//! Pods are created in waves of `KYB_P7_WAVE` (default 10) on one node; each wave is
//! Running before the next is created, so the figure is start latency under a modest burst,
//! not queueing behind 100 pods at once. Process pods run `/bin/sleep 3600`.
//!
//! Run with `cargo bench --bench p7_pod_start` (`KYB_P7_PODS=20` for a quick look).

mod common;
#[cfg(feature = "containerd")]
#[path = "../runtime/tests/support/containerd.rs"]
mod containerd_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use kybernetes::Cluster;
use kybernetes::runtime::{FakeRuntime, ProcessRuntime, Runtime};
use serde_json::json;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pod(i: usize) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": { "name": format!("p7-{i}") },
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "main",
                "image": "bench:1",
                "command": ["/bin/sleep", "3600"]
            }]
        }
    }))?)
}

fn running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// Start latencies of `pods` pods on `runtime`, sorted.
async fn measure(runtime: impl Runtime, pods: usize, wave: usize) -> anyhow::Result<Vec<Duration>> {
    let cluster = Cluster::builder().runtime(runtime).nodes(1).start().await?;
    let api: Api<Pod> = Api::default_namespaced(cluster.client());
    let running_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen = running_at.clone();
    let watch = tokio::spawn({
        let api = api.clone();
        async move {
            let mut events = watcher(api, watcher::Config::default()).boxed();
            while let Some(e) = events.next().await {
                if let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = e
                    && running(&p)
                    && let Some(name) = p.metadata.name.clone()
                {
                    let now = Instant::now();
                    seen.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(name)
                        .or_insert(now);
                }
            }
        }
    });
    let mut created_at = HashMap::new();
    let mut next = 0;
    while next < pods {
        let end = (next + wave).min(pods);
        for i in next..end {
            created_at.insert(format!("p7-{i}"), Instant::now());
            api.create(&PostParams::default(), &pod(i)?).await?;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let done = {
                let seen = running_at.lock().unwrap_or_else(|p| p.into_inner());
                (next..end).all(|i| seen.contains_key(&format!("p7-{i}")))
            };
            if done {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "pods {next}..{end} did not start"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        next = end;
    }
    watch.abort();
    let seen = running_at.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut samples: Vec<Duration> = created_at
        .iter()
        .filter_map(|(name, t0)| seen.get(name).map(|t| t.saturating_duration_since(*t0)))
        .collect();
    samples.sort();
    cluster.shutdown().await?;
    Ok(samples)
}

fn report(name: &str, samples: &[Duration]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "P7 {name:<15} create-to-Running: n={} p50={:.2}ms p99={:.2}ms max={:.2}ms  (target: p99 <= 500 ms)",
        samples.len(),
        ms(common::quantile(samples, 0.50)),
        ms(common::quantile(samples, 0.99)),
        ms(samples.last().copied().unwrap_or_default()),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let pods = knob("KYB_P7_PODS", 100);
    let wave = knob("KYB_P7_WAVE", 10).max(1);
    common::print_conditions_for(
        &format!("P7: pod create until Running, {pods} pods in waves of {wave}, 1 node"),
        "FakeRuntime, ProcessRuntime (host mode, /bin/sleep), ContainerdRuntime if KYB_P7_CONTAINERD",
    );
    let fake = measure(FakeRuntime::default(), pods, wave).await?;
    report("FakeRuntime", &fake);
    let processes = measure(ProcessRuntime::host(), pods, wave).await?;
    report("ProcessRuntime", &processes);
    #[cfg(feature = "containerd")]
    if let Ok(socket) = std::env::var("KYB_P7_CONTAINERD") {
        let snapshotter =
            std::env::var("KYB_P7_SNAPSHOTTER").unwrap_or_else(|_| "overlayfs".into());
        let containerd = kybernetes::runtime::containerd::ContainerdRuntime::builder()
            .snapshotter(snapshotter)
            .connect(&socket)
            .await?;
        containerd
            .import_image(containerd_support::busybox_image("bench:1"))
            .await?;
        let samples = measure(containerd, pods, wave).await?;
        report("ContainerdRuntime", &samples);
    }
    Ok(())
}
