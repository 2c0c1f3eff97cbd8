//! Writes one core/v1 Event as the [`EventCorrelator`] decides: create it, bump the count of
//! the Event it repeats, or drop it. The controllers, the scheduler and the node agents all
//! write their Events through here, so a repeat is counted the same way whoever reports it.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tracing::{debug, warn};

use crate::event_correlator::{Correlated, EventCorrelator};

/// Records `event`, which happened at `now`, in `api` (the Events of the event's namespace).
///
/// Failures are logged, not returned: as upstream's recorder, an event that cannot be written
/// never fails the work that reported it.
pub async fn write_event(
    api: &Api<Event>,
    correlator: &EventCorrelator,
    event: Event,
    now: DateTime<Utc>,
) {
    match correlator.correlate(event, now) {
        Correlated::Skip => debug!("event dropped by the spam filter"),
        Correlated::Create(event) => create(api, correlator, &event).await,
        Correlated::Update {
            name,
            patch,
            fallback,
        } => {
            if let Err(e) = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                // The Event it repeats is gone (expired or deleted): start a new one.
                debug!(error = %e, event = %name, "could not update event; creating it anew");
                correlator.remember(&fallback);
                create(api, correlator, &fallback).await;
            }
        }
    }
}

async fn create(api: &Api<Event>, correlator: &EventCorrelator, event: &Event) {
    if let Err(e) = api.create(&PostParams::default(), event).await {
        warn!(error = %e, reason = ?event.reason, "could not record event");
        // So that the next repeat creates it, rather than patching an Event that never was.
        correlator.forget(event);
    }
}
