//! [`Cluster`]: a running cluster in this process. It hands out in-process `kube::Client`s, adds
//! and stops node agents, and shuts everything down (`shutdown.rs`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Resource};
use kybernetes_apiserver::ApiServer;
use kybernetes_apiserver::serving::{ClusterPki, HttpsServer, Kubeconfig};
use kybernetes_core::Clock;
use kybernetes_ingress::IngressController;
use kybernetes_net::{DnsServer, Network};
use kybernetes_node::{NodeAgent, NodeAgentConfig, ServiceLister};
use kybernetes_runtime::Runtime;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::kubelet_connection::InProcessKubelet;
use crate::{Error, Result};

mod builder;
mod shutdown;

pub use builder::ClusterBuilder;

/// A running in-process cluster.
pub struct Cluster {
    api: ApiServer,
    https: Option<HttpsServer>,
    client: kube::Client,
    clock: Clock,
    runtime: Arc<dyn Runtime>,
    network: Arc<dyn Network>,
    dns: Option<DnsServer>,
    ingress: Option<IngressController>,
    template: NodeAgentConfig,
    /// The Services every node agent reads its Service environment variables from: one
    /// watch for all agents.
    services: ServiceLister,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    nodes: Mutex<BTreeMap<String, (CancellationToken, JoinHandle<()>)>>,
    /// The local-path provisioner's temporary directory, removed with the cluster.
    _volume_dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").finish_non_exhaustive()
    }
}

impl Cluster {
    /// A builder with every default.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// A `kube::Client` talking to the in-process API server (no socket). Exec, attach and
    /// port-forward work too (`Api::<Pod>::exec`, `portforward`; kube's `ws` feature).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The API server (for serving it elsewhere, compaction, or registering resources).
    pub fn api_server(&self) -> &ApiServer {
        &self.api
    }

    /// The cluster clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The container runtime the node agents drive.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    /// The pod network.
    pub fn network(&self) -> &Arc<dyn Network> {
        &self.network
    }

    /// Where the Ingress controller serves plain HTTP, when [`ClusterBuilder::ingress`] asked
    /// for it.
    pub fn ingress_http_addr(&self) -> Option<SocketAddr> {
        self.ingress.as_ref().map(IngressController::http_addr)
    }

    /// Where the Ingress controller serves HTTPS, when asked for.
    pub fn ingress_https_addr(&self) -> Option<SocketAddr> {
        self.ingress
            .as_ref()
            .and_then(IngressController::https_addr)
    }

    /// Where cluster DNS answers, when [`ClusterBuilder::dns`] asked for it.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns.as_ref().map(DnsServer::local_addr)
    }

    /// Starts a node agent named `name` with the cluster's node template.
    pub fn add_node(&self, name: &str) -> Result<()> {
        let mut config = self.template.clone();
        config.name = name.to_string();
        self.add_node_with(config)
    }

    /// Starts a node agent with its own settings (capacity, labels, taints).
    ///
    /// ```no_run
    /// # async fn demo(cluster: kybernetes::Cluster) -> kybernetes::Result<()> {
    /// use kybernetes::node::{NodeAgentConfig, NodeCapacity};
    /// let big = NodeCapacity { cpu: "64".into(), memory: "256Gi".into(), ..Default::default() };
    /// cluster.add_node_with(NodeAgentConfig::new("big-1").capacity(big))?;
    /// # Ok(()) }
    /// ```
    pub fn add_node_with(&self, mut config: NodeAgentConfig) -> Result<()> {
        config.clock = self.clock.clone();
        let name = config.name.clone();
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if nodes.contains_key(&name) {
            return Err(Error::Api(kybernetes_core::ApiError::already_exists(
                "", "nodes", &name,
            )));
        }
        let token = self.shutdown.child_token();
        self.api.kubelets().register(
            &name,
            Arc::new(InProcessKubelet::new(
                &name,
                self.runtime.clone(),
                self.client.clone(),
                self.clock.clone(),
            )),
        );
        let agent = NodeAgent::new(
            config,
            self.client.clone(),
            self.runtime.clone(),
            self.network.clone(),
        )
        .service_lister(self.services.clone());
        nodes.insert(name, (token.clone(), agent.spawn(token)));
        Ok(())
    }

    /// Stops a node agent as if its machine died: heartbeats stop and its containers are left
    /// as they are. The node lifecycle controller then marks the node unreachable and evicts
    /// its pods after their toleration.
    pub async fn stop_node(&self, name: &str) -> Result<()> {
        let entry = self
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        let Some((token, task)) = entry else {
            return Err(Error::Api(kybernetes_core::ApiError::not_found(
                "", "nodes", name,
            )));
        };
        self.api.kubelets().unregister(name);
        token.cancel();
        let _ = task.await;
        Ok(())
    }

    /// Names of the running node agents.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Waits until `cond` holds for the object `name`, or fails after `timeout`.
    ///
    /// ```no_run
    /// # async fn demo(cluster: kybernetes::Cluster) -> kybernetes::Result<()> {
    /// use k8s_openapi::api::core::v1::Namespace;
    /// let nss: kube::Api<Namespace> = kube::Api::all(cluster.client());
    /// let exists = |ns: Option<&Namespace>| ns.is_some();
    /// cluster.wait_until(&nss, "default", exists, std::time::Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn wait_until<K>(
        &self,
        api: &Api<K>,
        name: &str,
        cond: impl Condition<K>,
        timeout: Duration,
    ) -> Result<Option<K>>
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    {
        match tokio::time::timeout(timeout, await_condition(api.clone(), name, cond)).await {
            Ok(Ok(obj)) => Ok(obj),
            Ok(Err(e)) => Err(Error::Timeout(timeout, format!("{name}: {e}"))),
            Err(_) => Err(Error::Timeout(timeout, name.to_string())),
        }
    }

    /// The address the HTTPS server listens on, if the cluster serves
    /// ([`ClusterBuilder::serve`]).
    pub fn serving_address(&self) -> Option<std::net::SocketAddr> {
        self.https.as_ref().map(HttpsServer::local_addr)
    }

    /// A kubeconfig that reaches the HTTPS server as `kubernetes-admin` (group
    /// `system:masters`), with the CA and client certificate embedded; `None` if the cluster
    /// does not serve.
    pub fn kubeconfig(&self) -> Option<Kubeconfig> {
        self.https.as_ref().map(HttpsServer::kubeconfig)
    }

    /// The cluster's certificates (to issue client certificates for more users), if it serves.
    pub fn pki(&self) -> Option<&ClusterPki> {
        self.https.as_ref().map(HttpsServer::pki)
    }
}
