//! [`NodeAgent`]: registers the node, heartbeats its lease, keeps its status, and runs the
//! pods bound to it.

use std::sync::Arc;
use std::time::Duration;

use kybernetes_net::Network;
use kybernetes_runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info, info_span, warn};

use crate::config::NodeAgentConfig;
use crate::context::AgentContext;
use crate::events::{EventRecorder, EventType};
use crate::lease::run_lease;
use crate::node_status::{Registration, register, run_status_updates};
use crate::pod_workers::run_pod_workers;
use crate::service_lister::ServiceLister;
use kybernetes_core::quantity::parse_milli;

/// The node agent (upstream's kubelet) of one node.
///
/// ```no_run
/// # async fn demo(client: kube::Client) {
/// use std::sync::Arc;
/// use kybernetes_node::{NodeAgent, NodeAgentConfig};
/// use kybernetes_runtime::FakeRuntime;
/// use kybernetes_net::LocalNetwork;
///
/// let shutdown = tokio_util::sync::CancellationToken::new();
/// let agent = NodeAgent::new(
///     NodeAgentConfig::new("node-1"),
///     client,
///     Arc::new(FakeRuntime::default()),
///     Arc::new(LocalNetwork::default()),
/// );
/// let handle = agent.spawn(shutdown.clone());
/// // ... pods bound to node-1 now run ...
/// shutdown.cancel();
/// handle.await.unwrap();
/// # }
/// ```
pub struct NodeAgent {
    config: NodeAgentConfig,
    client: kube::Client,
    runtime: Arc<dyn Runtime>,
    network: Arc<dyn Network>,
    /// A lister shared with other agents; None: the agent watches Services itself.
    services: Option<ServiceLister>,
}

impl std::fmt::Debug for NodeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAgent")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

impl NodeAgent {
    /// A node agent for `config.name`, talking to the API through `client`, running
    /// containers on `runtime` and pod networking on `network`. Nothing happens until
    /// [`spawn`](Self::spawn) or [`run`](Self::run).
    pub fn new(
        config: NodeAgentConfig,
        client: kube::Client,
        runtime: Arc<dyn Runtime>,
        network: Arc<dyn Network>,
    ) -> Self {
        NodeAgent {
            config,
            client,
            runtime,
            network,
            services: None,
        }
    }

    /// Reads Services (for Service environment variables) from `lister`, which other agents
    /// of the process may share, instead of a watch of the agent's own. The caller stops it
    /// ([`ServiceLister::stop`]) after the agents.
    pub fn service_lister(mut self, lister: ServiceLister) -> Self {
        self.services = Some(lister);
        self
    }

    /// The node name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Runs the agent on a new task until `shutdown` is cancelled.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    /// Runs the agent until `shutdown` is cancelled. Cancelling stops the lease heartbeat,
    /// the status updates and every pod worker, and leaves containers running, as a kubelet
    /// that crashed would; a new agent for the same node adopts them.
    pub async fn run(self, shutdown: CancellationToken) {
        let span = info_span!("node_agent", node = %self.config.name);
        self.run_inner(shutdown).instrument(span).await
    }

    async fn register_with_retry(&self, shutdown: &CancellationToken) -> Option<Registration> {
        let mut delay = Duration::from_millis(100);
        loop {
            match register(&self.client, &self.config, &self.runtime, &self.network).await {
                Ok(r) => return Some(r),
                Err(e) => warn!(error = %e, "node registration failed; retrying"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    async fn run_inner(self, shutdown: CancellationToken) {
        let (root_dir, temp_root) = match self.config.root_dir.clone() {
            Some(dir) => (dir, None),
            None => match tempfile::Builder::new()
                .prefix(&format!("kybernetes-node-{}-", self.config.name))
                .tempdir()
            {
                Ok(t) => (t.path().to_path_buf(), Some(t)),
                Err(e) => {
                    error!(error = %e, "cannot create the node agent's root directory");
                    return;
                }
            },
        };
        if let Err(e) = std::fs::create_dir_all(root_dir.join("pods")) {
            error!(dir = %root_dir.display(), error = %e, "cannot create the node agent's root directory");
            return;
        }
        let Some(reg) = self.register_with_retry(&shutdown).await else {
            return;
        };
        let tracker = TaskTracker::new();
        let recorder = EventRecorder::spawn(
            self.client.clone(),
            self.config.clock.clone(),
            self.config.name.clone(),
            shutdown.clone(),
            &tracker,
        );
        let node_uid = reg.node.metadata.uid.clone().unwrap_or_default();
        recorder.node(
            &self.config.name,
            Some(node_uid.clone()),
            EventType::Normal,
            "Starting",
            "Starting kubelet.",
        );
        if reg.net.pod_cidr.is_none() {
            // Upstream's node IPAM controller records this when the cluster CIDR is used up.
            warn!("no pod CIDR left for the node: registered with NetworkUnavailable");
            recorder.node(
                &self.config.name,
                Some(node_uid.clone()),
                EventType::Warning,
                "CIDRNotAvailable",
                format!("Node {} status is now: CIDRNotAvailable", self.config.name),
            );
        }
        let allocatable_milli = (
            parse_milli(&self.config.capacity.cpu).unwrap_or(0),
            parse_milli(&self.config.capacity.memory).unwrap_or(0),
        );
        // An agent on its own owns its lister and stops it with itself.
        let (services, own_services) = match self.services {
            Some(shared) => (shared, None),
            None => {
                let own = ServiceLister::new(self.client.clone());
                (own.clone(), Some(own))
            }
        };
        let ctx = Arc::new(AgentContext {
            config: self.config,
            client: self.client,
            runtime: self.runtime,
            network: self.network,
            recorder,
            services,
            node_ip: reg.net.node_ip,
            node_netns: reg.net.netns.clone(),
            runtime_name: reg.runtime.runtime_name.clone(),
            allocatable_milli,
            root_dir: root_dir.clone(),
        });
        info!(pod_cidr = reg.net.pod_cidr.as_deref().unwrap_or("none"), node_ip = %reg.net.node_ip, "node agent running");
        tracker.spawn(run_lease(ctx.clone(), node_uid, shutdown.clone()));
        tracker.spawn(run_status_updates(
            ctx.clone(),
            reg.net.clone(),
            shutdown.clone(),
        ));
        run_pod_workers(ctx, shutdown.clone(), tracker.clone()).await;
        tracker.close();
        tracker.wait().await;
        if let Some(own) = own_services {
            own.stop().await;
        }
        if let Some(temp) = temp_root {
            // Memory-backed volumes are mounts: take them down before the directory goes.
            if let Err(e) = crate::volumes::remove_volume_dir(temp.path()) {
                warn!(error = %e, "removing the node agent's temporary root failed");
            }
        }
        info!("node agent stopped");
    }
}
