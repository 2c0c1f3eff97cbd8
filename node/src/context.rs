//! What every part of a running node agent shares.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use kybernetes_net::Network;
use kybernetes_runtime::Runtime;

use crate::config::NodeAgentConfig;
use crate::events::EventRecorder;
use crate::service_lister::ServiceLister;

/// The registered node's shared state.
pub(crate) struct AgentContext {
    pub(crate) config: NodeAgentConfig,
    pub(crate) client: kube::Client,
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) network: Arc<dyn Network>,
    pub(crate) recorder: EventRecorder,
    /// The Services for Service environment variables (maybe shared with other agents).
    pub(crate) services: ServiceLister,
    /// The node's address (`InternalIP`, every pod's `hostIP`).
    pub(crate) node_ip: IpAddr,
    /// The node's network namespace, which hostNetwork pods share (None: the host's).
    pub(crate) node_netns: Option<std::path::PathBuf>,
    /// The runtime's name, the scheme of `containerID`s (`fake://…`).
    pub(crate) runtime_name: String,
    /// Allocatable CPU and memory in thousandths (defaults for `resourceFieldRef` limits).
    pub(crate) allocatable_milli: (i128, i128),
    /// The agent's root directory (pod volumes live under `pods/<uid>/volumes`).
    pub(crate) root_dir: PathBuf,
}

impl AgentContext {
    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.config.clock.now()
    }

    /// The tokio instant at which the cluster clock reads `t` (now if `t` is past).
    pub(crate) fn instant_at(&self, t: DateTime<Utc>) -> tokio::time::Instant {
        let wait = (t - self.now()).to_std().unwrap_or_default();
        tokio::time::Instant::now() + wait
    }
}
