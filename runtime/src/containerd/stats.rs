//! Container CPU and memory usage from the container's cgroup (see [`crate::oci::cgroup`]).

use std::path::Path;

use super::{ContainerdRuntime, not_found};
use crate::stream::ContainerStats;
use crate::{Error, Result};

/// The stats of container `id`: zeros unless it runs (its cgroup goes with its task).
pub(super) async fn container_stats(rt: &ContainerdRuntime, id: &str) -> Result<ContainerStats> {
    let cgroups = {
        let st = rt.inner.lock();
        let c = st
            .containers
            .get(id)
            .ok_or_else(|| not_found("container", id))?;
        c.status.state.is_running().then(|| c.cgroups_path.clone())
    };
    let (cpu, memory) = match cgroups {
        Some(path) => tokio::task::spawn_blocking(move || {
            crate::oci::cgroup::usage(Path::new(crate::oci::cgroup::ROOT), &path)
        })
        .await
        .map_err(|e| Error::Backend {
            context: "reading a container's cgroup".into(),
            source: Some(Box::new(e)),
        })??,
        None => (0, 0),
    };
    let now = tokio::time::Instant::now();
    let rate = {
        let mut st = rt.inner.lock();
        st.containers
            .get_mut(id)
            .and_then(|c| c.cpu_rate.sample(now, cpu))
    };
    Ok(ContainerStats {
        container_id: id.to_string(),
        timestamp: rt.inner.clock.now(),
        cpu_usage_core_nanos: cpu,
        cpu_usage_nano_cores: rate,
        memory_working_set_bytes: memory,
    })
}
