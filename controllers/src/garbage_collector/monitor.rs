//! Resource monitors (upstream's `monitors`): one metadata-only watch per deletable resource,
//! feeding the graph builder, and the discovery loop that starts a monitor for each resource
//! that appears (custom resources included).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::graph::{GraphEvent, Uid};
use super::resources::{ResourceEntry, ResourceTable, deletable_resources};

/// The name of a monitor: `group/version/plural`.
fn monitor_key(entry: &ResourceEntry) -> Arc<str> {
    let r = &entry.resource;
    Arc::from(format!("{}/{}/{}", r.group, r.version, r.plural))
}

/// Watches one resource's metadata and reports every change to the graph builder. A relist
/// (after a watch expired) ends with a [`GraphEvent::Resynced`], so objects deleted while no
/// watch ran are noticed too.
async fn monitor(
    client: Client,
    entry: ResourceEntry,
    events: mpsc::Sender<GraphEvent>,
    shutdown: CancellationToken,
) {
    let key = monitor_key(&entry);
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &entry.resource);
    let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    let mut seen: HashSet<Uid> = HashSet::new();
    debug!(resource = %key, "garbage collector monitor started");
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            _ = shutdown.cancelled() => return,
        };
        let Some(event) = event else { return };
        let upsert = |o: PartialObjectMeta<DynamicObject>| GraphEvent::Upsert {
            resource: key.clone(),
            api_version: entry.resource.api_version.clone(),
            kind: entry.resource.kind.clone(),
            meta: Box::new(o.metadata),
        };
        let graph_event = match event {
            Ok(watcher::Event::Init) => {
                seen.clear();
                continue;
            }
            Ok(watcher::Event::InitApply(o)) => {
                if let Some(uid) = o.uid() {
                    seen.insert(uid);
                }
                upsert(o)
            }
            Ok(watcher::Event::InitDone) => GraphEvent::Resynced {
                resource: key.clone(),
                seen: std::mem::take(&mut seen),
            },
            Ok(watcher::Event::Apply(o)) => upsert(o),
            Ok(watcher::Event::Delete(o)) => match o.meta().uid.clone() {
                Some(uid) => GraphEvent::Delete { uid },
                None => continue,
            },
            Err(e) => {
                debug!(resource = %key, error = %e, "garbage collector watch failed; retrying");
                continue;
            }
        };
        if events.send(graph_event).await.is_err() {
            return;
        }
    }
}

/// Reads discovery now and every `period`, records every deletable resource in `table`, and
/// starts a monitor for each one not watched yet. Returns once `shutdown` is cancelled and
/// every monitor has stopped.
pub(crate) async fn run_monitors(
    client: Client,
    table: Arc<RwLock<ResourceTable>>,
    events: mpsc::Sender<GraphEvent>,
    ignored: Vec<(String, String)>,
    period: Duration,
    shutdown: CancellationToken,
) {
    let mut watched: HashSet<Arc<str>> = HashSet::new();
    let mut monitors = JoinSet::new();
    let mut retry = Duration::from_millis(100);
    loop {
        let wait = match deletable_resources(&client, &ignored).await {
            Ok(entries) => {
                retry = Duration::from_millis(100);
                let mut t = table.write().unwrap_or_else(|p| p.into_inner());
                for entry in entries {
                    t.insert(entry.resource.clone(), entry.namespaced);
                    let key = monitor_key(&entry);
                    if watched.insert(key.clone()) {
                        info!(resource = %key, "garbage collector watching resource");
                        monitors.spawn(monitor(
                            client.clone(),
                            entry,
                            events.clone(),
                            shutdown.clone(),
                        ));
                    }
                }
                period
            }
            Err(e) => {
                warn!(error = %e, "garbage collector discovery failed; retrying");
                retry = (retry * 2).min(period);
                retry
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    while monitors.join_next().await.is_some() {}
}
