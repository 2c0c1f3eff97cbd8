//! The service load-balancer controller (upstream's cloud-provider `service` controller, with
//! a built-in implementation in the manner of k3s's servicelb and MetalLB's layer-2 mode): a
//! Service of type `LoadBalancer` gets the first free address of a configured pool in
//! `status.loadBalancer.ingress[].ip`, which the service proxy then serves like a ClusterIP
//! (`LinuxNetwork` DNATs it in every node namespace, as kube-proxy does for load-balancer
//! ingress addresses).
//!
//! - The addresses in use are read from the Services themselves, so a restarted controller
//!   hands out nothing twice and a deleted Service frees its address.
//! - A Service with `spec.loadBalancerClass` is left to the implementation it names, as
//!   upstream's controller leaves it.
//! - A Service the pool has no address left for gets a `SyncLoadBalancerFailed` warning
//!   event and stays pending (`EXTERNAL-IP <pending>`); it is retried until one frees up.
//! - A Service that stops being a `LoadBalancer` loses its ingress address.
//!
//! ```no_run
//! # async fn run(client: kube::Client) {
//! use kybernetes_controllers::load_balancer::{LoadBalancerConfig, spawn_load_balancer_controller};
//! let config = LoadBalancerConfig { pool: Some("172.30.0.0/24".parse().expect("a CIDR")) };
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let handle = spawn_load_balancer_controller(client, Default::default(), config, shutdown.clone());
//! shutdown.cancel();
//! handle.await.expect("the controller stops when shutdown is cancelled");
//! # }
//! ```

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kybernetes_core::Clock;
use kybernetes_core::ipam::{Cidr, IpAllocator};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::event_recorder::EventRecorder;

/// How often a pending Service asks the pool again.
const PENDING_RETRY: Duration = Duration::from_secs(2);

/// Settings of the load-balancer controller.
#[derive(Clone, Debug, Default)]
pub struct LoadBalancerConfig {
    /// The addresses Services of type `LoadBalancer` get (its network and broadcast
    /// addresses are never handed out). `None`: the controller does not run, and such
    /// Services stay pending, as on a cluster without a cloud provider.
    pub pool: Option<Cidr>,
}

/// An error while syncing a Service's load balancer; the Service is retried.
#[derive(Debug, thiserror::Error)]
#[error("syncing the load balancer of a service: {0}")]
pub struct Error(#[source] kube::Error);

struct Context {
    client: Client,
    pool: Cidr,
    events: EventRecorder,
    /// One allocation at a time: two Services reconciled together must not both take the
    /// address each sees as free.
    allocating: tokio::sync::Mutex<()>,
}

/// Starts the controller; it runs until `shutdown` is cancelled (at once without a pool).
pub fn spawn_load_balancer_controller(
    client: Client,
    clock: Clock,
    config: LoadBalancerConfig,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let run =
        async move {
            let Some(pool) = config.pool else {
                debug!("no load-balancer pool: the controller does not run");
                return;
            };
            info!(%pool, "load-balancer controller starting");
            let ctx = Arc::new(Context {
                events: EventRecorder::new(client.clone(), clock),
                client: client.clone(),
                pool,
                allocating: tokio::sync::Mutex::new(()),
            });
            let results = Controller::new(Api::<Service>::all(client), watcher::Config::default())
                .run(reconcile, error_policy, ctx);
            crate::reconcile::run_until_shutdown(
                results,
                &shutdown,
                |e| debug!(error = %e, "load-balancer reconcile failed"),
            )
            .await;
            info!("load-balancer controller stopped");
        };
    tokio::spawn(run.instrument(info_span!("load_balancer_controller")))
}

fn error_policy(_svc: Arc<Service>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(error = %error, "will retry");
    Action::requeue(Duration::from_secs(1))
}

/// Whether this controller serves `svc`: a `LoadBalancer` without a class of its own, not
/// being deleted.
fn wants_address(svc: &Service) -> bool {
    let spec = svc.spec.as_ref();
    svc.metadata.deletion_timestamp.is_none()
        && spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
        && spec
            .and_then(|s| s.load_balancer_class.as_deref())
            .is_none()
}

/// The ingress addresses in `svc`'s status.
fn ingress_ips(svc: &Service) -> Vec<IpAddr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let ours: Vec<IpAddr> = ingress_ips(&svc)
        .into_iter()
        .filter(|ip| ctx.pool.contains(*ip))
        .collect();
    if !wants_address(&svc) {
        if !ours.is_empty() && svc.metadata.deletion_timestamp.is_none() {
            // No longer a LoadBalancer: upstream's controller removes the load balancer and
            // clears the status.
            set_ingress(&services, &name, None).await?;
            info!(namespace = %ns, service = %name, "load-balancer address released");
        }
        return Ok(Action::await_change());
    }
    if !ours.is_empty() {
        return Ok(Action::await_change());
    }
    let _one_at_a_time = ctx.allocating.lock().await;
    let all = Api::<Service>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(Error)?;
    let mut pool = IpAllocator::new(ctx.pool);
    for other in &all.items {
        // An address outside the pool is not ours to track; one on the pool's network or
        // broadcast address is never handed out anyway.
        for ip in ingress_ips(other)
            .into_iter()
            .filter(|ip| ctx.pool.contains(*ip))
        {
            if let Err(e) = pool.mark_used(ip) {
                debug!(%ip, error = %e, "ingress address not tracked");
            }
        }
    }
    let Some(ip) = pool.allocate() else {
        ctx.events
            .record(
                svc.as_ref(),
                "Warning",
                "SyncLoadBalancerFailed",
                format!(
                    "Error syncing load balancer: no address left in the pool {}",
                    ctx.pool
                ),
            )
            .await;
        return Ok(Action::requeue(PENDING_RETRY));
    };
    set_ingress(&services, &name, Some(ip)).await?;
    info!(namespace = %ns, service = %name, %ip, "load-balancer address assigned");
    ctx.events
        .record(
            svc.as_ref(),
            "Normal",
            "EnsuredLoadBalancer",
            format!("Ensured load balancer at {ip}"),
        )
        .await;
    Ok(Action::await_change())
}

/// Writes `status.loadBalancer` with `ip` as its only ingress, or empties it.
async fn set_ingress(services: &Api<Service>, name: &str, ip: Option<IpAddr>) -> Result<(), Error> {
    let ingress = match ip {
        Some(ip) => json!([{"ip": ip.to_string(), "ipMode": "VIP"}]),
        None => serde_json::Value::Null,
    };
    let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
    match services
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        // Deleted meanwhile: nothing to write.
        Err(e) if crate::reconcile::is_not_found(&e) => Ok(()),
        Err(e) => Err(Error(e)),
    }
}
