//! The control plane: the scheduler and the controllers, started together, optionally only
//! while this process holds the leader lease (upstream's `--leader-elect`).

use kybernetes_controllers::{
    EndpointSliceConfig, EndpointsConfig, GarbageCollectorConfig, InformerFactory,
    LoadBalancerConfig, NamespaceConfig, NodeLifecycleConfig, PersistentVolumeConfig,
};
use kybernetes_core::Clock;
use kybernetes_sched::{Profile, SchedulerConfig, SchedulerLoop};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::leader::{LeaderElectionConfig, LeaderElector};

/// Settings of the control-plane components. `Default` gives upstream's values.
#[derive(Clone, Debug, Default)]
pub struct ControlPlaneConfig {
    /// The scheduling loop (with a `KubeSchedulerConfiguration`, its backoffs win, and its
    /// profiles replace `scheduler_name`).
    pub scheduler: SchedulerConfig,
    /// Node lifecycle: lease grace period and the default NoExecute toleration.
    pub node_lifecycle: NodeLifecycleConfig,
    /// The garbage collector.
    pub garbage_collector: GarbageCollectorConfig,
    /// The Endpoints controller.
    pub endpoints: EndpointsConfig,
    /// The EndpointSlice controller.
    pub endpoint_slices: EndpointSliceConfig,
    /// The namespace controller.
    pub namespace: NamespaceConfig,
    /// The PersistentVolume controller and its provisioners. Unless one is named
    /// `kybernetes.io/local-path`, the cluster adds the built-in local-path provisioner
    /// (volumes under `<data dir>/storage`, or a temporary directory).
    pub persistent_volume: PersistentVolumeConfig,
    /// The load-balancer controller's address pool (none by default: Services of type
    /// `LoadBalancer` stay pending, as on a cluster without a cloud provider).
    pub load_balancer: LoadBalancerConfig,
    /// When set, the components run only while this process holds the lease.
    pub leader_election: Option<LeaderElectionConfig>,
}

/// Starts every control-plane component; they stop when `shutdown` is cancelled.
pub(crate) fn start_components(
    client: &kube::Client,
    clock: &Clock,
    profiles: &[Profile],
    config: &ControlPlaneConfig,
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut sched_config = config.scheduler.clone();
    sched_config.clock = clock.clone();
    let c = || client.clone();
    let k = || clock.clone();
    let t = || shutdown.child_token();
    // One watch and one cache of pods and of nodes for every controller (upstream's
    // SharedInformerFactory); the scheduler keeps its own, as kube-scheduler does.
    let informers = InformerFactory::new(client.clone(), shutdown.child_token());
    let i = &informers;
    let mut tasks = vec![
        SchedulerLoop::spawn_profiles(c(), profiles.to_vec(), sched_config, t()),
        kybernetes_controllers::spawn_replicaset(c(), k(), i, t()),
        kybernetes_controllers::spawn_replicationcontroller(c(), k(), i, t()),
        kybernetes_controllers::spawn_deployment(c(), k(), i, t()),
        kybernetes_controllers::spawn_job(c(), k(), i, t()),
        kybernetes_controllers::spawn_ttl_after_finished(c(), k(), t()),
        kybernetes_controllers::spawn_cronjob(c(), k(), t()),
        kybernetes_controllers::spawn_daemonset(c(), k(), i, t()),
        kybernetes_controllers::spawn_statefulset(c(), k(), i, t()),
        kybernetes_controllers::spawn_disruption(c(), k(), i, t()),
        kybernetes_controllers::spawn_persistent_volume(
            c(),
            k(),
            config.persistent_volume.clone(),
            t(),
        ),
        kybernetes_controllers::spawn_volume_protection(c(), i, t()),
        kybernetes_controllers::spawn_horizontal_pod_autoscaler(c(), k(), t()),
        kybernetes_controllers::spawn_garbage_collector(
            c(),
            k(),
            config.garbage_collector.clone(),
            t(),
        ),
        kybernetes_controllers::spawn_endpoints_controller(
            c(),
            k(),
            config.endpoints.clone(),
            i,
            t(),
        ),
        kybernetes_controllers::spawn_endpointslice_controller(
            c(),
            k(),
            config.endpoint_slices.clone(),
            i,
            t(),
        ),
        kybernetes_controllers::spawn_node_lifecycle_controller(
            c(),
            k(),
            config.node_lifecycle.clone(),
            i,
            t(),
        ),
        kybernetes_controllers::spawn_namespace_controller(c(), k(), config.namespace.clone(), t()),
        kybernetes_controllers::spawn_serviceaccounts_controller(c(), t()),
        kybernetes_controllers::spawn_load_balancer_controller(
            c(),
            k(),
            config.load_balancer.clone(),
            t(),
        ),
    ];
    tasks.extend(informers.take_tasks());
    tasks
}

/// Runs the control plane: at once, or under leader election.
pub(crate) fn spawn(
    client: kube::Client,
    clock: Clock,
    profiles: Vec<Profile>,
    config: ControlPlaneConfig,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Some(election) = config.leader_election.clone() else {
            let tasks = start_components(&client, &clock, &profiles, &config, &shutdown);
            shutdown.cancelled().await;
            for t in tasks {
                let _ = t.await;
            }
            return;
        };
        let elector = LeaderElector::spawn(
            client.clone(),
            clock.clone(),
            election,
            shutdown.child_token(),
        );
        let mut leading = elector.subscribe();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = leading.wait_for(|l| *l) => if r.is_err() { break },
            }
            info!("leading: starting the scheduler and controllers");
            let term = shutdown.child_token();
            let tasks = start_components(&client, &clock, &profiles, &config, &term);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = leading.wait_for(|l| !*l) => info!("lost leadership: stopping the scheduler and controllers"),
            }
            term.cancel();
            for t in tasks {
                let _ = t.await;
            }
            if shutdown.is_cancelled() {
                break;
            }
        }
        elector.join().await;
    })
}
