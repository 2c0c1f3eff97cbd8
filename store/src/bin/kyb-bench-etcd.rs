//! P6 benchmark: `EtcdStore` writes against raw `etcd-client` writes to the same etcd, in the same
//! run, plus `SqliteStore` durable writes (feature `sqlite`) for scale. Not a user tool.
//!
//! Each workload is "create a key, then update it at its revision" (two writes), the pattern of
//! an object's life in the API server:
//!
//! - `raw put`: two plain `put`s (no conditions; the floor);
//! - `raw txn`: the transactions kube-apiserver sends: create if `create_revision == 0`, update
//!   if `mod_revision == rv` else get (the P6 baseline);
//! - `raw txn+get`: the update also reads the key back (keys only), which `EtcdStore` does only
//!   when it has not seen the version it updates (to return its `create_revision`);
//! - `EtcdStore`: `Store::create` then `Store::update`;
//! - `SqliteStore`: the same through a durable SQLite file in the temp dir.
//!
//! The variants take turns (in a rotating order) in many short rounds, sequentially (one writer:
//! latency) and with many concurrent writers (throughput), so a noisy neighbour hits them alike.
//! The report gives, per variant, the median writes/s of the rounds and p50/p99 over every write;
//! and for `EtcdStore` against each baseline the median of the per-round ratios of throughput
//! (baseline / store) and p50 (store / baseline), and the pooled p99 ratio.
//!
//! ```text
//! KYB_ETCD_ENDPOINTS=http://127.0.0.1:2379 cargo run --release -p kybernetes-store \
//!     --features etcd,sqlite --bin kyb-bench-etcd
//! ```
//!
//! Without `KYB_ETCD_ENDPOINTS` it starts its own etcd (the `etcd` on `PATH`) in a temp dir.
//! Knobs (environment): `KYB_BENCH_COUNT` (create+update pairs per variant and round with
//! concurrent writers, a quarter of it with one writer; default 500), `KYB_BENCH_CONCURRENCY`
//! (default 16), `KYB_BENCH_VALUE_BYTES` (default 1024), `KYB_BENCH_ROUNDS` (default 15).

#[path = "../../tests/etcd_common/mod.rs"]
mod etcd_common;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use kybernetes_store::{EtcdOptions, EtcdStore, Store};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    RawPut,
    RawTxn,
    RawTxnGet,
    Etcd,
    #[cfg(feature = "sqlite")]
    Sqlite,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::RawPut => "raw put",
            Variant::RawTxn => "raw txn",
            Variant::RawTxnGet => "raw txn+get",
            Variant::Etcd => "EtcdStore",
            #[cfg(feature = "sqlite")]
            Variant::Sqlite => "SqliteStore",
        }
    }
}

struct Targets {
    raw: etcd_client::Client,
    store: EtcdStore,
    #[cfg(feature = "sqlite")]
    sqlite: kybernetes_store::SqliteStore,
    value: Bytes,
}

/// One create+update pair on `key`; the latency of each write.
async fn pair(t: &Targets, variant: Variant, key: &str) -> Result<[Duration; 2], BoxError> {
    let started = Instant::now();
    match variant {
        Variant::RawPut => {
            let mut kv = t.raw.kv_client();
            kv.put(key, t.value.to_vec(), None).await?;
            let first = started.elapsed();
            kv.put(key, t.value.to_vec(), None).await?;
            Ok([first, started.elapsed() - first])
        }
        Variant::RawTxn | Variant::RawTxnGet => {
            let mut kv = t.raw.kv_client();
            let create = Txn::new()
                .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, t.value.to_vec(), None)]);
            let resp = kv.txn(create).await?;
            let rev = resp.header().map(|h| h.revision()).ok_or("no header")?;
            if !resp.succeeded() {
                return Err("raw create failed".into());
            }
            let first = started.elapsed();
            let mut then = vec![TxnOp::put(key, t.value.to_vec(), None)];
            if variant == Variant::RawTxnGet {
                // What EtcdStore sends: read the key's create_revision back in the same txn.
                then.push(TxnOp::get(key, Some(GetOptions::new().with_keys_only())));
            }
            let update = Txn::new()
                .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
                .and_then(then)
                .or_else([TxnOp::get(key, Some(GetOptions::new()))]);
            if !kv.txn(update).await?.succeeded() {
                return Err("raw update failed".into());
            }
            Ok([first, started.elapsed() - first])
        }
        Variant::Etcd => {
            let kv = t.store.create(key, t.value.clone()).await?;
            let first = started.elapsed();
            t.store
                .update(key, t.value.clone(), kv.mod_revision)
                .await?;
            Ok([first, started.elapsed() - first])
        }
        #[cfg(feature = "sqlite")]
        Variant::Sqlite => {
            let kv = t.sqlite.create(key, t.value.clone()).await?;
            let first = started.elapsed();
            t.sqlite
                .update(key, t.value.clone(), kv.mod_revision)
                .await?;
            Ok([first, started.elapsed() - first])
        }
    }
}

/// The figures of one phase.
struct Phase {
    writes_per_sec: f64,
    latencies: Vec<Duration>,
    /// CPU time this process (the client) spent, in clock ticks.
    client_ticks: u64,
}

/// This process's user+system CPU time in clock ticks (`/proc/self/stat`), 0 if unreadable.
fn cpu_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    let Some(rest) = stat.rsplit(')').next() else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15 (1-based), so 11 and 12 here.
    fields
        .get(11)
        .and_then(|u| u.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
}

/// `pairs` create+update pairs of `variant` by `concurrency` writers.
async fn phase(
    t: &Arc<Targets>,
    variant: Variant,
    base: &str,
    pairs: usize,
    concurrency: usize,
) -> Result<Phase, BoxError> {
    let next = Arc::new(AtomicUsize::new(0));
    let ticks = cpu_ticks();
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (t, next, base) = (Arc::clone(t), Arc::clone(&next), base.to_owned());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= pairs {
                        return Ok::<_, BoxError>(latencies);
                    }
                    latencies.extend(pair(&t, variant, &format!("{base}/{i:07}")).await?);
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(2 * pairs);
    for w in workers {
        latencies.extend(w.await??);
    }
    let elapsed = started.elapsed();
    Ok(Phase {
        writes_per_sec: (2 * pairs) as f64 / elapsed.as_secs_f64(),
        latencies,
        client_ticks: cpu_ticks() - ticks,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Summary of one variant over all rounds: median writes/s, and p50/p99 over every write.
struct Summary {
    writes_per_sec: f64,
    /// Client CPU per write, in microseconds (assuming 100 clock ticks per second).
    client_cpu_us: f64,
    p50: Duration,
    p99: Duration,
}

fn summarize(phases: Vec<Phase>) -> Summary {
    let writes_per_sec = median(phases.iter().map(|p| p.writes_per_sec).collect());
    let writes: usize = phases.iter().map(|p| p.latencies.len()).sum();
    let ticks: u64 = phases.iter().map(|p| p.client_ticks).sum();
    let client_cpu_us = ticks as f64 * 10_000.0 / writes.max(1) as f64;
    let mut all: Vec<Duration> = phases.into_iter().flat_map(|p| p.latencies).collect();
    all.sort_unstable();
    Summary {
        writes_per_sec,
        client_cpu_us,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

async fn run() -> Result<(), BoxError> {
    let pairs = env_usize("KYB_BENCH_COUNT", 500);
    let concurrency = env_usize("KYB_BENCH_CONCURRENCY", 16);
    let value_bytes = env_usize("KYB_BENCH_VALUE_BYTES", 1024);
    let rounds = env_usize("KYB_BENCH_ROUNDS", 15);

    let (_own, endpoints) = match etcd_common::endpoints_from_env() {
        Some(e) => (None, e),
        None => {
            let binary = etcd_common::etcd_binary("kyb-bench-etcd")
                .ok_or("no etcd: set KYB_ETCD_ENDPOINTS or install etcd-server")?;
            let cluster = etcd_common::EtcdCluster::start(&binary, "bench", 1, &[]);
            let endpoints = cluster.endpoints();
            (Some(cluster), endpoints)
        }
    };
    let raw_options = match std::env::var("KYB_BENCH_RAW_OPTIONS").as_deref() {
        Ok("store") => Some(
            etcd_client::ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(30))
                .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
                .with_keep_alive_while_idle(true)
                .with_require_leader(true),
        ),
        Ok("timeout") => {
            Some(etcd_client::ConnectOptions::new().with_timeout(Duration::from_secs(30)))
        }
        Ok("leader") => Some(etcd_client::ConnectOptions::new().with_require_leader(true)),
        _ => None,
    };
    let mut raw = etcd_client::Client::connect(&endpoints, raw_options).await?;
    let version = raw.status().await?.version().to_owned();
    let store = EtcdStore::connect_with(
        &endpoints,
        EtcdOptions {
            compaction_interval: None,
            ..Default::default()
        },
    )
    .await?;
    #[cfg(feature = "sqlite")]
    let sqlite_dir = etcd_common::temp_dir("bench-sqlite");
    #[cfg(feature = "sqlite")]
    let sqlite = kybernetes_store::SqliteStore::open(sqlite_dir.join("bench.db"))?;
    let value: Bytes = (0..value_bytes)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36])
        .collect::<Vec<u8>>()
        .into();
    let targets = Arc::new(Targets {
        raw: raw.clone(),
        store,
        #[cfg(feature = "sqlite")]
        sqlite,
        value,
    });
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let run_id = format!("/kyb-bench/{}-{nanos:x}", std::process::id());

    println!("P6: EtcdStore writes vs raw etcd-client writes (same etcd, same run)");
    println!(
        "conditions: {} cores, etcd {version} at {}, {pairs} create+update pairs per variant and round, {rounds} rounds, \
         {value_bytes}-byte values, data dir under {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        endpoints.join(","),
        std::env::temp_dir().display(),
    );
    let mut variants = vec![
        Variant::RawPut,
        Variant::RawTxn,
        Variant::RawTxnGet,
        Variant::Etcd,
    ];
    #[cfg(feature = "sqlite")]
    variants.push(Variant::Sqlite);

    for (label, writers, n) in [
        ("sequential (1 writer)", 1, pairs.div_ceil(4)),
        ("concurrent", concurrency, pairs),
    ] {
        // Warm up connections and etcd.
        for &v in &variants {
            phase(
                &targets,
                v,
                &format!("{run_id}/warm-{writers}/{}", v.name().replace(' ', "-")),
                50.min(n),
                writers,
            )
            .await?;
        }
        let mut results: Vec<Vec<Phase>> = variants.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds {
            // Rotate the order, so no variant always runs right after another.
            for k in 0..variants.len() {
                let i = (round + k) % variants.len();
                let v = variants[i];
                let base = format!("{run_id}/{writers}/{round}/{}", v.name().replace(' ', "-"));
                results[i].push(phase(&targets, v, &base, n, writers).await?);
            }
        }
        // Ratios to the store, round by round (the phases of one round ran next to each other).
        let store_phases = &results[3];
        let ratios = |baseline: &[Phase]| -> (f64, f64) {
            let throughput = median(
                baseline
                    .iter()
                    .zip(store_phases)
                    .map(|(b, s)| b.writes_per_sec / s.writes_per_sec)
                    .collect(),
            );
            let p50 = |p: &Phase| {
                let mut l = p.latencies.clone();
                l.sort_unstable();
                percentile(&l, 0.5).as_secs_f64()
            };
            let latency = median(
                baseline
                    .iter()
                    .zip(store_phases)
                    .map(|(b, s)| p50(s) / p50(b))
                    .collect(),
            );
            (throughput, latency)
        };
        let (txn_ratio, txn_get_ratio, put_ratio) = (
            ratios(&results[1]),
            ratios(&results[2]),
            ratios(&results[0]),
        );
        let summaries: Vec<Summary> = results.into_iter().map(summarize).collect();
        println!(
            "\n{label}: {writers} writer(s), {} writes per variant and round",
            2 * n
        );
        println!(
            "  {:<12} {:>12} {:>12} {:>12} {:>16}",
            "variant", "writes/s", "p50", "p99", "client CPU/write"
        );
        for (v, s) in variants.iter().zip(&summaries) {
            let cpu = format!("{:.0} us", s.client_cpu_us);
            println!(
                "  {:<12} {:>12.0} {:>12} {:>12} {:>16}",
                v.name(),
                s.writes_per_sec,
                ms(s.p50),
                ms(s.p99),
                cpu
            );
        }
        let store = &summaries[3];
        for (name, baseline, (throughput, p50), target) in [
            ("raw txn", &summaries[1], txn_ratio, " (P6 target <= 1.2x)"),
            ("raw txn+get", &summaries[2], txn_get_ratio, ""),
            ("raw put", &summaries[0], put_ratio, ""),
        ] {
            println!(
                "  EtcdStore vs {name}: throughput {throughput:.3}x, p50 {p50:.3}x (medians of per-round ratios), \
                 p99 {:.3}x (pooled){target}",
                store.p99.as_secs_f64() / baseline.p99.as_secs_f64(),
            );
        }
    }

    raw.delete(
        format!("{run_id}/"),
        Some(etcd_client::DeleteOptions::new().with_prefix()),
    )
    .await?;
    #[cfg(feature = "sqlite")]
    {
        drop(targets);
        let _ = std::fs::remove_dir_all(&sqlite_dir);
    }
    Ok(())
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kyb-bench-etcd: starting tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kyb-bench-etcd: {e}");
            ExitCode::FAILURE
        }
    }
}
