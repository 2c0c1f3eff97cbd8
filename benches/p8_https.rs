//! P8: the API over HTTPS on loopback, as kubectl and remote clients reach it. A kube-rs client
//! (rustls, the admin client certificate of the generated kubeconfig) sends an open-loop mix of
//! ConfigMap create, get and list at a fixed rate: each request starts on its tick, whether or
//! not earlier ones have finished, so queueing shows in the latency (no coordinated omission).
//! Target: p99 ≤ 10 ms at 1,000 requests/s. Then the rate steps up until p99 passes 10 ms, and
//! the highest rate that kept it is printed.
//!
//! Scale knobs: `KYB_P8_SECONDS` (default 60) is how long the 1,000/s run lasts, and
//! `KYB_P8_STEP_SECONDS` (default 10) how long each step of the search lasts; `KYB_P8_SECONDS=5
//! KYB_P8_STEP_SECONDS=2` is a quick run.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kybernetes::Cluster;
use tokio::sync::Mutex;

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Latencies of one run, and how many requests failed.
struct Run {
    latencies: Vec<Duration>,
    errors: u64,
    achieved: f64,
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// Sends `rate` requests a second for `seconds`: creates, gets and lists in turn.
async fn run(client: &kube::Client, ns: &str, rate: u64, seconds: u64) -> Run {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let latencies = Arc::new(Mutex::new(Vec::with_capacity((rate * seconds) as usize)));
    let errors = Arc::new(AtomicU64::new(0));
    let created = Arc::new(AtomicU64::new(0));
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let (api, latencies, errors, created) = (
            api.clone(),
            latencies.clone(),
            errors.clone(),
            created.clone(),
        );
        let stamp = start.elapsed().as_nanos();
        tasks.spawn(async move {
            let t0 = Instant::now();
            let ok = match i % 3 {
                0 => {
                    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                        "metadata": {"name": format!("p8-{rate}-{i}-{stamp}")},
                        "data": {"k": "v"},
                    }))
                    .expect("a valid ConfigMap");
                    let r = api.create(&PostParams::default(), &cm).await;
                    if r.is_ok() {
                        created.fetch_add(1, Ordering::Relaxed);
                    }
                    r.map(|_| ())
                }
                1 => api.get_opt("p8-fixed").await.map(|_| ()),
                _ => api.list(&ListParams::default().limit(10)).await.map(|_| ()),
            };
            let took = t0.elapsed();
            if ok.is_err() {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            latencies.lock().await.push(took);
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let mut latencies = std::mem::take(&mut *latencies.lock().await);
    latencies.sort();
    Run {
        achieved: latencies.len() as f64 / elapsed,
        latencies,
        errors: errors.load(Ordering::Relaxed),
    }
}

fn report(label: &str, rate: u64, r: &Run) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label}: offered {rate}/s achieved {:.0}/s n={} errors={} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        r.achieved,
        r.latencies.len(),
        r.errors,
        ms(quantile(&r.latencies, 0.5)),
        ms(quantile(&r.latencies, 0.9)),
        ms(quantile(&r.latencies, 0.99)),
        ms(r.latencies[r.latencies.len() - 1]),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::print_conditions("P8: ConfigMap create/get/list over HTTPS on loopback");
    let seconds = env_secs("KYB_P8_SECONDS", 60);
    let step = env_secs("KYB_P8_STEP_SECONDS", 10);
    println!(
        "# client: kube-rs over rustls, HTTP/2, admin client certificate; mix 1/3 create, 1/3 get, 1/3 list limit=10"
    );
    let cluster = Cluster::builder()
        .serve("127.0.0.1:0".parse()?)
        .start()
        .await?;
    let kubeconfig = cluster
        .kubeconfig()
        .ok_or_else(|| anyhow::anyhow!("the cluster is not serving"))?;
    let parsed = kube::config::Kubeconfig::from_yaml(kubeconfig.to_yaml())?;
    let config = kube::Config::from_custom_kubeconfig(parsed, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;
    // Warm the connection and the namespace.
    let warm = run(&client, "default", 100, 1).await;
    report("warm-up", 100, &warm);

    let main_run = run(&client, "default", 1000, seconds).await;
    report(&format!("P8 {seconds}s"), 1000, &main_run);
    let p99 = quantile(&main_run.latencies, 0.99);
    println!(
        "P8 at 1,000 requests/s: p99 {:.2} ms (target: <= 10 ms) {}",
        p99.as_secs_f64() * 1000.0,
        if p99 <= Duration::from_millis(10) {
            "MET"
        } else {
            "NOT MET"
        }
    );

    let mut best = None;
    for rate in [1000, 2000, 3000, 4000, 6000, 8000] {
        let r = run(&client, "default", rate, step).await;
        report(&format!("step {step}s"), rate, &r);
        let ok = quantile(&r.latencies, 0.99) <= Duration::from_millis(10)
            && r.achieved >= rate as f64 * 0.95
            && r.errors == 0;
        if !ok {
            break;
        }
        best = Some(rate);
    }
    match best {
        Some(rate) => {
            println!("P8 highest rate with p99 <= 10 ms: {rate} requests/s (of the steps tried)")
        }
        None => println!("P8 highest rate with p99 <= 10 ms: below 1,000 requests/s"),
    }
    cluster.shutdown().await?;
    Ok(())
}
