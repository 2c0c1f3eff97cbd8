//! [`ServiceLister`]: the Services the node agents read their Service environment variables
//! from (upstream's kubelet `serviceLister`), a watch-backed cache instead of an API list per
//! container start.
//!
//! One lister may serve every agent of a process ([`NodeAgent::service_lister`]): one watch of
//! all Services and one copy of them, however many agents run. It starts on first use and
//! stops with [`ServiceLister::stop`], or when its last clone is dropped.
//!
//! [`NodeAgent::service_lister`]: crate::NodeAgent::service_lister

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

/// How long a container start waits for the first list of Services before it fails (and is
/// retried) with upstream's "have not yet been read" error.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// A watch-backed cache of every Service, shared by the node agents it is handed to.
///
/// ```no_run
/// # async fn demo(client: kube::Client) {
/// use std::sync::Arc;
/// use kybernetes_node::{NodeAgent, NodeAgentConfig, ServiceLister};
/// use kybernetes_runtime::FakeRuntime;
/// use kybernetes_net::LocalNetwork;
///
/// let services = ServiceLister::new(client.clone());
/// let shutdown = tokio_util::sync::CancellationToken::new();
/// let runtime = Arc::new(FakeRuntime::default());
/// let network = Arc::new(LocalNetwork::default());
/// let agents: Vec<_> = (0..3)
///     .map(|i| {
///         NodeAgent::new(NodeAgentConfig::new(format!("node-{i}")), client.clone(),
///                        runtime.clone(), network.clone())
///             .service_lister(services.clone())
///             .spawn(shutdown.clone())
///     })
///     .collect();
/// // ... pods run ...
/// shutdown.cancel();
/// for agent in agents {
///     agent.await.unwrap();
/// }
/// services.stop().await;
/// # }
/// ```
#[derive(Clone)]
pub struct ServiceLister {
    inner: Arc<Inner>,
}

/// The running watch: its store, whether its first list is in, and its task.
struct Started {
    store: Store<Service>,
    /// Set once the first list is in the store. kube's `Store::wait_until_ready` is not used:
    /// it wakes only the last of several waiters (its oneshot keeps one waker), and the pod
    /// workers of many agents wait at once.
    listed: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

struct Inner {
    client: kube::Client,
    stop: CancellationToken,
    /// The store and the task filling it, once something asked for Services.
    started: Mutex<Option<Started>>,
}

impl std::fmt::Debug for ServiceLister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceLister").finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last clone is gone: nobody reads the store any more.
        self.stop.cancel();
    }
}

impl ServiceLister {
    /// A lister watching Services through `client`. Nothing happens until an agent first
    /// needs Services.
    pub fn new(client: kube::Client) -> Self {
        ServiceLister {
            inner: Arc::new(Inner {
                client,
                stop: CancellationToken::new(),
                started: Mutex::new(None),
            }),
        }
    }

    /// Ends the watch and waits for its task. Agents still running afterwards fail their
    /// container starts that need Service variables.
    pub async fn stop(&self) {
        self.inner.stop.cancel();
        let started = self
            .inner
            .started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(Started { task, .. }) = started
            && let Err(e) = task.await
        {
            warn!(error = %e, "the Service watch ended with a panic");
        }
    }

    /// The store once it has listed the Services at least once (upstream's kubelet waits for
    /// `serviceHasSynced`); None when the lister stopped or the first list did not come in
    /// time.
    pub(crate) async fn synced(&self) -> Option<Store<Service>> {
        let (store, mut listed) = self.start()?;
        tokio::select! {
            ready = tokio::time::timeout(SYNC_TIMEOUT, listed.wait_for(|listed| *listed)) => {
                matches!(ready, Ok(Ok(_))).then_some(store)
            }
            _ = self.inner.stop.cancelled() => None,
        }
    }

    /// The store, starting its watch on first use; None once stopped.
    fn start(&self) -> Option<(Store<Service>, watch::Receiver<bool>)> {
        if self.inner.stop.is_cancelled() {
            return None;
        }
        let mut started = self.inner.started.lock().unwrap_or_else(|p| p.into_inner());
        let started = started.get_or_insert_with(|| {
            let (store, writer) = reflector::store();
            let (listed_tx, listed) = watch::channel(false);
            let task = tokio::spawn(
                watch_services(
                    self.inner.client.clone(),
                    writer,
                    listed_tx,
                    self.inner.stop.clone(),
                )
                .instrument(info_span!("service_lister")),
            );
            Started {
                store,
                listed,
                task,
            }
        });
        Some((started.store.clone(), started.listed.clone()))
    }
}

/// Keeps `writer` up to date with every Service until `stop`; the watcher re-lists with
/// back-off after errors.
async fn watch_services(
    client: kube::Client,
    writer: Writer<Service>,
    listed: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let api: Api<Service> = Api::all(client);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .boxed();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            event = events.next() => match event {
                Some(Ok(watcher::Event::InitDone)) => {
                    listed.send_replace(true);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => warn!(error = %e, "watching Services failed; retrying"),
                None => return,
            },
        }
    }
}
