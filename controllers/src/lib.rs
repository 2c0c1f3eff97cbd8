//! kybernetes-controllers: ReplicaSet, ReplicationController, Deployment, Job (with TTL-after-finished), CronJob, DaemonSet, StatefulSet, disruption (PodDisruptionBudget status), HorizontalPodAutoscaler, PersistentVolume binder with a local-path provisioner and PVC/PV protection, garbage collector, Endpoints, node lifecycle, namespace and service account controllers, each a kube-runtime Controller.

pub mod garbage_collector;
pub mod horizontal_pod_autoscaler;
pub use garbage_collector::{GarbageCollectorConfig, spawn_garbage_collector};
pub use horizontal_pod_autoscaler::spawn_horizontal_pod_autoscaler;
pub mod endpoints;
pub mod endpointslice;
pub use endpoints::{EndpointsConfig, spawn_endpoints_controller};
pub use endpointslice::{EndpointSliceConfig, spawn_endpointslice_controller};
pub mod namespace;
pub mod node_lifecycle;
pub mod serviceaccount;
pub use namespace::{NamespaceConfig, spawn_namespace_controller};
pub use node_lifecycle::{NodeLifecycleConfig, spawn_node_lifecycle_controller};
pub use serviceaccount::spawn_serviceaccounts_controller;
/// Conversions of API field values: label selectors, `IntOrString` percentages, `metav1.Time`.
pub mod api_values;
/// Controller ownerReferences, adoption and release.
pub mod controller_ref;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
/// Events about managed objects, stamped from the cluster clock.
pub mod event_recorder;
/// Shared informers: one watch and one cache per resource for all controllers.
pub mod informers;
pub mod job;
pub mod load_balancer;
/// A controller's own writes layered over its informer cache.
pub mod mutation_cache;
pub mod persistent_volume;
/// Active, ready and available pods, and the deletion order.
pub mod pod_state;
/// The reconcile loop: shutdown, error back-off, API error classes, status patches.
pub mod reconcile;
pub mod replicaset;
pub mod replicationcontroller;
pub mod statefulset;
pub use cronjob::spawn_cronjob;
pub use daemonset::spawn_daemonset;
pub use deployment::spawn_deployment;
pub use disruption::spawn_disruption;
pub use informers::InformerFactory;
pub use job::{spawn_job, spawn_ttl_after_finished};
pub use load_balancer::{LoadBalancerConfig, spawn_load_balancer_controller};
pub use persistent_volume::{
    PersistentVolumeConfig, spawn_persistent_volume, spawn_volume_protection,
};
pub use replicaset::spawn_replicaset;
pub use replicationcontroller::spawn_replicationcontroller;
pub use statefulset::spawn_statefulset;
