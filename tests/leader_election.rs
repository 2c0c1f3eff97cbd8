//! Lease-based leader election: one leader at a time; when the leader dies without
//! releasing, another candidate takes over after the lease duration; a clean shutdown
//! releases the lease at once.

use std::time::Duration;

use kybernetes::{Cluster, LeaderElectionConfig, LeaderElector};
use tokio_util::sync::CancellationToken;

fn config(identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig::new("kybernetes-control-plane", identity)
}

async fn wait_leader(e: &LeaderElector, want: bool, within: Duration) {
    let mut rx = e.subscribe();
    tokio::time::timeout(within, rx.wait_for(|l| *l == want))
        .await
        .expect("leadership changes in time")
        .expect("election alive");
}

#[tokio::test(start_paused = true)]
async fn a_candidate_takes_over_when_the_leader_dies() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let token = CancellationToken::new();
    let a = LeaderElector::spawn(
        c.client(),
        c.clock().clone(),
        config("a"),
        token.child_token(),
    );
    wait_leader(&a, true, Duration::from_secs(5)).await;
    let b = LeaderElector::spawn(
        c.client(),
        c.clock().clone(),
        config("b"),
        token.child_token(),
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        a.is_leader() && !b.is_leader(),
        "only one leader while a renews"
    );

    let died = tokio::time::Instant::now();
    a.abort();
    wait_leader(&b, true, Duration::from_secs(30)).await;
    let took = died.elapsed();
    assert!(
        took >= Duration::from_secs(13),
        "b waited for the lease to expire, took {took:?}"
    );
    assert!(
        took <= Duration::from_secs(20),
        "b took over within lease duration + retry, took {took:?}"
    );
    token.cancel();
    b.join().await;
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_clean_shutdown_releases_the_lease() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let ta = CancellationToken::new();
    let a = LeaderElector::spawn(c.client(), c.clock().clone(), config("a"), ta.clone());
    wait_leader(&a, true, Duration::from_secs(5)).await;
    let b = LeaderElector::spawn(
        c.client(),
        c.clock().clone(),
        config("b"),
        CancellationToken::new(),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let released = tokio::time::Instant::now();
    ta.cancel();
    a.join().await;
    wait_leader(&b, true, Duration::from_secs(30)).await;
    assert!(
        released.elapsed() <= Duration::from_secs(5),
        "b took over promptly: {:?}",
        released.elapsed()
    );
    c.shutdown().await.expect("shutdown");
}
