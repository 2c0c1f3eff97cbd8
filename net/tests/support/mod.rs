//! What the `LinuxNetwork` tests share: entering a namespace and a pod's network request.

use std::path::Path;

use kybernetes_net::PodNetworkRequest;

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
