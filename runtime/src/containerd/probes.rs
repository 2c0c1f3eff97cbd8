//! Probes of containers on containerd, run by [`crate::oci::probe`] in the pod's network
//! namespace.

use super::ContainerdRuntime;
use crate::probe::{self, ProbeRequest, ProbeResult};

/// Runs `request` against container `container_id`; see the module docs.
pub(super) async fn run(
    rt: &ContainerdRuntime,
    container_id: &str,
    request: &ProbeRequest,
) -> ProbeResult {
    let sandbox_netns = {
        let st = rt.inner.lock();
        st.containers
            .get(container_id)
            .and_then(|c| st.sandboxes.get(&c.status.sandbox_id))
            .map(|s| {
                (
                    s.netns.clone(),
                    s.owns_netns,
                    s.config.pod_ip.map(|ip| ip.to_string()),
                )
            })
    };
    let Some((netns, owns_netns, pod_ip)) = sandbox_netns else {
        return probe::run_default(rt, container_id, request).await;
    };
    crate::oci::probe::run(rt, container_id, request, netns, owns_netns, pod_ip).await
}
