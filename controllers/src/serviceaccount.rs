//! The service account controller (upstream's `pkg/controller/serviceaccount`
//! `ServiceAccountsController`): every namespace that is not being deleted has a `default`
//! ServiceAccount; one that is deleted is made again.
//!
//! ```no_run
//! # async fn run(client: kube::Client) {
//! use kybernetes_controllers::serviceaccount::spawn_serviceaccounts_controller;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let handle = spawn_serviceaccounts_controller(client, shutdown.clone());
//! shutdown.cancel();
//! handle.await.expect("the controller stops when shutdown is cancelled");
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

/// The service account every namespace gets.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// An error while making a namespace's default service account; the namespace is retried.
#[derive(Debug, thiserror::Error)]
#[error("creating the default service account: {0}")]
pub struct Error(#[source] kube::Error);

/// Starts the controller; it runs until `shutdown` is cancelled.
pub fn spawn_serviceaccounts_controller(
    client: Client,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let run = async move {
        info!("service account controller starting");
        let accounts = Api::<ServiceAccount>::all(client.clone());
        // A deleted default account sends its namespace back through reconcile.
        let by_name =
            watcher::Config::default().fields(&format!("metadata.name={DEFAULT_SERVICE_ACCOUNT}"));
        let results = Controller::new(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default(),
        )
        .watches(accounts, by_name, |sa| {
            sa.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns))
        })
        .run(reconcile, error_policy, Arc::new(client));
        crate::reconcile::run_until_shutdown(
            results,
            &shutdown,
            |e| debug!(error = %e, "service account reconcile failed"),
        )
        .await;
        info!("service account controller stopped");
    };
    tokio::spawn(run.instrument(info_span!("serviceaccount_controller")))
}

fn error_policy(_ns: Arc<Namespace>, error: &Error, _client: Arc<Client>) -> Action {
    warn!(error = %error, "will retry");
    Action::requeue(Duration::from_secs(1))
}

/// Upstream `syncNamespace`: an active namespace without a `default` account gets one.
async fn reconcile(ns: Arc<Namespace>, client: Arc<Client>) -> Result<Action, Error> {
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let accounts: Api<ServiceAccount> = Api::namespaced((*client).clone(), &name);
    if accounts
        .get_opt(DEFAULT_SERVICE_ACCOUNT)
        .await
        .map_err(Error)?
        .is_some()
    {
        return Ok(Action::await_change());
    }
    let mut sa = ServiceAccount::default();
    sa.metadata.name = Some(DEFAULT_SERVICE_ACCOUNT.to_string());
    match accounts.create(&PostParams::default(), &sa).await {
        Ok(_) => {
            debug!(namespace = %name, "created the default service account");
            Ok(Action::await_change())
        }
        // Made meanwhile, or the namespace started terminating: nothing to do.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => Ok(Action::await_change()),
        Err(e) => Err(Error(e)),
    }
}
