//! The whole-cluster integration tests, one test binary for all of them.
//!
//! One binary links the cluster once instead of once per file: a fresh `scripts/test` build
//! was about 8 GB smaller this way and links forty fewer 200 MB executables. Each file is a
//! module named as the file was; nextest still runs every test in its own process.

mod common;

mod aggregated_discovery;
mod api_crud;
mod api_semantics;
mod autoscaling;
mod batch;
#[cfg(feature = "containerd")]
mod containerd;
#[cfg(feature = "containerd")]
mod containerd_restart;
#[cfg(feature = "containerd")]
mod containerd_streams;
#[cfg(feature = "containerd")]
mod containerd_workloads;
mod controller;
mod crd;
mod cronjob;
mod daemonset;
mod discovery;
mod disruption;
mod dns;
mod dry_run;
mod durable;
mod exec;
mod informers;
mod ingress;
mod kubectl_create;
mod kubectl_streams;
mod leader_election;
#[cfg(feature = "containerd")]
mod linux_cluster;
#[cfg(feature = "containerd")]
mod linux_ingress;
mod metrics;
mod node_capacity;
mod openapi;
mod pod_affinity;
mod pod_lifecycle;
mod pod_logs;
mod preemption;
mod processes;
mod proxy;
mod python_client;
mod replicationcontroller;
mod restart;
mod scheduler_profiles;
mod scheduling;
mod server_endpoints;
mod server_side_apply;
mod service_account_tokens;
mod services;
mod serving;
mod statefulset;
mod storage;
mod tables;
mod userspace_proxy;
mod watch;
mod workloads;
