//! The HorizontalPodAutoscaler controller (upstream's `pkg/controller/podautoscaler`): every
//! [`SYNC_PERIOD`] it sets each autoscaler's target to the replica count its metrics ask for.
//!
//! Each sync (upstream's `reconcileAutoscaler`):
//! 1. reads the target's `/scale` (any kind that serves one: Deployments, ReplicaSets,
//!    StatefulSets, ReplicationControllers, custom resources), found through discovery from
//!    `scaleTargetRef`; `AbleToScale` says whether that worked;
//! 2. with the target at zero replicas, scaling is disabled; outside `minReplicas` and
//!    `maxReplicas` the count is brought back within them;
//! 3. otherwise each metric proposes a count ([`metrics`], from the pods the scale's
//!    `status.selector` selects, their PodMetrics and [`replica_calculator`]) and the highest
//!    proposal wins; `ScalingActive` says whether any metric worked;
//! 4. [`behavior`] stabilizes the proposal over the recent recommendations and limits the
//!    rate and the bounds; `ScalingLimited` says whether that changed it;
//! 5. a new count is written to `/scale` with a `SuccessfulRescale` event; then the status
//!    (`currentReplicas`, `desiredReplicas`, `currentMetrics`, `lastScaleTime`, the conditions,
//!    `observedGeneration`) is written if it changed.
//!
//! The recommendations and scale events are kept in memory per autoscaler, as upstream keeps
//! them. Durations come from `tokio::time` and timestamps from the cluster clock, so a test
//! under tokio's paused clock sees the 300 s scale-down window pass at once.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) {
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let handle = kybernetes_controllers::spawn_horizontal_pod_autoscaler(client, kybernetes_core::Clock::new(), shutdown.clone());
//! shutdown.cancel();
//! handle.await.expect("the controller stops when shutdown is cancelled");
//! # }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition,
    HorizontalPodAutoscalerStatus, MetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Client, ResourceExt};
use kybernetes_core::Clock;
use kybernetes_core::selector::LabelSelector;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::api_values::to_time;
use crate::reconcile::run_until_shutdown;

pub mod behavior;
pub mod metrics;
pub mod replica_calculator;
pub mod status;

use behavior::History;
use status::{ABLE_TO_SCALE, SCALING_ACTIVE, SCALING_LIMITED, set_condition};

/// How often each autoscaler is synced (upstream's
/// `--horizontal-pod-autoscaler-sync-period`).
pub const SYNC_PERIOD: Duration = Duration::from_secs(15);

/// The errors of one sync; each is also recorded on the autoscaler as upstream does.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The target's scale could not be read.
    #[error("failed to query scale subresource for {reference}: {message}")]
    GetScale {
        /// `Kind/namespace/name` of the target.
        reference: String,
        /// Why.
        message: String,
    },
    /// No metric gave a count (or some failed and the rest would scale down).
    #[error(
        "failed to compute desired number of replicas based on listed metrics for {reference}: {message}"
    )]
    ComputeReplicas {
        /// `Kind/namespace/name` of the target.
        reference: String,
        /// Why.
        message: String,
    },
    /// The new count could not be written.
    #[error("failed to rescale {reference}: {source}")]
    Rescale {
        /// `Kind/namespace/name` of the target.
        reference: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The status could not be written.
    #[error("failed to update status for {name}: {source}")]
    UpdateStatus {
        /// The autoscaler.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// A sync's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

struct Context {
    client: Client,
    clock: Clock,
    /// This controller's event writer, with its own correlator.
    events: crate::event_recorder::EventRecorder,
    autoscalers: Store<HorizontalPodAutoscaler>,
    /// Recommendations and scale events by `namespace/name`.
    history: Mutex<HashMap<String, History>>,
    /// The pod selector of each autoscaler's target as its last sync read it, by
    /// `namespace/name` (upstream's `hpaSelectors`), to find pods two autoscalers would scale.
    selectors: Mutex<HashMap<String, (String, LabelSelector)>>,
}

impl Context {
    fn with_history<T>(&self, key: &str, f: impl FnOnce(&mut History) -> T) -> T {
        let mut all = self.history.lock().unwrap_or_else(|e| e.into_inner());
        f(all.entry(key.to_string()).or_default())
    }

    /// Drops what is remembered of deleted autoscalers (upstream's `deleteHPA`).
    fn forget_deleted(&self) {
        let live: std::collections::HashSet<String> =
            self.autoscalers.state().iter().map(|h| key_of(h)).collect();
        let mut all = self.history.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|k, _| live.contains(k));
        let mut selectors = self.selectors.lock().unwrap_or_else(|e| e.into_inner());
        selectors.retain(|k, _| live.contains(k));
    }

    /// Remembers `key`'s selector and returns every autoscaler (`key` first, then the others
    /// sorted) whose selector takes in one of `pods`, which `key`'s selector selected.
    fn autoscalers_selecting(
        &self,
        key: &str,
        namespace: &str,
        selector: LabelSelector,
        pods: &[Pod],
    ) -> Vec<String> {
        let mut selectors = self.selectors.lock().unwrap_or_else(|e| e.into_inner());
        selectors.insert(key.to_string(), (namespace.to_string(), selector));
        let mut others: Vec<String> = selectors
            .iter()
            .filter(|(k, (ns, sel))| {
                k.as_str() != key && ns == namespace && pods.iter().any(|p| sel.matches(p.labels()))
            })
            .map(|(k, _)| k.clone())
            .collect();
        others.sort();
        let mut all = vec![key.to_string()];
        all.extend(others);
        all
    }
}

fn key_of(hpa: &HorizontalPodAutoscaler) -> String {
    format!("{}/{}", hpa.namespace().unwrap_or_default(), hpa.name_any())
}

/// Starts the HorizontalPodAutoscaler controller; it stops when `shutdown` is cancelled.
pub fn spawn_horizontal_pod_autoscaler(
    client: Client,
    clock: Clock,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(
        run(client, clock, shutdown).instrument(info_span!("horizontal_pod_autoscaler_controller")),
    )
}

async fn run(client: Client, clock: Clock, shutdown: CancellationToken) {
    let (reader, writer) = reflector::store();
    // Spec changes sync at once; status writes (the controller's own) wait for the period.
    let changes = reflector::reflector(
        writer,
        watcher(
            Api::<HorizontalPodAutoscaler>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .applied_objects()
    .predicate_filter(predicates::generation, Default::default());
    let ctx = Arc::new(Context {
        events: crate::event_recorder::EventRecorder::new(client.clone(), clock.clone()),
        client,
        clock,
        autoscalers: reader.clone(),
        history: Mutex::new(HashMap::new()),
        selectors: Mutex::new(HashMap::new()),
    });
    let controller = Controller::for_stream(changes, reader).run(reconcile, error_policy, ctx);
    run_until_shutdown(
        controller.boxed(),
        &shutdown,
        |e| debug!(error = %e, "horizontal pod autoscaler controller"),
    )
    .await;
}

fn error_policy(hpa: Arc<HorizontalPodAutoscaler>, error: &Error, _ctx: Arc<Context>) -> Action {
    // Upstream requeues a failed autoscaler at the same fixed interval as a healthy one.
    warn!(hpa = %hpa.name_any(), namespace = ?hpa.namespace(), error = %error, "sync failed");
    Action::requeue(SYNC_PERIOD)
}

async fn reconcile(hpa: Arc<HorizontalPodAutoscaler>, ctx: Arc<Context>) -> Result<Action> {
    ctx.forget_deleted();
    Sync::new(&ctx, &hpa).run().await?;
    Ok(Action::requeue(SYNC_PERIOD))
}

/// One sync of one autoscaler, holding the status it builds.
struct Sync<'a> {
    ctx: &'a Context,
    hpa: &'a HorizontalPodAutoscaler,
    key: String,
    reference: String,
    now: DateTime<Utc>,
    conditions: Vec<HorizontalPodAutoscalerCondition>,
}

/// What the metrics said.
struct MetricsOutcome {
    replicas: i32,
    name: String,
    statuses: Vec<MetricStatus>,
    /// The first failure, when some metrics failed but the others still scale.
    partial_error: Option<String>,
}

impl<'a> Sync<'a> {
    fn new(ctx: &'a Context, hpa: &'a HorizontalPodAutoscaler) -> Self {
        let target = hpa.spec.as_ref().map(|s| &s.scale_target_ref);
        let reference = format!(
            "{}/{}/{}",
            target.map(|t| t.kind.as_str()).unwrap_or(""),
            hpa.namespace().unwrap_or_default(),
            target.map(|t| t.name.as_str()).unwrap_or("")
        );
        Sync {
            ctx,
            hpa,
            key: key_of(hpa),
            reference,
            now: ctx.clock.now(),
            conditions: hpa
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default(),
        }
    }

    fn condition(&mut self, type_: &str, status: bool, reason: &str, message: impl Into<String>) {
        set_condition(
            &mut self.conditions,
            type_,
            status,
            reason,
            message.into(),
            self.now,
        );
    }

    async fn event(&self, type_: &str, reason: &str, message: String) {
        self.ctx
            .events
            .record(self.hpa, type_, reason, message)
            .await;
    }

    async fn run(mut self) -> Result<()> {
        let spec = self.hpa.spec.clone().unwrap_or_default();
        let ns = self.hpa.namespace().unwrap_or_default();
        let previous = self.hpa.status.clone().unwrap_or_default();
        let (api, scale) = match get_scale(&self.ctx.client, &ns, &spec.scale_target_ref).await {
            Ok(s) => s,
            Err(message) => {
                self.event("Warning", "FailedGetScale", message.clone())
                    .await;
                self.condition(
                    ABLE_TO_SCALE,
                    false,
                    "FailedGetScale",
                    format!(
                        "the HPA controller was unable to get the target's current scale: {message}"
                    ),
                );
                self.write_status(
                    previous.current_replicas.unwrap_or(0),
                    previous.desired_replicas,
                    previous.current_metrics.clone().unwrap_or_default(),
                    false,
                )
                .await?;
                return Err(Error::GetScale {
                    reference: self.reference,
                    message,
                });
            }
        };
        self.condition(
            ABLE_TO_SCALE,
            true,
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        );
        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let now = self.now;
        self.ctx
            .with_history(&self.key, |h| h.record_initial(current, now));
        let min = spec.min_replicas.unwrap_or(1);
        let max = spec.max_replicas;

        let mut statuses = Vec::new();
        let mut partial_error = None;
        let (desired, reason) = if current == 0 && min != 0 {
            self.condition(
                SCALING_ACTIVE,
                false,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            );
            (0, String::new())
        } else if current > max {
            (
                max,
                "Current number of replicas above Spec.MaxReplicas".to_string(),
            )
        } else if current < min {
            (
                min,
                "Current number of replicas below Spec.MinReplicas".to_string(),
            )
        } else {
            let outcome = match self
                .compute_replicas(&spec.metrics.clone().unwrap_or_default(), &scale)
                .await
            {
                Ok(o) => o,
                Err((message, statuses)) => {
                    self.write_status(current, previous.desired_replicas, statuses, false)
                        .await?;
                    self.event("Warning", "FailedComputeMetricsReplicas", message.clone())
                        .await;
                    return Err(Error::ComputeReplicas {
                        reference: self.reference,
                        message,
                    });
                }
            };
            statuses = outcome.statuses;
            partial_error = outcome.partial_error;
            let proposed = outcome.replicas.max(0);
            let reason = if proposed > current {
                format!("{} above target", outcome.name)
            } else if proposed < current {
                "All metrics below target".to_string()
            } else {
                String::new()
            };
            let decision = self.ctx.with_history(&self.key, |h| match &spec.behavior {
                Some(b) => h.normalize_with_behavior(b, current, proposed, min, max, now),
                None => h.normalize(current, proposed, min, max, now),
            });
            self.condition(
                ABLE_TO_SCALE,
                true,
                decision.able_to_scale.0,
                decision.able_to_scale.1,
            );
            self.condition(
                SCALING_LIMITED,
                decision.limited.0,
                decision.limited.1,
                decision.limited.2,
            );
            (decision.replicas, reason)
        };

        let rescale = !(current == 0 && min != 0) && desired != current;
        if rescale {
            if let Err(e) = update_scale(&api, &scale, desired).await {
                self.event(
                    "Warning",
                    "FailedRescale",
                    format!("New size: {desired}; reason: {reason}; error: {e}"),
                )
                .await;
                self.condition(
                    ABLE_TO_SCALE,
                    false,
                    "FailedUpdateScale",
                    format!("the HPA controller was unable to update the target scale: {e}"),
                );
                self.write_status(current, previous.desired_replicas, statuses, false)
                    .await?;
                return Err(Error::Rescale {
                    reference: self.reference,
                    source: e,
                });
            }
            self.condition(
                ABLE_TO_SCALE,
                true,
                "SucceededRescale",
                format!("the HPA controller was able to update the target scale to {desired}"),
            );
            self.event(
                "Normal",
                "SuccessfulRescale",
                format!("New size: {desired}; reason: {reason}"),
            )
            .await;
            self.ctx.with_history(&self.key, |h| {
                h.record_scale(spec.behavior.as_ref(), current, desired, now)
            });
            info!(hpa = %self.hpa.name_any(), reference = %self.reference, from = current, to = desired, %reason, "successfully rescaled");
        }
        let desired = if rescale { desired } else { current };
        self.write_status(current, desired, statuses, rescale)
            .await?;
        match partial_error {
            // Some metrics worked and scaled; the failure still counts, as upstream returns it.
            Some(message) => Err(Error::ComputeReplicas {
                reference: self.reference,
                message,
            }),
            None => Ok(()),
        }
    }

    /// Upstream's `computeReplicasForMetrics`; on failure, the message and the statuses that
    /// were computed.
    async fn compute_replicas(
        &mut self,
        specs: &[k8s_openapi::api::autoscaling::v2::MetricSpec],
        scale: &Scale,
    ) -> Result<MetricsOutcome, (String, Vec<MetricStatus>)> {
        let selector = scale
            .status
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        if selector.is_empty() {
            let message = "selector is required".to_string();
            self.event("Warning", "SelectorRequired", message.clone())
                .await;
            self.condition(
                SCALING_ACTIVE,
                false,
                "InvalidSelector",
                "the HPA target's scale is missing a selector",
            );
            return Err((message, Vec::new()));
        }
        let parsed = match LabelSelector::parse(&selector) {
            Ok(parsed) => parsed,
            Err(e) => {
                let message = format!(
                    "couldn't convert selector into a corresponding internal selector object: {e}"
                );
                self.event("Warning", "InvalidSelector", message.clone())
                    .await;
                self.condition(SCALING_ACTIVE, false, "InvalidSelector", message.clone());
                return Err((message, Vec::new()));
            }
        };
        let ns = self.hpa.namespace().unwrap_or_default();
        let observed = metrics::observe(&self.ctx.client, &ns, &selector, self.now)
            .await
            .map_err(|e| {
                (
                    format!("unable to get pods while calculating replica count: {e}"),
                    Vec::new(),
                )
            })?;
        // Two autoscalers scaling the same pods would fight: upstream stops both.
        let selecting = self
            .ctx
            .autoscalers_selecting(&self.key, &ns, parsed, &observed.pods);
        if selecting.len() > 1 {
            let message = format!(
                "pods by selector {selector} are controlled by multiple HPAs: [{}]",
                selecting.join(" ")
            );
            self.event("Warning", "AmbiguousSelector", message.clone())
                .await;
            self.condition(SCALING_ACTIVE, false, "AmbiguousSelector", message.clone());
            return Err((message, Vec::new()));
        }
        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let mut statuses = vec![MetricStatus::default(); specs.len()];
        let (mut replicas, mut name) = (0, String::new());
        let mut failures = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            match metrics::compute(spec, current, &observed) {
                Ok(p) => {
                    if replicas == 0 || p.replicas > replicas {
                        replicas = p.replicas;
                        name = p.name;
                    }
                    statuses[i] = p.status;
                }
                Err(f) => {
                    self.event("Warning", f.reason, f.error.clone()).await;
                    failures.push(f);
                }
            }
        }
        let Some(first) = failures.first() else {
            self.condition(
                SCALING_ACTIVE,
                true,
                "ValidMetricFound",
                format!("the HPA was able to successfully calculate a replica count from {name}"),
            );
            return Ok(MetricsOutcome {
                replicas,
                name,
                statuses,
                partial_error: None,
            });
        };
        let message = format!(
            "invalid metrics ({} invalid out of {}), first error is: {}",
            failures.len(),
            specs.len(),
            first.error
        );
        // With every metric failed, or a failure and the rest scaling down, nothing moves.
        if failures.len() >= specs.len() || replicas < current {
            let (reason, detail) = (
                first.reason,
                format!(
                    "the HPA was unable to compute the replica count: {}",
                    first.error
                ),
            );
            self.condition(SCALING_ACTIVE, false, reason, detail);
            return Err((message, statuses));
        }
        self.condition(
            SCALING_ACTIVE,
            true,
            "ValidMetricFound",
            format!("the HPA was able to successfully calculate a replica count from {name}"),
        );
        Ok(MetricsOutcome {
            replicas,
            name,
            statuses,
            partial_error: Some(message),
        })
    }

    /// Writes the status if it changed (upstream's `setStatus` and `updateStatusIfNeeded`).
    async fn write_status(
        &self,
        current: i32,
        desired: i32,
        statuses: Vec<MetricStatus>,
        rescaled: bool,
    ) -> Result<()> {
        let previous = self.hpa.status.clone().unwrap_or_default();
        let status = HorizontalPodAutoscalerStatus {
            current_replicas: Some(current),
            desired_replicas: desired,
            last_scale_time: if rescaled {
                Some(to_time(self.now))
            } else {
                previous.last_scale_time.clone()
            },
            current_metrics: (!statuses.is_empty()).then_some(statuses),
            conditions: Some(self.conditions.clone()),
            observed_generation: self.hpa.metadata.generation,
        };
        if status == previous {
            return Ok(());
        }
        let mut hpa = self.hpa.clone();
        hpa.status = Some(status);
        // The controller is the status's only writer, so the write need not wait on the
        // informer having seen its previous one.
        hpa.metadata.resource_version = None;
        hpa.metadata.managed_fields = None;
        let api: Api<HorizontalPodAutoscaler> = Api::namespaced(
            self.ctx.client.clone(),
            &self.hpa.namespace().unwrap_or_default(),
        );
        api.replace_status(&self.hpa.name_any(), &PostParams::default(), &hpa)
            .await
            .map(|_| ())
            .map_err(|source| Error::UpdateStatus {
                name: self.hpa.name_any(),
                source,
            })
    }
}

/// The target's scale subresource, found through discovery as upstream's REST mapper does.
async fn get_scale(
    client: &Client,
    ns: &str,
    target: &CrossVersionObjectReference,
) -> Result<(Api<DynamicObject>, Scale), String> {
    let api_version = target.api_version.as_deref().unwrap_or("");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, &target.kind);
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| format!("unable to determine resource for scale target reference: no matches for kind {:?} in group {group:?}: {e}", target.kind))?;
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource);
    let scale = api.get_scale(&target.name).await.map_err(|e| match e {
        kube::Error::Api(s) => s.message,
        e => e.to_string(),
    })?;
    Ok((api, scale))
}

/// Writes the new count to the scale read this sync (a conflict means the target moved, and
/// the next sync looks again).
async fn update_scale(
    api: &Api<DynamicObject>,
    scale: &Scale,
    replicas: i32,
) -> Result<Scale, kube::Error> {
    let mut new = scale.clone();
    new.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
    let name = scale.metadata.name.clone().unwrap_or_default();
    api.replace_scale(&name, &PostParams::default(), &new).await
}
