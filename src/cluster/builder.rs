//! [`ClusterBuilder`]: the settings of a [`Cluster`] and `start`, which wires the store, the
//! API server, the control plane, the network and the node agents together.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kybernetes_apiserver::serving::{HttpsServer, ServingConfig};
use kybernetes_apiserver::{ApiServer, ApiServerConfig};
use kybernetes_core::Clock;
use kybernetes_ingress::{IngressConfig, IngressController, NetworkConnector};
use kybernetes_net::{DnsServer, LocalNetwork, Network};
use kybernetes_node::{NodeAgentConfig, ServiceLister};
use kybernetes_runtime::{FakeRuntime, Runtime};
use kybernetes_sched::{
    ConfigError, Framework, KubeSchedulerConfiguration, Profile, Scheduler,
    kube_scheduler_config::FieldError,
};
use kybernetes_store::{MemoryStore, Store};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use kybernetes_controllers::persistent_volume::{
    LOCAL_PATH_PROVISIONER, LocalPathProvisioner, ensure_local_path_class,
};

use super::Cluster;
use crate::control_plane::{self, ControlPlaneConfig};
use crate::{DynStore, Error, Result};

/// Builds a [`Cluster`]. Every setting has a default: `Cluster::builder().start()` gives a
/// memory store and the default API server settings.
///
/// ```no_run
/// # async fn demo() -> kybernetes::Result<()> {
/// use kybernetes::{Cluster, store::MemoryStore};
/// let cluster = Cluster::builder().store(MemoryStore::default()).start().await?;
/// # cluster.shutdown().await }
/// ```
#[must_use]
pub struct ClusterBuilder {
    store: Option<DynStore>,
    clock: Option<Clock>,
    api: ApiServerConfig,
    compaction_interval: Option<Duration>,
    nodes: usize,
    cluster_cidr: Option<String>,
    node_cidr_mask_size: Option<u8>,
    node_template: Option<NodeAgentConfig>,
    runtime: Option<Arc<dyn Runtime>>,
    /// Whether the runtime's pods share the host's network (`ProcessRuntime` in host mode
    /// on the default network), which turns the userspace proxy on by default.
    runtime_shares_host_network: bool,
    network: Option<Arc<dyn Network>>,
    userspace_proxy: Option<bool>,
    scheduler: Option<Arc<dyn Scheduler>>,
    scheduler_config: Option<KubeSchedulerConfiguration>,
    control_plane: Option<ControlPlaneConfig>,
    serving: Option<ServingConfig>,
    data_dir: Option<std::path::PathBuf>,
    dns: Option<SocketAddr>,
    ingress: Option<IngressConfig>,
    /// Whether the Ingress controller dials endpoints through the network
    /// ([`ClusterBuilder::ingress`]) rather than with the config's own connector.
    ingress_through_network: bool,
    load_balancer_pool: Option<String>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            store: None,
            clock: None,
            api: ApiServerConfig::default(),
            compaction_interval: Some(Duration::from_secs(300)),
            nodes: 1,
            cluster_cidr: None,
            node_cidr_mask_size: None,
            node_template: None,
            runtime: None,
            runtime_shares_host_network: false,
            network: None,
            userspace_proxy: None,
            scheduler: None,
            scheduler_config: None,
            control_plane: Some(ControlPlaneConfig::default()),
            serving: None,
            data_dir: None,
            dns: None,
            ingress: None,
            ingress_through_network: false,
            load_balancer_pool: None,
        }
    }
}

impl ClusterBuilder {
    /// The store backend (default: [`MemoryStore`]).
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// A store that is already shared.
    pub fn shared_store(mut self, store: DynStore) -> Self {
        self.store = Some(store);
        self
    }

    /// Keeps the cluster's state in `<dir>/kybernetes.db`, a durable [`SqliteStore`]: the
    /// default store when a data directory is given. The directory is created if missing.
    ///
    /// ```no_run
    /// # async fn demo() -> kybernetes::Result<()> {
    /// let cluster = kybernetes::Cluster::builder().data_dir("/var/lib/myapp/cluster")?.start().await?;
    /// # cluster.shutdown().await }
    /// ```
    ///
    /// [`SqliteStore`]: kybernetes_store::SqliteStore
    #[cfg(feature = "sqlite")]
    pub fn data_dir(mut self, dir: impl AsRef<std::path::Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| {
            kybernetes_store::Error::backend(
                format!("creating the data directory {}", dir.display()),
                e,
            )
        })?;
        let store = kybernetes_store::SqliteStore::open(dir.join("kybernetes.db"))?;
        self.store = Some(Arc::new(store));
        self.data_dir = Some(dir.to_path_buf());
        Ok(self)
    }

    /// Also serves the API over HTTPS on `addr` (port 0 picks a free port, see
    /// [`Cluster::serving_address`]), with client-certificate authentication and a
    /// [`Cluster::kubeconfig`] for the admin. With a [`data_dir`](Self::data_dir), the
    /// certificates are kept in `<dir>/pki` and reused on restart.
    ///
    /// ```no_run
    /// # async fn demo() -> kybernetes::Result<()> {
    /// let cluster = kybernetes::Cluster::builder().serve("127.0.0.1:6443".parse().expect("address")).start().await?;
    /// if let Some(kubeconfig) = cluster.kubeconfig() {
    ///     kubeconfig.write("/tmp/kubeconfig")?;
    /// }
    /// # cluster.shutdown().await }
    /// ```
    pub fn serve(self, addr: std::net::SocketAddr) -> Self {
        self.serving(ServingConfig::new(addr))
    }

    /// Serves over HTTPS with explicit settings (bearer tokens, anonymous access, where the
    /// certificates live, more certificate names).
    pub fn serving(mut self, config: ServingConfig) -> Self {
        self.serving = Some(config);
        self
    }

    /// The cluster clock (default: the system time, advancing with tokio time).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// API server tunables.
    pub fn api_server_config(mut self, config: ApiServerConfig) -> Self {
        self.api = config;
        self
    }

    /// How often history older than one interval is compacted (upstream: 5 minutes);
    /// `None` disables compaction.
    pub fn compaction_interval(mut self, every: Option<Duration>) -> Self {
        self.compaction_interval = every;
        self
    }

    /// How many node agents to start (default 1), named `node-1`, `node-2`, ...
    ///
    /// Each node gets a pod CIDR from the [`cluster_cidr`](Self::cluster_cidr): 256 of them
    /// with the defaults. As upstream, the nodes beyond that still register, without a pod
    /// CIDR, with the `NetworkUnavailable` condition, the `node.kubernetes.io/network-unavailable`
    /// taint and a `CIDRNotAvailable` event, so no pods are scheduled there; `start` logs a
    /// warning naming the CIDR.
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }

    /// The pod network nodes get their pod CIDRs from (upstream's `--cluster-cidr`; default
    /// `10.244.0.0/16`). Overrides the `pod_cidr` of [`api_server_config`](Self::api_server_config).
    ///
    /// ```no_run
    /// # async fn demo() -> kybernetes::Result<()> {
    /// // 4,096 nodes, each with a /24 of 10.0.0.0/12.
    /// let cluster = kybernetes::Cluster::builder().cluster_cidr("10.0.0.0/12").nodes(1000).start().await?;
    /// # cluster.shutdown().await }
    /// ```
    pub fn cluster_cidr(mut self, cidr: impl Into<String>) -> Self {
        self.cluster_cidr = Some(cidr.into());
        self
    }

    /// The prefix length of each node's pod CIDR (upstream's `--node-cidr-mask-size`; default
    /// 24, 254 pod addresses per node). A longer mask fits more nodes in the cluster CIDR:
    /// `10.244.0.0/16` holds 1,024 nodes at `/26`, each with 62 pod addresses.
    pub fn node_cidr_mask_size(mut self, bits: u8) -> Self {
        self.node_cidr_mask_size = Some(bits);
        self
    }

    /// The settings every node starts from (capacity, labels, back-off, lease timing); the
    /// name is replaced per node.
    pub fn node_template(mut self, template: NodeAgentConfig) -> Self {
        self.node_template = Some(template);
        self
    }

    /// The container runtime the node agents drive (default: [`FakeRuntime`]); for real
    /// local processes, `.runtime(ProcessRuntime::host())`
    /// ([`ProcessRuntime`](kybernetes_runtime::ProcessRuntime)). [`Cluster::shutdown`] stops
    /// everything it started.
    pub fn runtime(mut self, runtime: impl Runtime) -> Self {
        // ProcessRuntime's pods share the host network unless a network gives them a
        // namespace, which the default LocalNetwork does not.
        self.runtime_shares_host_network = (&runtime as &dyn std::any::Any)
            .downcast_ref::<kybernetes_runtime::ProcessRuntime>()
            .is_some();
        self.runtime = Some(Arc::new(runtime));
        self
    }

    /// Serves ClusterIP Services through the default [`LocalNetwork`]'s userspace proxy, on
    /// loopback addresses (`127.96.0.0/12`), so that pods sharing the host's network reach
    /// them by DNS name, Service environment variables or proxy address (see
    /// [`LocalNetworkBuilder::userspace_proxy`](kybernetes_net::LocalNetworkBuilder::userspace_proxy)).
    /// Default: on with a [`ProcessRuntime`](kybernetes_runtime::ProcessRuntime) (host
    /// mode), off otherwise. Ignored with [`network`](Self::network), which is configured
    /// on its own.
    ///
    /// ```no_run
    /// # async fn demo() -> kybernetes::Result<()> {
    /// use kybernetes::runtime::ProcessRuntime;
    /// let cluster = kybernetes::Cluster::builder()
    ///     .runtime(ProcessRuntime::host())
    ///     .userspace_proxy(true) // the default with ProcessRuntime
    ///     .start()
    ///     .await?;
    /// // A Service `web` (ClusterIP 10.96.0.57, port 8080) is served on 127.96.0.57:8080;
    /// // pods see WEB_SERVICE_HOST=127.96.0.57 and WEB_SERVICE_PORT=8080.
    /// # cluster.shutdown().await }
    /// ```
    pub fn userspace_proxy(mut self, on: bool) -> Self {
        self.userspace_proxy = Some(on);
        self
    }

    /// Serves cluster DNS (`<svc>.<ns>.svc.cluster.local`, headless Services, pod names) on
    /// UDP and TCP at `addr`, answering from the network's catalog; port 0 picks a free port,
    /// which [`Cluster::dns_addr`] tells. Off unless asked for.
    ///
    /// ```no_run
    /// # async fn demo() -> kybernetes::Result<()> {
    /// let cluster = kybernetes::Cluster::builder()
    ///     .dns("127.0.0.1:0".parse().expect("an address"))
    ///     .start()
    ///     .await?;
    /// let dns = cluster.dns_addr().expect("DNS was asked for");
    /// // dig @127.0.0.1 -p <dns.port()> kubernetes.default.svc.cluster.local
    /// # let _ = dns; Ok(()) }
    /// ```
    pub fn dns(mut self, addr: SocketAddr) -> Self {
        self.dns = Some(addr);
        self
    }

    /// Runs the built-in Ingress controller ([`kybernetes_ingress`]) with plain HTTP on
    /// `http` and HTTPS on `https` (port 0 picks a free port, which
    /// [`Cluster::ingress_http_addr`] and [`Cluster::ingress_https_addr`] tell), and creates
    /// its IngressClass `kybernetes`, marked default, so Ingresses that name no class are
    /// served too. Off unless asked for. The proxy dials endpoints through the cluster's
    /// network ([`NetworkConnector`](kybernetes_ingress::NetworkConnector)), so with
    /// [`LinuxNetwork`](kybernetes_net::LinuxNetwork) it reaches pods inside their node
    /// namespaces while its listeners stay in the process's own namespace.
    ///
    /// ```no_run
    /// # async fn demo() -> kybernetes::Result<()> {
    /// let cluster = kybernetes::Cluster::builder()
    ///     .ingress("127.0.0.1:0".parse().expect("an address"), "127.0.0.1:0".parse().expect("an address"))
    ///     .start()
    ///     .await?;
    /// let http = cluster.ingress_http_addr().expect("ingress was asked for");
    /// // curl -H 'Host: hello.example.com' http://<http>/
    /// # let _ = http; Ok(()) }
    /// ```
    pub fn ingress(self, http: SocketAddr, https: SocketAddr) -> Self {
        let mut builder = self.ingress_config(IngressConfig::new(http, Some(https)));
        builder.ingress_through_network = true;
        builder
    }

    /// Runs the built-in Ingress controller as `config` says (a custom
    /// [`UpstreamConnector`](kybernetes_ingress::UpstreamConnector), status address, or no
    /// HTTPS), with its default IngressClass as [`ClusterBuilder::ingress`].
    pub fn ingress_config(mut self, config: IngressConfig) -> Self {
        self.ingress = Some(config);
        self.ingress_through_network = false;
        self
    }

    /// Gives Services of type `LoadBalancer` addresses from `cidr` (an IPv4 CIDR, checked by
    /// [`start`](Self::start)), written to `status.loadBalancer.ingress`, as k3s's servicelb
    /// does; without a pool they stay pending. The network serves them like ClusterIPs
    /// ([`LinuxNetwork`](kybernetes_net::LinuxNetwork): in every node namespace), so they are
    /// reachable wherever the network routes them, not from outside the machine.
    ///
    /// ```no_run
    /// # async fn demo() -> kybernetes::Result<()> {
    /// let cluster = kybernetes::Cluster::builder().load_balancer_pool("172.30.0.0/24").start().await?;
    /// # cluster.shutdown().await }
    /// ```
    pub fn load_balancer_pool(mut self, cidr: impl Into<String>) -> Self {
        self.load_balancer_pool = Some(cidr.into());
        self
    }

    /// The pod network (default: [`LocalNetwork`]).
    pub fn network(mut self, network: impl Network) -> Self {
        self.network = Some(Arc::new(network));
        self
    }

    /// The scheduler (default: the framework with upstream's default plugins), serving the
    /// pods of [`SchedulerConfig::scheduler_name`](kybernetes_sched::SchedulerConfig::scheduler_name)
    /// (`default-scheduler`).
    pub fn scheduler(mut self, scheduler: impl Scheduler + 'static) -> Self {
        self.scheduler = Some(Arc::new(scheduler));
        self
    }

    /// Schedules with upstream's `KubeSchedulerConfiguration`: one profile per
    /// `schedulerName`, each with its own plugins, weights and `percentageOfNodesToScore`, over
    /// one queue; its backoffs override the control plane's. [`start`](Self::start) fails
    /// with [`Error::SchedulerConfig`] if it is invalid or if [`scheduler`](Self::scheduler) is
    /// set too.
    ///
    /// ```no_run
    /// # async fn demo() -> kybernetes::Result<()> {
    /// use kybernetes::sched::{KubeSchedulerConfiguration, KubeSchedulerProfile};
    /// let config = KubeSchedulerConfiguration::with_profiles([
    ///     KubeSchedulerProfile::named("default-scheduler"),
    ///     KubeSchedulerProfile::named("batch-scheduler"),
    /// ]);
    /// let cluster = kybernetes::Cluster::builder().scheduler_config(config).start().await?;
    /// # cluster.shutdown().await }
    /// ```
    pub fn scheduler_config(mut self, config: KubeSchedulerConfiguration) -> Self {
        self.scheduler_config = Some(config);
        self
    }

    /// Settings of the scheduler and controllers (grace periods, tolerations, leader election).
    pub fn control_plane(mut self, config: ControlPlaneConfig) -> Self {
        self.control_plane = Some(config);
        self
    }

    /// Runs only the API server and the node agents: no scheduler and no controllers (for
    /// tests that drive those by hand, or a second API server in front of a shared store).
    pub fn without_control_plane(mut self) -> Self {
        self.control_plane = None;
        self
    }

    /// Starts the cluster. Must be called inside a tokio runtime.
    pub async fn start(mut self) -> Result<Cluster> {
        let profiles = self.scheduler_profiles()?;
        let store: DynStore = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::default()));
        let clock = self.clock.unwrap_or_default();
        let mut api_config = self.api;
        if let Some(cidr) = self.cluster_cidr {
            api_config.cluster.pod_cidr = cidr;
        }
        if let Some(bits) = self.node_cidr_mask_size {
            api_config.cluster.node_cidr_mask_size = bits;
        }
        let network: Arc<dyn Network> = match self.network {
            Some(n) => {
                if self.userspace_proxy.is_some() {
                    warn!("userspace_proxy applies to the default LocalNetwork only; ignored");
                }
                n
            }
            None => {
                let local = LocalNetwork::builder()
                    .config(api_config.cluster.clone())
                    .userspace_proxy(
                        self.userspace_proxy
                            .unwrap_or(self.runtime_shares_host_network),
                    )
                    .build()
                    .map_err(Error::Network)?;
                warn_beyond_cidr_capacity(&local, self.nodes);
                Arc::new(local)
            }
        };
        api_config.bookmark_interval = api_config.bookmark_interval.max(Duration::from_millis(10));
        // The service account signing key lives beside the cluster CA, so that tokens stay
        // valid across restarts of a cluster with a data dir.
        let pki_dir = self
            .serving
            .as_ref()
            .and_then(|s| s.pki_dir.clone())
            .or_else(|| self.data_dir.as_ref().map(|d| d.join("pki")));
        if api_config.service_account_key.is_none()
            && let Some(dir) = pki_dir
        {
            let key = kybernetes_apiserver::serviceaccount::SigningKey::load_or_generate(
                &dir.join("sa.key"),
            )
            .map_err(|e| {
                Error::Api(kybernetes_core::ApiError::internal(format!(
                    "loading the service account key: {e}"
                )))
            })?;
            api_config.service_account_key = Some(Arc::new(key));
        }
        let cluster_domain = api_config.cluster.cluster_domain.clone();
        let api = ApiServer::with_config(store.clone(), clock.clone(), api_config.clone()).await?;
        // Ordinary requests go straight to the router; exec, attach and port-forward over an
        // in-memory connection, since they need a real HTTP upgrade.
        let client = kube::Client::new(api.loopback_service(), "default");
        let runtime: Arc<dyn Runtime> = self
            .runtime
            .unwrap_or_else(|| Arc::new(FakeRuntime::new(clock.clone())));
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        if let Some(every) = self.compaction_interval {
            tasks.push(tokio::spawn(compactor(
                api.clone(),
                every,
                shutdown.child_token(),
            )));
        }
        tasks.push(kybernetes_net::spawn_service_sync(
            client.clone(),
            network.clone(),
            shutdown.child_token(),
        ));
        let dns = match self.dns {
            Some(addr) => Some(
                DnsServer::bind(network.clone(), &cluster_domain, addr)
                    .await
                    .map_err(|source| Error::Dns { addr, source })?,
            ),
            None => None,
        };
        let mut volume_dir = None;
        if let Some(mut cp) = self.control_plane {
            if let Some(pool) = &self.load_balancer_pool {
                let cidr = pool.parse().map_err(|e| {
                    Error::Network(kybernetes_net::Error::Config(format!(
                        "load balancer pool {pool:?}: {e}"
                    )))
                })?;
                cp.load_balancer.pool = Some(cidr);
            }
            volume_dir = local_path_provisioner(&mut cp, self.data_dir.as_deref())?;
            ensure_local_path_class(&client).await?;
            tasks.push(control_plane::spawn(
                client.clone(),
                clock.clone(),
                profiles,
                cp,
                shutdown.child_token(),
            ));
        }
        let ingress = match self.ingress {
            Some(mut config) => {
                if self.ingress_through_network {
                    config = config.with_connector(NetworkConnector(network.clone()));
                }
                kybernetes_ingress::ensure_default_class(&client, DEFAULT_INGRESS_CLASS).await?;
                Some(IngressController::start(client.clone(), clock.clone(), config).await?)
            }
            None => None,
        };
        let mut template = self
            .node_template
            .unwrap_or_else(|| NodeAgentConfig::new("template"));
        if template.cluster_dns.is_empty()
            && let Some(ip) = api_config.cluster.cluster_dns_ip()
        {
            template.cluster_dns = vec![ip];
        }
        // The Service behind the address the pods' resolv.conf names, as the DNS addon of
        // every upstream cluster makes it.
        if let Some(ip) = api_config.cluster.cluster_dns_ip()
            && template.cluster_dns.contains(&ip)
        {
            match kybernetes_net::ensure_kube_dns_service(&client, ip).await {
                Err(kube::Error::Api(s)) if s.code == 422 => {
                    warn!(%ip, reason = %s.message, "no kube-system/kube-dns Service")
                }
                other => other?,
            }
        }
        let https = match self.serving {
            Some(mut config) => {
                if config.pki_dir.is_none() {
                    config.pki_dir = self.data_dir.as_ref().map(|d| d.join("pki"));
                }
                Some(HttpsServer::start(&api, config).await?)
            }
            None => None,
        };
        let services = ServiceLister::new(client.clone());
        let cluster = Cluster {
            api,
            https,
            client,
            clock,
            runtime,
            network,
            dns,
            ingress,
            services,
            template,
            shutdown,
            tasks,
            nodes: Mutex::new(BTreeMap::new()),
            _volume_dir: volume_dir,
        };
        for i in 1..=self.nodes {
            cluster.add_node(&format!("node-{i}"))?;
        }
        info!(nodes = self.nodes, "cluster started");
        Ok(cluster)
    }
}

impl ClusterBuilder {
    /// The scheduling profiles: the configuration's, or one of the custom or default
    /// scheduler. Applies the configuration's backoffs to the control plane's settings.
    fn scheduler_profiles(&mut self) -> Result<Vec<Profile>> {
        let Some(config) = self.scheduler_config.take() else {
            let scheduler = self
                .scheduler
                .take()
                .unwrap_or_else(|| Arc::new(Framework::default_plugins()));
            let name = self
                .control_plane
                .as_ref()
                .map(|cp| cp.scheduler.scheduler_name.clone())
                .unwrap_or_else(|| {
                    kybernetes_sched::kube_scheduler_config::DEFAULT_SCHEDULER_NAME.to_string()
                });
            return Ok(vec![Profile::shared(name, scheduler)]);
        };
        if self.scheduler.is_some() {
            return Err(ConfigError::Invalid(vec![FieldError {
                field: "profiles".to_string(),
                detail: "Forbidden: ClusterBuilder::scheduler and ::scheduler_config are both \
                         set; give the custom scheduler a profile of its own instead"
                    .to_string(),
            }])
            .into());
        }
        let profiles = config.build()?;
        if let Some(cp) = &mut self.control_plane {
            config.apply_to(&mut cp.scheduler);
        }
        Ok(profiles)
    }
}

/// Says, once, that `nodes` is more than the pod CIDR holds, and how to make room.
fn warn_beyond_cidr_capacity(network: &LocalNetwork, nodes: usize) {
    let capacity = network.node_cidr_capacity();
    if u64::try_from(nodes).is_ok_and(|n| n > capacity) {
        let cidr = network.cluster_cidr();
        warn!(
            nodes,
            %cidr,
            capacity,
            "cluster CIDR {cidr} holds pod CIDRs for {capacity} nodes: the other {} register \
             without a pod CIDR, with NetworkUnavailable, and run no pods; widen it with \
             ClusterBuilder::cluster_cidr (e.g. \"10.0.0.0/12\") or lengthen \
             ClusterBuilder::node_cidr_mask_size (--cluster-cidr / --node-cidr-mask-size)",
            u64::try_from(nodes).unwrap_or(u64::MAX) - capacity
        );
    }
}

/// Adds the built-in local-path provisioner unless one is configured: its volumes live under
/// `<data_dir>/storage`, or in a temporary directory removed with the cluster.
fn local_path_provisioner(
    cp: &mut ControlPlaneConfig,
    data_dir: Option<&std::path::Path>,
) -> Result<Option<tempfile::TempDir>> {
    let configured = cp
        .persistent_volume
        .provisioners
        .iter()
        .any(|p| p.name() == LOCAL_PATH_PROVISIONER);
    if configured {
        return Ok(None);
    }
    let (root, temp) = match data_dir {
        Some(dir) => (dir.join("storage"), None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("kybernetes-local-path-")
                .tempdir()
                .map_err(Error::VolumeDirectory)?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    cp.persistent_volume
        .provisioners
        .push(Arc::new(LocalPathProvisioner::new(root)));
    Ok(temp)
}

/// Compacts, every `every`, the history older than the revision seen one interval earlier,
/// as upstream's API server does.
async fn compactor(api: ApiServer, every: Duration, shutdown: CancellationToken) {
    let mut last: Option<i64> = None;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Some(rev) = last
            && let Err(e) = api.compact(rev).await
        {
            warn!(error = %e, "compaction failed");
        }
        last = match api.store().current_revision().await {
            Ok(rev) => Some(rev),
            Err(e) => {
                // Nothing is compacted at the next tick; the one after tries again.
                warn!(error = %e, "reading the store revision for compaction failed");
                None
            }
        };
    }
}

/// The IngressClass the cluster creates for its Ingress controller, marked default.
const DEFAULT_INGRESS_CLASS: &str = "kybernetes";
