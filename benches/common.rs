//! Shared helpers for the benchmark binaries.

#![allow(dead_code)]

use std::time::Duration;

/// Prints the conditions a figure was measured under.
pub fn print_conditions(what: &str) {
    print_conditions_for(what, "FakeRuntime");
}

/// Prints the conditions a figure was measured under, with the container runtime(s) used.
pub fn print_conditions_for(what: &str, runtime: &str) {
    print_conditions_on(what, runtime, "LocalNetwork");
}

/// Prints the conditions a figure was measured under, with the runtime(s) and network used.
pub fn print_conditions_on(what: &str, runtime: &str, network: &str) {
    // Every bench prints its conditions first, so this is where a run asked to log
    // (`RUST_LOG=...`) gets its subscriber; without RUST_LOG nothing is installed, so the
    // figures are not perturbed by logging.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("# {what}");
    println!(
        "# conditions: {cores} cores, {profile} build, tokio multi-thread runtime, in-process API server, MemoryStore, {runtime}, {network}"
    );
}

/// min / median / p90 / max of a set of durations, in milliseconds.
pub fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "n={} min={:.2}ms median={:.2}ms p90={:.2}ms max={:.2}ms",
        samples.len(),
        ms(samples[0]),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(samples[samples.len() - 1])
    )
}

/// The `q` quantile (0.0–1.0) of sorted `samples`, nearest rank.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Waits until `want` nodes report Ready.
pub async fn wait_nodes_ready(c: &kybernetes::Cluster, want: usize) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Api, ListParams};
    let nodes: Api<Node> = Api::all(c.client());
    loop {
        let list = nodes.list(&ListParams::default()).await?.items;
        let ready = list.iter().filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        if ready.count() == want {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates a Deployment `name` of `replicas` (label `app=<name>`) in the default namespace
/// and returns the time from the create to every one of its pods Running.
pub async fn deployment_to_running(
    cluster: &kybernetes::Cluster,
    name: &str,
    replicas: usize,
) -> anyhow::Result<Duration> {
    use futures::StreamExt;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
    let deploys: Api<Deployment> = Api::default_namespaced(cluster.client());
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "main", "image": "app:1"}]}}}
    }))?;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    // Follow the pods through one watch (as a client would), rather than re-listing them in
    // a loop, so the measurement does not load the cluster it measures.
    let rv = pods
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let stream = pods
        .watch(&WatchParams::default().labels(&format!("app={name}")), &rv)
        .await?;
    let mut stream = std::pin::pin!(stream);
    let mut running = std::collections::HashSet::new();
    let t0 = std::time::Instant::now();
    deploys.create(&PostParams::default(), &d).await?;
    let limit = Duration::from_secs(600);
    while running.len() < replicas {
        let next = tokio::time::timeout(limit, stream.next()).await;
        let Ok(Some(ev)) = next else {
            anyhow::bail!(
                "only {} of {replicas} pods Running after {limit:?}",
                running.len()
            )
        };
        if let WatchEvent::Added(p) | WatchEvent::Modified(p) = ev?
            && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        {
            running.insert(p.metadata.name.unwrap_or_default());
        }
    }
    Ok(t0.elapsed())
}

/// The number in environment variable `name`, or `default` when unset.
pub fn env_usize(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|e| anyhow::anyhow!("{name}={v:?}: {e}")),
        Err(_) => Ok(default),
    }
}

/// This process's resident and peak resident memory in bytes (`VmRSS`, `VmHWM` of
/// /proc/self/status).
pub fn resident_memory() -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| anyhow::anyhow!("no {name} in /proc/self/status"))?;
        let kib: u64 = line
            .trim_start_matches(name)
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()?;
        Ok(kib * 1024)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// The scale factor in `var` (default 1.0), and `base` scaled by it (at least 1).
pub fn scale(var: &str) -> anyhow::Result<(f64, impl Fn(f64) -> usize)> {
    let scale: f64 = match std::env::var(var) {
        Ok(v) => v.parse().map_err(|e| anyhow::anyhow!("{var}={v:?}: {e}"))?,
        Err(_) => 1.0,
    };
    Ok((scale, move |base: f64| {
        ((base * scale).round() as usize).max(1)
    }))
}
