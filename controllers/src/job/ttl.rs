//! The TTL-after-finished controller (upstream's `pkg/controller/ttlafterfinished`): deletes a
//! Job `ttlSecondsAfterFinished` after it finished, with its pods (foreground cascading, as
//! upstream).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kybernetes_core::Clock;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::status;
use crate::reconcile::is_not_found;

/// The errors of a TTL-after-finished reconcile.
#[derive(Debug, thiserror::Error)]
#[error("failed to delete the expired job")]
pub struct TtlError(#[source] kube::Error);

struct TtlContext {
    client: Client,
    clock: Clock,
}

/// Starts the TTL-after-finished controller; it stops when `shutdown` is cancelled.
pub fn spawn_ttl_after_finished(
    client: Client,
    clock: Clock,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let task =
        async move {
            let ctx = Arc::new(TtlContext {
                client: client.clone(),
                clock,
            });
            let controller = Controller::new(Api::<Job>::all(client), watcher::Config::default())
                .run(reconcile, error_policy, ctx);
            crate::reconcile::run_until_shutdown(
                controller,
                &shutdown,
                |e| debug!(error = %e, "ttl-after-finished controller"),
            )
            .await;
            debug!("ttl-after-finished controller stopped");
        };
    tokio::spawn(task.instrument(info_span!("ttl_after_finished_controller")))
}

/// Upstream's `processJob`: deletes the Job once `finish time + ttl` has passed, else comes
/// back then.
async fn reconcile(job: Arc<Job>, ctx: Arc<TtlContext>) -> Result<Action, TtlError> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(Action::await_change());
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(finished) = status::finish_time(&job) else {
        return Ok(Action::await_change());
    };
    let expires = finished + chrono::Duration::seconds(i64::from(ttl.max(0)));
    let now = ctx.clock.now();
    if now < expires {
        let wait = (expires - now).to_std().unwrap_or_default();
        return Ok(Action::requeue(wait.max(Duration::from_millis(10))));
    }
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: job.metadata.uid.clone(),
            resource_version: job.metadata.resource_version.clone(),
        }),
        ..Default::default()
    };
    match api.delete(&job.name_any(), &params).await {
        Ok(_) => {
            info!(job = %job.name_any(), "deleted the finished job after its TTL");
            Ok(Action::await_change())
        }
        Err(e) if is_not_found(&e) => Ok(Action::await_change()),
        Err(e) => Err(TtlError(e)),
    }
}

fn error_policy(job: Arc<Job>, error: &TtlError, _ctx: Arc<TtlContext>) -> Action {
    warn!(job = %job.name_any(), error = %error, source = ?std::error::Error::source(error), "ttl-after-finished failed");
    Action::requeue(Duration::from_secs(5))
}
