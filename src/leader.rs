//! Leader election through a `coordination.k8s.io/v1` Lease, as upstream's `--leader-elect`
//! (client-go's `leaderelection`) does: the holder renews the lease every retry period; another
//! candidate takes over once it has seen no renewal for a whole lease duration, measured on its
//! own clock (so clock skew between machines does not matter).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use kybernetes_core::Clock;

/// Settings of a leader election. Defaults follow kube-controller-manager.
#[derive(Clone, Debug)]
pub struct LeaderElectionConfig {
    /// Namespace of the lease (default `kube-system`).
    pub namespace: String,
    /// Name of the lease, e.g. `kube-scheduler`.
    pub name: String,
    /// This candidate's identity (unique per process).
    pub identity: String,
    /// How long a lease is valid without renewal (upstream: 15 s).
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it steps down (upstream: 10 s).
    pub renew_deadline: Duration,
    /// How often candidates try to acquire or renew (upstream: 2 s).
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// Upstream defaults for a lease `name` held by `identity`.
    pub fn new(name: impl Into<String>, identity: impl Into<String>) -> Self {
        LeaderElectionConfig {
            namespace: "kube-system".into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// A running election. `is_leader()` follows the outcome.
pub struct LeaderElector {
    leader: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector")
            .field("leader", &*self.leader.borrow())
            .finish()
    }
}

impl LeaderElector {
    /// Starts campaigning. The election stops (and a held lease is released) when `shutdown`
    /// is cancelled.
    pub fn spawn(
        client: kube::Client,
        clock: Clock,
        config: LeaderElectionConfig,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, leader) = watch::channel(false);
        let task = tokio::spawn(campaign(client, clock, config, tx, shutdown));
        LeaderElector { leader, task }
    }

    /// True while this candidate holds the lease.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// A receiver that changes whenever leadership is gained or lost.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// Stops campaigning at once without releasing the lease, as a crashed process would.
    pub fn abort(self) {
        self.task.abort();
    }

    /// Waits for the election task to end (after the shutdown token is cancelled).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

struct Observed {
    holder: String,
    renew_time: String,
    at: Instant,
}

async fn campaign(
    client: kube::Client,
    clock: Clock,
    cfg: LeaderElectionConfig,
    leader: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let leases: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut observed: Option<Observed> = None;
    let mut last_renew = Instant::now();
    loop {
        match try_acquire_or_renew(&leases, &clock, &cfg, &mut observed).await {
            Ok(true) => {
                last_renew = Instant::now();
                if !*leader.borrow() {
                    info!(lease = %cfg.name, identity = %cfg.identity, "became leader");
                    leader.send_replace(true);
                }
            }
            Ok(false) => {
                if *leader.borrow() {
                    warn!(lease = %cfg.name, identity = %cfg.identity, "lost the lease to another candidate");
                    leader.send_replace(false);
                }
            }
            Err(e) => {
                debug!(error = %e, "leader election request failed");
                if *leader.borrow() && last_renew.elapsed() > cfg.renew_deadline {
                    warn!(lease = %cfg.name, "could not renew the lease within the deadline; stepping down");
                    leader.send_replace(false);
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(cfg.retry_period) => {}
        }
    }
    if *leader.borrow() {
        release(&leases, &clock, &cfg).await;
        leader.send_replace(false);
    }
}

/// One round of client-go's `tryAcquireOrRenew`. Returns whether we hold the lease after it.
async fn try_acquire_or_renew(
    leases: &Api<Lease>,
    clock: &Clock,
    cfg: &LeaderElectionConfig,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    let now = clock.now_micro();
    let duration_secs = i32::try_from(cfg.lease_duration.as_secs())
        .unwrap_or(i32::MAX)
        .max(1);
    let Some(current) = leases.get_opt(&cfg.name).await? else {
        let lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": cfg.name},
            "spec": {"holderIdentity": cfg.identity, "leaseDurationSeconds": duration_secs,
                     "acquireTime": now, "renewTime": now, "leaseTransitions": 0}
        }))
        .map_err(kube::Error::SerdeError)?;
        return match leases.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = current.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let renew_time = spec
        .renew_time
        .as_ref()
        .map(|t| format!("{:?}", t.0))
        .unwrap_or_default();
    let changed = observed
        .as_ref()
        .is_none_or(|o| o.holder != holder || o.renew_time != renew_time);
    if changed {
        *observed = Some(Observed {
            holder: holder.clone(),
            renew_time,
            at: Instant::now(),
        });
    }
    let seen_at = observed.as_ref().map(|o| o.at).unwrap_or_else(Instant::now);
    let held_by_other = !holder.is_empty() && holder != cfg.identity;
    let lease_secs = spec
        .lease_duration_seconds
        .map(|s| u64::try_from(s).unwrap_or(0))
        .unwrap_or(cfg.lease_duration.as_secs());
    if held_by_other && seen_at.elapsed() < Duration::from_secs(lease_secs) {
        return Ok(false);
    }
    let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(holder != cfg.identity);
    let acquire = if holder == cfg.identity {
        spec.acquire_time.map(|t| json!(t)).unwrap_or(json!(now))
    } else {
        json!(now)
    };
    let mut next = current.clone();
    next.spec = Some(
        serde_json::from_value(json!({
            "holderIdentity": cfg.identity, "leaseDurationSeconds": duration_secs,
            "acquireTime": acquire, "renewTime": now, "leaseTransitions": transitions
        }))
        .map_err(kube::Error::SerdeError)?,
    );
    // The resourceVersion in `next` makes this a compare-and-swap: two candidates racing for an
    // expired lease cannot both win.
    match leases
        .replace(&cfg.name, &PostParams::default(), &next)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the lease up at shutdown so another candidate can take over at once.
async fn release(leases: &Api<Lease>, clock: &Clock, cfg: &LeaderElectionConfig) {
    let Ok(Some(mut current)) = leases.get_opt(&cfg.name).await else {
        return;
    };
    let Some(spec) = current.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    if let Ok(t) = serde_json::from_value(json!(clock.now_micro())) {
        spec.renew_time = Some(t);
    }
    if let Err(e) = leases
        .replace(&cfg.name, &PostParams::default(), &current)
        .await
    {
        debug!(error = %e, "releasing the lease failed");
    }
}
