//! What the net tests share: DNS on the wire ([`dns`]), a `LinuxNetwork` per test that must leave no namespace
//! behind, entering a namespace, and a pod's network request. Each test binary uses a part.
#![allow(dead_code)]

pub mod dns;

#[cfg(target_os = "linux")]
use std::path::Path;
use std::path::PathBuf;

#[cfg(target_os = "linux")]
use kybernetes_core::ClusterConfig;
#[cfg(target_os = "linux")]
use kybernetes_net::{LinuxNetwork, Network};
use kybernetes_net::{PodNetwork, PodNetworkRequest};

#[cfg(target_os = "linux")]
/// Starts a `LinuxNetwork` whose namespaces are named after `prefix` (one per test: the
/// tests of one binary share the process id). Needs root: without it the test fails.
pub async fn start_network(prefix: &str) -> LinuxNetwork {
    LinuxNetwork::start(ClusterConfig::default(), prefix)
        .await
        .expect("start the linux network (needs root)")
}

#[cfg(target_os = "linux")]
/// Shuts `net` down and checks that no namespace of `prefix` is left.
pub async fn shut_down(net: LinuxNetwork, prefix: &str) {
    net.shutdown().await.expect("shutdown");
    assert_eq!(LinuxNetwork::namespaces(prefix), Vec::<PathBuf>::new());
}

#[cfg(target_os = "linux")]
/// Runs `work` on a thread inside the network namespace at `netns`; sockets it opens stay
/// in that namespace.
pub fn in_netns<T: Send + 'static>(netns: &Path, work: impl FnOnce() -> T + Send + 'static) -> T {
    let netns = netns.to_owned();
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&netns).expect("open netns");
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns (needs root)");
        work()
    })
    .join()
    .expect("netns thread")
}

#[cfg(target_os = "linux")]
/// Runs the future `work` makes to completion on a current-thread runtime of its own, on a
/// thread inside the network namespace at `netns`: the sockets it opens, tokio's too, stay
/// in that namespace.
pub fn in_netns_async<T, F>(netns: &Path, work: impl FnOnce() -> F + Send + 'static) -> T
where
    T: Send + 'static,
    F: Future<Output = T>,
{
    in_netns(netns, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime in the namespace")
            .block_on(work())
    })
}

/// The namespace of pod network `p`.
pub fn netns_of(p: &PodNetwork) -> PathBuf {
    p.netns.clone().expect("a LinuxNetwork pod has a netns")
}

/// The network request of pod `pod-<uid>` in `default`.
pub fn pod(uid: &str) -> PodNetworkRequest {
    PodNetworkRequest {
        namespace: "default".into(),
        name: format!("pod-{uid}"),
        uid: uid.into(),
        hostname: format!("pod-{uid}"),
        subdomain: None,
    }
}
