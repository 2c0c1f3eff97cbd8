//! kybernetes-controllers: ReplicaSet, Deployment, garbage collector, Endpoints, node lifecycle and namespace controllers, each a kube-runtime Controller.

pub mod garbage_collector;
pub use garbage_collector::{GarbageCollectorConfig, spawn_garbage_collector};
