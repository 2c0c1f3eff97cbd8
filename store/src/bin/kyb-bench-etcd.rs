//! P6 benchmark: `EtcdStore` writes against raw `etcd-client` writes to the same etcd, in the same
//! run, plus `SqliteStore` durable writes (feature `sqlite`) for scale. Not a user tool.
//!
//! Each workload is "create a key, then update it at its revision" (two writes), the pattern of
//! an object's life in the API server:
//!
//! - `raw put`: two plain `put`s (no conditions; the floor);
//! - `raw txn`: the transactions kube-apiserver sends: create if `create_revision == 0`, update
//!   if `mod_revision == rv` else get (the P6 baseline);
//! - `raw txn+get`: the requests `EtcdStore` sends, which add a keys-only get of the key to the
//!   update (to return its `create_revision`): the difference to `EtcdStore` is the store's own
//!   client-side cost;
//! - `EtcdStore`: `Store::create` then `Store::update`;
//! - `SqliteStore`: the same through a durable SQLite file in the temp dir.
//!
//! The variants take turns in several rounds, sequentially (one writer: latency) and with many
//! concurrent writers (throughput); the report gives writes/s, p50 and p99 per write, and the
//! ratio of `EtcdStore` to `raw txn` and `raw put`.
//!
//! ```text
//! KYB_ETCD_ENDPOINTS=http://127.0.0.1:2379 cargo run --release -p kybernetes-store \
//!     --features etcd,sqlite --bin kyb-bench-etcd
//! ```
//!
//! Without `KYB_ETCD_ENDPOINTS` it starts its own etcd (the `etcd` on `PATH`) in a temp dir.
//! Knobs (environment): `KYB_BENCH_COUNT` (create+update pairs per variant and round, default
//! 1000), `KYB_BENCH_CONCURRENCY` (default 16), `KYB_BENCH_VALUE_BYTES` (default 1024),
//! `KYB_BENCH_ROUNDS` (default 3).

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
            t.store.update(key, t.value.clone(), kv.mod_revision).await?;
            Ok([first, started.elapsed() - first])
        }
        #[cfg(feature = "sqlite")]
        Variant::Sqlite => {
            let kv = t.sqlite.create(key, t.value.clone()).await?;
            let first = started.elapsed();
            t.sqlite.update(key, t.value.clone(), kv.mod_revision).await?;
            Ok([first, started.elapsed() - first])
        }
    }
}

/// The figures of one phase.
struct Phase {
    writes_per_sec: f64,
    latencies: Vec<Duration>,
}

/// `pairs` create+update pairs of `variant` by `concurrency` writers.
async fn phase(t: &Arc<Targets>, variant: Variant, base: &str, pairs: usize, concurrency: usize) -> Result<Phase, BoxError> {
    let next = Arc::new(AtomicUsize::new(0));
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
    Ok(Phase { writes_per_sec: (2 * pairs) as f64 / elapsed.as_secs_f64(), latencies })
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
    p50: Duration,
    p99: Duration,
}

fn summarize(phases: Vec<Phase>) -> Summary {
    let writes_per_sec = median(phases.iter().map(|p| p.writes_per_sec).collect());
    let mut all: Vec<Duration> = phases.into_iter().flat_map(|p| p.latencies).collect();
    all.sort_unstable();
    Summary { writes_per_sec, p50: percentile(&all, 0.50), p99: percentile(&all, 0.99) }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|v| *v > 0).unwrap_or(default)
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

async fn run() -> Result<(), BoxError> {
    let pairs = env_usize("KYB_BENCH_COUNT", 1000);
    let concurrency = env_usize("KYB_BENCH_CONCURRENCY", 16);
    let value_bytes = env_usize("KYB_BENCH_VALUE_BYTES", 1024);
    let rounds = env_usize("KYB_BENCH_ROUNDS", 3);

    let (_own, endpoints) = match etcd_common::endpoints_from_env() {
        Some(e) => (None, e),
        None => {
            let binary = etcd_common::etcd_binary("kyb-bench-etcd").ok_or("no etcd: set KYB_ETCD_ENDPOINTS or install etcd-server")?;
            let cluster = etcd_common::EtcdCluster::start(&binary, "bench", 1, &[]);
            let endpoints = cluster.endpoints();
            (Some(cluster), endpoints)
        }
    };
    let mut raw = etcd_client::Client::connect(&endpoints, None).await?;
    let version = raw.status().await?.version().to_owned();
    let store = EtcdStore::connect_with(&endpoints, EtcdOptions { compaction_interval: None, ..Default::default() }).await?;
    #[cfg(feature = "sqlite")]
    let sqlite_dir = etcd_common::temp_dir("bench-sqlite");
    #[cfg(feature = "sqlite")]
    let sqlite = kybernetes_store::SqliteStore::open(sqlite_dir.join("bench.db"))?;
    let value: Bytes = (0..value_bytes).map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36]).collect::<Vec<u8>>().into();
    let targets = Arc::new(Targets {
        raw: raw.clone(),
        store,
        #[cfg(feature = "sqlite")]
        sqlite,
        value,
    });
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let run_id = format!("/kyb-bench/{}-{nanos:x}", std::process::id());

    println!("P6: EtcdStore writes vs raw etcd-client writes (same etcd, same run)");
    println!(
        "conditions: {} cores, etcd {version} at {}, {pairs} create+update pairs per variant and round, {rounds} rounds, \
         {value_bytes}-byte values, data dir under {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        endpoints.join(","),
        std::env::temp_dir().display(),
    );
    let mut variants = vec![Variant::RawPut, Variant::RawTxn, Variant::RawTxnGet, Variant::Etcd];
    #[cfg(feature = "sqlite")]
    variants.push(Variant::Sqlite);

    for (label, writers, n) in [("sequential (1 writer)", 1, pairs.div_ceil(4)), ("concurrent", concurrency, pairs)] {
        // Warm up connections and etcd.
        for &v in &variants {
            phase(&targets, v, &format!("{run_id}/warm-{writers}/{}", v.name().replace(' ', "-")), 50.min(n), writers).await?;
        }
        let mut results: Vec<Vec<Phase>> = variants.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds {
            for (i, &v) in variants.iter().enumerate() {
                let base = format!("{run_id}/{writers}/{round}/{}", v.name().replace(' ', "-"));
                results[i].push(phase(&targets, v, &base, n, writers).await?);
            }
        }
        let summaries: Vec<Summary> = results.into_iter().map(summarize).collect();
        println!("\n{label}: {writers} writer(s), {} writes per variant and round", 2 * n);
        println!("  {:<12} {:>12} {:>12} {:>12}", "variant", "writes/s", "p50", "p99");
        for (v, s) in variants.iter().zip(&summaries) {
            println!("  {:<12} {:>12.0} {:>12} {:>12}", v.name(), s.writes_per_sec, ms(s.p50), ms(s.p99));
        }
        let (put, txn, txn_get, store) = (&summaries[0], &summaries[1], &summaries[2], &summaries[3]);
        println!(
            "  overhead EtcdStore / raw txn: throughput {:.3}x, p50 {:.3}x, p99 {:.3}x (target <= 1.2x)",
            txn.writes_per_sec / store.writes_per_sec,
            store.p50.as_secs_f64() / txn.p50.as_secs_f64(),
            store.p99.as_secs_f64() / txn.p99.as_secs_f64(),
        );
        println!(
            "  overhead EtcdStore / raw txn+get (the same requests): throughput {:.3}x, p50 {:.3}x, p99 {:.3}x",
            txn_get.writes_per_sec / store.writes_per_sec,
            store.p50.as_secs_f64() / txn_get.p50.as_secs_f64(),
            store.p99.as_secs_f64() / txn_get.p99.as_secs_f64(),
        );
        println!(
            "  overhead EtcdStore / raw put: throughput {:.3}x, p50 {:.3}x, p99 {:.3}x",
            put.writes_per_sec / store.writes_per_sec,
            store.p50.as_secs_f64() / put.p50.as_secs_f64(),
            store.p99.as_secs_f64() / put.p99.as_secs_f64(),
        );
    }

    raw.delete(format!("{run_id}/"), Some(etcd_client::DeleteOptions::new().with_prefix())).await?;
    #[cfg(feature = "sqlite")]
    {
        drop(targets);
        let _ = std::fs::remove_dir_all(&sqlite_dir);
    }
    Ok(())
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
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
