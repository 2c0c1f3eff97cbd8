//! Failover: a 3-member etcd cluster on loopback under a steady write load through one
//! [`EtcdStore`] connected to all three members. The leader is killed with SIGKILL; writes must
//! resume after the election, and every acknowledged write must be readable (and replayed by a
//! watch) afterwards.
//!
//! This test always starts its own cluster (it kills a member), so it needs `etcd` on `PATH`; see
//! `etcd_common` for when it is skipped.

mod etcd_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_common::{EtcdCluster, etcd_binary};
use futures::StreamExt;
use kybernetes_store::{EtcdOptions, EtcdStore, KeyValue, ListOptions, Store, WatchEvent};
use tokio::sync::Mutex;

const WRITERS: usize = 4;
/// Acknowledged writes wanted before the kill, and again after it.
const WRITES_PER_PHASE: usize = 40;
/// How long the cluster may take to accept writes again after losing its leader.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// What the writers saw: acknowledged writes, and errors (writes with an unknown outcome).
#[derive(Default)]
struct Log {
    /// Each acknowledged write with the time it was sent.
    acked: Vec<(KeyValue, Instant)>,
    errors: Vec<(String, Instant)>,
}

/// Index of the member that is the raft leader, asking each member for its status.
async fn find_leader(cluster: &EtcdCluster) -> Option<usize> {
    for (i, m) in cluster.members.iter().enumerate() {
        let Ok(mut client) = etcd_client::Client::connect([m.client_url.as_str()], None).await
        else {
            continue;
        };
        let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(5), client.status()).await
        else {
            continue;
        };
        if status
            .header()
            .is_some_and(|h| h.member_id() == status.leader())
        {
            return Some(i);
        }
    }
    None
}

/// Writes `/failover/w<writer>/<n>` for increasing `n` until `stop`; a failed write is logged and
/// the next one uses a fresh key (its outcome is unknown, so the key is never reused).
async fn writer(store: EtcdStore, writer: usize, log: Arc<Mutex<Log>>, stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        let key = format!("/failover/w{writer}/{n:06}");
        n += 1;
        let sent = Instant::now();
        let result = tokio::time::timeout(
            Duration::from_secs(15),
            store.create(&key, Bytes::from(key.clone())),
        )
        .await;
        match result {
            Ok(Ok(kv)) => log.lock().await.acked.push((kv, sent)),
            Ok(Err(e)) => {
                log.lock()
                    .await
                    .errors
                    .push((e.to_string(), Instant::now()));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(_) => log
                .lock()
                .await
                .errors
                .push(("no answer within 15s".into(), Instant::now())),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn acked_count(log: &Mutex<Log>) -> usize {
    log.lock().await.acked.len()
}

/// Waits until `want` writes are acknowledged, failing after `timeout`.
async fn wait_for_acks(log: &Mutex<Log>, want: usize, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while acked_count(log).await < want {
        if Instant::now() > deadline {
            let log = log.lock().await;
            let last_errors: Vec<&String> =
                log.errors.iter().rev().take(5).map(|(e, _)| e).collect();
            panic!(
                "{what}: only {} of {want} writes acknowledged within {timeout:?}; last errors: {last_errors:?}",
                log.acked.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_killing_the_leader() {
    let Some(binary) = etcd_binary("writes_survive_killing_the_leader") else {
        return;
    };
    let mut cluster = EtcdCluster::start(&binary, "failover", 3, &[]);
    let options = EtcdOptions {
        compaction_interval: None,
        request_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let store = EtcdStore::connect_with(&cluster.endpoints(), options.clone())
        .await
        .expect("connect to the cluster");
    let start_revision = store.current_revision().await.expect("revision");

    let log = Arc::new(Mutex::new(Log::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                store.clone(),
                w,
                Arc::clone(&log),
                Arc::clone(&stop),
            ))
        })
        .collect();

    wait_for_acks(
        &log,
        WRITES_PER_PHASE,
        Duration::from_secs(30),
        "before the kill",
    )
    .await;
    let leader = find_leader(&cluster)
        .await
        .expect("the cluster has a leader");
    let killed_at = Instant::now();
    let acked_before = acked_count(&log).await;
    cluster.members[leader].kill();
    eprintln!(
        "killed leader {} after {acked_before} acknowledged writes",
        cluster.members[leader].name
    );

    wait_for_acks(
        &log,
        acked_before + WRITES_PER_PHASE,
        RECOVERY_TIMEOUT,
        "after the kill",
    )
    .await;
    stop.store(true, Ordering::Release);
    for w in writers {
        w.await.expect("writer task");
    }

    let log = log.lock().await;
    // The first write sent after the kill and acknowledged went through the new leader.
    let first_after = log
        .acked
        .iter()
        .find(|(_, sent)| *sent > killed_at)
        .map(|(_, sent)| sent.duration_since(killed_at));
    let errors_after = log.errors.iter().filter(|(_, at)| *at > killed_at).count();
    eprintln!(
        "acknowledged {} writes ({} failed with an unknown outcome); the first write sent after the kill and acknowledged was sent {:?} after it",
        log.acked.len(),
        errors_after,
        first_after
    );

    // Every acknowledged write is there, with the revision it was acknowledged at: through the
    // store on all endpoints, and through a fresh store on the two survivors.
    let survivors: Vec<String> = cluster
        .members
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, m)| m.client_url.clone())
        .collect();
    let fresh = EtcdStore::connect_with(&survivors, options)
        .await
        .expect("connect to the survivors");
    for reader in [&store, &fresh] {
        let listed = reader
            .list("/failover/", ListOptions::default())
            .await
            .expect("list after failover");
        let stored: std::collections::HashMap<&str, &KeyValue> = listed
            .items
            .iter()
            .map(|kv| (kv.key.as_str(), kv))
            .collect();
        for (kv, _) in &log.acked {
            assert_eq!(
                stored.get(kv.key.as_str()),
                Some(&kv),
                "acknowledged write {} is missing or changed",
                kv.key
            );
        }
    }

    // A watch from before the load replays every acknowledged write, in revision order.
    let mut watch = fresh
        .watch("/failover/", start_revision)
        .await
        .expect("watch");
    let mut wanted: std::collections::HashSet<&str> =
        log.acked.iter().map(|(kv, _)| kv.key.as_str()).collect();
    let mut last = start_revision;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !wanted.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, watch.events.next()).await {
            Ok(Some(Ok(WatchEvent::Put { kv, .. }))) => {
                assert!(
                    kv.mod_revision > last,
                    "watch out of order: {} after {last}",
                    kv.mod_revision
                );
                last = kv.mod_revision;
                wanted.remove(kv.key.as_str());
            }
            Ok(Some(Ok(WatchEvent::Progress { .. }))) => {}
            other => panic!(
                "watch replay: {other:?} with {} acknowledged writes not seen",
                wanted.len()
            ),
        }
    }
}
