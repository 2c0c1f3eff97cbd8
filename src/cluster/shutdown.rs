//! Stopping a [`Cluster`]: everything it started ([`Cluster::shutdown`]), or the control
//! plane and node agents only, leaving the pods' containers running for a new cluster on the
//! same store and runtime backend to adopt ([`Cluster::shutdown_keeping_workloads`]), as a
//! restarted kubelet and API server find their node's containers still running.

use tracing::{info, warn};

use super::Cluster;
use crate::Result;

/// What happens to the workloads when a cluster stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workloads {
    /// Stopped with the runtime ([`Runtime::shutdown`](kybernetes_runtime::Runtime::shutdown)).
    Stop,
    /// Left running ([`Runtime::detach`](kybernetes_runtime::Runtime::detach)).
    Keep,
}

impl Cluster {
    /// Stops every component, ends every watch, stops the runtime's containers
    /// ([`Runtime::shutdown`](kybernetes_runtime::Runtime::shutdown): a `ProcessRuntime` kills
    /// its processes) and closes the store.
    pub async fn shutdown(self) -> Result<()> {
        self.stop(Workloads::Stop).await
    }

    /// Stops the control plane, the API server and the node agents but leaves every pod
    /// running, as the processes of a node that restarts do: the runtime lets go of its
    /// containers without stopping them
    /// ([`Runtime::detach`](kybernetes_runtime::Runtime::detach)), the pod network is left as
    /// it is, and the store is closed. A new cluster on the same durable store (the same
    /// [`data_dir`](super::ClusterBuilder::data_dir)) with a runtime on the same backend (a
    /// `ContainerdRuntime` on the same socket and namespace, which recovers its sandboxes and
    /// containers on connect) adopts the pods: they stay `Running`, with the same container
    /// ids and restart counts.
    ///
    /// ```no_run
    /// # async fn demo(dir: &std::path::Path) -> kybernetes::Result<()> {
    /// let cluster = kybernetes::Cluster::builder().data_dir(dir)?.start().await?;
    /// // … pods run …
    /// cluster.shutdown_keeping_workloads().await?;
    /// let again = kybernetes::Cluster::builder().data_dir(dir)?.start().await?;
    /// # again.shutdown().await }
    /// ```
    pub async fn shutdown_keeping_workloads(self) -> Result<()> {
        self.stop(Workloads::Keep).await
    }

    async fn stop(self, workloads: Workloads) -> Result<()> {
        // New connections are refused at once; open ones finish below, once the API server
        // has ended their watches.
        if let Some(https) = &self.https {
            https.begin_shutdown();
        }
        if let Some(ingress) = self.ingress {
            ingress.shutdown().await;
        }
        self.shutdown.cancel();
        let nodes = std::mem::take(&mut *self.nodes.lock().unwrap_or_else(|p| p.into_inner()));
        for (name, (_, task)) in nodes {
            if let Err(e) = task.await {
                warn!(node = %name, error = %e, "a node agent ended with a panic");
            }
        }
        // After the agents: they read it until they stop.
        self.services.stop().await;
        for t in self.tasks {
            if let Err(e) = t.await {
                warn!(error = %e, "a cluster component ended with a panic");
            }
        }
        match workloads {
            // The agents left their containers running, as a crashed kubelet would; the
            // cluster owns the runtime, so nothing it started outlives it.
            Workloads::Stop => {
                if let Err(e) = self.runtime.shutdown().await {
                    warn!(error = %e, "stopping the container runtime failed");
                }
            }
            // They stay running for the next cluster; the runtime only stops watching them.
            Workloads::Keep => {
                if let Err(e) = self.runtime.detach().await {
                    warn!(error = %e, "detaching from the container runtime failed");
                }
            }
        }
        if let Some(dns) = self.dns {
            dns.shutdown().await;
        }
        // After the runtime: no container is left in a namespace the network removes. Kept
        // pods keep their network too.
        if workloads == Workloads::Stop
            && let Err(e) = self.network.shutdown().await
        {
            warn!(error = %e, "removing the pod network failed");
        }
        self.api.shutdown();
        if let Some(https) = self.https {
            https.shutdown().await;
        }
        // Releases files and locks (a SQLite data dir can be reopened right away).
        self.api.store().close().await?;
        info!(?workloads, "cluster stopped");
        Ok(())
    }
}
