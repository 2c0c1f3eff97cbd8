//! Keeping requests away from dead etcd members, and retrying requests etcd never received.
//!
//! `etcd-client` balances requests over every endpoint with tonic's balanced channel, which keeps
//! a member that stopped accepting connections in the pool: every request sent there fails at
//! once with "tcp connect error", and since such a member never has requests in flight the
//! balancer even prefers it. So, like etcd's own Go client, the store checks each member's
//! health (a `Status` call that needs a leader, every [`HEALTH_INTERVAL`] and at once after a
//! failure), takes failing members out of the pool, and puts them back once they answer again.
//!
//! Requests that failed before etcd could act on them (the connection was refused, or the member
//! had no leader) are retried for up to [`RETRY_BUDGET`]; anything else is returned, since a write
//! whose answer was lost has an unknown outcome.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, KvClient};
use tokio::sync::Notify;
use tokio::sync::watch as signal;
use tokio::time::Instant;

use super::Inner;

/// How often members are checked.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// How long one health check may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a request etcd never received keeps being retried.
const RETRY_BUDGET: Duration = Duration::from_secs(5);

/// The health of the configured members, shared with the monitor task.
pub(crate) struct Members {
    /// One client per member, for health checks (empty with a single endpoint: nothing to choose).
    checkers: Vec<(String, Client)>,
    /// Members currently taken out of the balancer.
    removed: Mutex<HashSet<String>>,
    /// Wakes the monitor early, after a request failed.
    wake: Arc<Notify>,
}

impl Members {
    /// Health checkers for `endpoints` (none when there is only one).
    pub(crate) async fn new(
        endpoints: &[String],
        options: &ConnectOptions,
    ) -> Result<Members, etcd_client::Error> {
        let mut checkers = Vec::new();
        if endpoints.len() > 1 {
            for endpoint in endpoints {
                checkers.push((
                    endpoint.clone(),
                    Client::connect([endpoint.as_str()], Some(options.clone())).await?,
                ));
            }
        }
        Ok(Members {
            checkers,
            removed: Mutex::new(HashSet::new()),
            wake: Arc::new(Notify::new()),
        })
    }

    fn removed(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.removed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether etcd certainly did not act on the request: the connection was refused, or the member
/// refused it for want of a leader.
pub(crate) fn unsent(e: &etcd_client::Error) -> bool {
    let etcd_client::Error::GRpcStatus(status) = e else {
        return false;
    };
    if status.message().contains("no leader") || status.message() == "tcp connect error" {
        return true;
    }
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        source = err.source();
    }
    false
}

impl Inner {
    /// Runs `op` on a KV client, retrying while it fails before reaching etcd (see the module
    /// docs). `op` must build its request anew on every call.
    pub(crate) async fn call<T, Fut>(
        &self,
        mut op: impl FnMut(KvClient) -> Fut,
    ) -> Result<T, etcd_client::Error>
    where
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.retry(|| op(self.kv())).await
    }

    /// Runs `op`, retrying while it fails before reaching etcd (see the module docs).
    pub(crate) async fn retry<T, Fut>(
        &self,
        mut op: impl FnMut() -> Fut,
    ) -> Result<T, etcd_client::Error>
    where
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + RETRY_BUDGET;
        let mut delay = Duration::from_millis(25);
        loop {
            match op().await {
                Err(e) if unsent(&e) && Instant::now() + delay < deadline => {
                    tracing::debug!(error = %e, ?delay, "etcd request not delivered; retrying");
                    self.members.wake.notify_one();
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                result => return result,
            }
        }
    }

    /// Wakes the health monitor (a watch or request saw a member fail).
    pub(crate) fn member_failed(&self) {
        self.members.wake.notify_one();
    }
}

/// Checks one member: it answers `Status` and knows a leader.
async fn healthy(client: &Client) -> bool {
    let mut maintenance = client.maintenance_client();
    matches!(tokio::time::timeout(HEALTH_TIMEOUT, maintenance.status()).await, Ok(Ok(s)) if s.leader() != 0)
}

/// The member health loop; ends when the store is dropped (`stop` closes).
pub(crate) async fn run_monitor(inner: Weak<Inner>, mut stop: signal::Receiver<()>) {
    let wake = match inner.upgrade() {
        Some(strong) if !strong.members.checkers.is_empty() => Arc::clone(&strong.members.wake),
        _ => return,
    };
    loop {
        // Hold the store only while checking, so dropping it ends this task at once.
        let Some(strong) = inner.upgrade() else {
            return;
        };
        check_members(&strong).await;
        drop(strong);
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(HEALTH_INTERVAL) => {}
            _ = wake.notified() => {}
        }
    }
}

async fn check_members(inner: &Inner) {
    let members = &inner.members;
    let results = futures::future::join_all(members.checkers.iter().map(|(_, c)| healthy(c))).await;
    let healthy_count = results.iter().filter(|ok| **ok).count();
    for ((endpoint, _), ok) in members.checkers.iter().zip(results) {
        let was_removed = members.removed().contains(endpoint);
        if ok && was_removed {
            match inner.client.add_endpoint(endpoint).await {
                Ok(()) => {
                    members.removed().remove(endpoint);
                    tracing::info!(%endpoint, "etcd member is healthy again; sending it requests");
                }
                Err(e) => {
                    tracing::warn!(%endpoint, error = %e, "could not put an etcd member back")
                }
            }
        } else if !ok && !was_removed && healthy_count > 0 {
            // Never empty the pool: with no healthy member, keep trying them all.
            match inner.client.remove_endpoint(endpoint).await {
                Ok(()) => {
                    members.removed().insert(endpoint.clone());
                    tracing::warn!(%endpoint, "etcd member is unhealthy; no longer sending it requests");
                }
                Err(e) => {
                    tracing::warn!(%endpoint, error = %e, "could not take an etcd member out")
                }
            }
        }
    }
}
