//! The PersistentVolume controller (upstream's `pkg/controller/volume/persistentvolume`, the
//! "PV binder"): binds claims to volumes, provisions volumes for claims of a class whose
//! provisioner it knows, and reclaims released volumes.
//!
//! - **Claims** ([`claim`]): an unbound claim gets the smallest available volume of its class
//!   that fits its request, access modes, volume mode and selector, or the volume named by its
//!   `spec.volumeName` / pre-bound to it by a volume's `claimRef`. Without one, a class with a
//!   known [`Provisioner`] provisions one (at once for `Immediate` classes; for
//!   `WaitForFirstConsumer` ones once the scheduler has written
//!   `volume.kubernetes.io/selected-node`). Phases: `Pending`, `Bound`, `Lost`. A claim with no
//!   class at all gets the default class (upstream's retroactive assignment).
//! - **Volumes** ([`volume`]): `Available` while unclaimed, `Bound` while their claim is
//!   bound to them, `Released` when the claim is gone; then `Retain` keeps them and `Delete`
//!   removes the object and, for provisioned ones, the data ([`Provisioner::delete`]).
//!   `Recycle` is not supported (`Failed`, as upstream without a recycler).
//! - **Binding** ([`binding`]): the volume's `claimRef` first, then the claim's
//!   `volumeName`, with upstream's `pv.kubernetes.io/bound-by-controller` and
//!   `pv.kubernetes.io/bind-completed` annotations and the phases in status.
//!
//! The legacy `volume.beta.kubernetes.io/storage-class` annotation names the class of both
//! claims and volumes, before `storageClassName`. Every object is re-synced every 15 s
//! (upstream's `--pvclaimbinder-sync-period`). The built-in [`LocalPathProvisioner`] backs
//! the `local-path` class; [`protection`] holds claims and volumes in use.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) {
//! use kybernetes_controllers::persistent_volume::{PersistentVolumeConfig, spawn_persistent_volume};
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let config = PersistentVolumeConfig::with_local_path("/var/lib/kybernetes/storage");
//! let handle = spawn_persistent_volume(client, kybernetes_core::Clock::new(), config, shutdown.clone());
//! shutdown.cancel();
//! handle.await.expect("the controller stops when shutdown is cancelled");
//! # }
//! ```

mod binding;
pub mod claim;
mod local_path;
pub mod protection;
pub mod volume;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use kybernetes_core::Clock;
use kybernetes_core::persistent_volume::claim_class;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

pub use local_path::{
    LOCAL_PATH_CLASS, LOCAL_PATH_PROVISIONER, LocalPathProvisioner, ensure_local_path_class,
};
pub use protection::spawn_volume_protection;

use crate::reconcile::{ErrorBackoff, run_until_shutdown};

/// How often every claim and volume is synced again (upstream's `--pvclaimbinder-sync-period`).
pub const SYNC_PERIOD: Duration = Duration::from_secs(15);
const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(60);

/// The errors of a PV controller sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("failed to {action}")]
    Api {
        /// What the controller was doing.
        action: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A provisioner failed.
    #[error("provisioning failed")]
    Provision(#[source] ProvisionError),
}

/// A PV controller result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn api_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Api { action, source }
}

/// Why a [`Provisioner`] could not create or delete a volume.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The volume's storage could not be created or removed.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The request or the volume cannot be served by this provisioner.
    #[error("{0}")]
    Unsupported(String),
}

/// What a [`Provisioner`] is asked to provision.
pub struct ProvisionRequest<'a> {
    /// The name the new PersistentVolume must have (`pvc-<claim uid>`, as upstream).
    pub volume_name: String,
    /// The claim.
    pub claim: &'a PersistentVolumeClaim,
    /// The claim's class.
    pub class: &'a StorageClass,
    /// The node the scheduler selected, for `WaitForFirstConsumer` classes.
    pub selected_node: Option<&'a str>,
}

/// A volume plugin that creates storage for claims of the classes naming it and removes it
/// again (an in-tree provisioner and deleter, in upstream's terms).
///
/// # How to implement your own
///
/// Return the PersistentVolume to create (its `claimRef`, class, reclaim policy and
/// `pv.kubernetes.io/provisioned-by` annotation are filled in by the controller if missing),
/// and remove the storage in `delete`. [`LocalPathProvisioner`] is the worked example: a
/// directory per volume.
pub trait Provisioner: Send + Sync + 'static {
    /// The provisioner name classes refer to (`StorageClass.provisioner`).
    fn name(&self) -> &str;

    /// Creates the storage for `request` and returns the volume describing it.
    fn provision<'a>(
        &'a self,
        request: ProvisionRequest<'a>,
    ) -> BoxFuture<'a, Result<PersistentVolume, ProvisionError>>;

    /// Removes the storage of a volume this provisioner created.
    fn delete<'a>(
        &'a self,
        volume: &'a PersistentVolume,
    ) -> BoxFuture<'a, Result<(), ProvisionError>>;
}

/// Settings of the PV controller.
#[derive(Clone, Default)]
pub struct PersistentVolumeConfig {
    /// The provisioners, by name.
    pub provisioners: Vec<Arc<dyn Provisioner>>,
}

impl std::fmt::Debug for PersistentVolumeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistentVolumeConfig")
            .field(
                "provisioners",
                &self
                    .provisioners
                    .iter()
                    .map(|p| p.name().to_string())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl PersistentVolumeConfig {
    /// The controller with the built-in local-path provisioner keeping volumes under `dir`.
    pub fn with_local_path(dir: impl Into<PathBuf>) -> Self {
        PersistentVolumeConfig {
            provisioners: vec![Arc::new(LocalPathProvisioner::new(dir))],
        }
    }
}

/// What every sync shares: the client, the clock, the informer caches and the provisioners.
pub(crate) struct Context {
    client: Client,
    clock: Clock,
    /// This controller's event writer, with its own correlator.
    events: crate::event_recorder::EventRecorder,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    provisioners: HashMap<String, Arc<dyn Provisioner>>,
    claim_backoff: ErrorBackoff<ObjectRef<PersistentVolumeClaim>>,
    volume_backoff: ErrorBackoff<ObjectRef<PersistentVolume>>,
}

impl Context {
    /// Waits until every cache has its first list, so that a sync never provisions a volume
    /// because the volume cache was still empty.
    async fn caches_ready(&self) {
        let ready = futures::future::join3(
            self.claims.wait_until_ready(),
            self.volumes.wait_until_ready(),
            self.classes.wait_until_ready(),
        )
        .await;
        if let (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) = ready {
            debug!(error = %e, "a PV controller cache stopped");
        }
    }

    /// The class named `name`, from the cache.
    fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.classes.get(&ObjectRef::new(name))
    }
}

/// Starts the PV controller; it stops when `shutdown` is cancelled.
pub fn spawn_persistent_volume(
    client: Client,
    clock: Clock,
    config: PersistentVolumeConfig,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(
        run(client, clock, config, shutdown).instrument(info_span!("persistentvolume_controller")),
    )
}

async fn run(
    client: Client,
    clock: Clock,
    config: PersistentVolumeConfig,
    shutdown: CancellationToken,
) {
    let claim_controller = Controller::new(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    );
    let volume_controller = Controller::new(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
    );
    let (classes, class_writer) = reflector::store();
    let class_events = watcher(
        Api::<StorageClass>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(class_writer)
    .touched_objects();
    let claims = claim_controller.store();
    let ctx = Arc::new(Context {
        events: crate::event_recorder::EventRecorder::new(client.clone(), clock.clone()),
        client: client.clone(),
        clock,
        claims: claims.clone(),
        volumes: volume_controller.store(),
        classes,
        provisioners: config
            .provisioners
            .iter()
            .map(|p| (p.name().to_string(), p.clone()))
            .collect(),
        claim_backoff: ErrorBackoff::new(MAX_ERROR_BACKOFF),
        volume_backoff: ErrorBackoff::new(MAX_ERROR_BACKOFF),
    });
    let claims_of_class = move |class: StorageClass| {
        let name = class.name_any();
        claims
            .state()
            .into_iter()
            .filter(|c| {
                c.spec
                    .as_ref()
                    .and_then(|s| s.volume_name.as_deref())
                    .is_none_or(str::is_empty)
            })
            .filter(|c| claim_class(c) == name || claim_class(c).is_empty())
            .map(|c| ObjectRef::from_obj(c.as_ref()))
            .collect::<Vec<_>>()
    };
    let claims = claim_controller
        .watches(
            Api::<PersistentVolume>::all(client.clone()),
            watcher::Config::default(),
            |pv| {
                pv.spec
                    .as_ref()
                    .and_then(|s| s.claim_ref.as_ref())
                    .and_then(|r| {
                        Some(ObjectRef::new(r.name.as_deref()?).within(r.namespace.as_deref()?))
                    })
            },
        )
        .watches_stream(class_events, claims_of_class)
        .run(claim::reconcile, claim_error_policy, ctx.clone());
    let volumes = volume_controller
        .watches(
            Api::<PersistentVolumeClaim>::all(client),
            watcher::Config::default(),
            |claim| {
                claim
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_name.as_deref())
                    .filter(|n| !n.is_empty())
                    .map(ObjectRef::new)
            },
        )
        .run(volume::reconcile, volume_error_policy, ctx);
    futures::join!(
        run_until_shutdown(claims, &shutdown, |e| debug!(error = %e, "claim sync")),
        run_until_shutdown(volumes, &shutdown, |e| debug!(error = %e, "volume sync")),
    );
    debug!("persistentvolume controller stopped");
}

fn claim_error_policy(
    claim: Arc<PersistentVolumeClaim>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let delay = ctx
        .claim_backoff
        .next_delay(ObjectRef::from_obj(claim.as_ref()));
    warn!(claim = %claim.name_any(), namespace = ?claim.namespace(), error = %error, source = ?std::error::Error::source(error), ?delay, "claim sync failed");
    Action::requeue(delay)
}

fn volume_error_policy(volume: Arc<PersistentVolume>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx
        .volume_backoff
        .next_delay(ObjectRef::from_obj(volume.as_ref()));
    warn!(volume = %volume.name_any(), error = %error, source = ?std::error::Error::source(error), ?delay, "volume sync failed");
    Action::requeue(delay)
}
