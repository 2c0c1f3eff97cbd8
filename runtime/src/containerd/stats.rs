//! Container CPU and memory usage from the container's cgroup, as the kubelet's stats provider
//! (cAdvisor) reads it: cumulative CPU time, and the memory working set (usage less inactive
//! file pages, which the kernel reclaims first). Both cgroup v2 (one unified hierarchy) and
//! v1 (`cpuacct` and `memory` controllers) are read.

use std::path::{Path, PathBuf};

use super::{ContainerdRuntime, not_found};
use crate::stream::ContainerStats;
use crate::{Error, Result};

/// Where the cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

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
        Some(path) => tokio::task::spawn_blocking(move || usage(Path::new(CGROUP_ROOT), &path))
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

/// CPU nanoseconds and working-set bytes of the cgroup at `path` (relative to each
/// hierarchy's root) under the hierarchies mounted at `root`. A cgroup that is already gone
/// (the task exited between the state check and the read) reads as zeros.
fn usage(root: &Path, path: &str) -> Result<(u64, u64)> {
    let rel = path.trim_start_matches('/');
    let unified = root.join(rel);
    if unified.join("cpu.stat").is_file() {
        // v2: cpu.stat's usage_usec; memory.current less memory.stat's inactive_file.
        let cpu = read(&unified.join("cpu.stat"))?
            .map(|s| field(&s, "usage_usec").saturating_mul(1000))
            .unwrap_or(0);
        let current = read(&unified.join("memory.current"))?
            .map(|s| number(&s))
            .unwrap_or(0);
        let inactive = read(&unified.join("memory.stat"))?
            .map(|s| field(&s, "inactive_file"))
            .unwrap_or(0);
        return Ok((cpu, current.saturating_sub(inactive)));
    }
    // v1: cpuacct.usage in nanoseconds (the controller mounted alone or with cpu), and
    // memory.usage_in_bytes less memory.stat's total_inactive_file.
    let cpuacct = ["cpuacct", "cpu,cpuacct", "cpuacct,cpu"]
        .iter()
        .map(|c| root.join(c).join(rel).join("cpuacct.usage"))
        .find(|p| p.is_file());
    let cpu = match cpuacct {
        Some(p) => read(&p)?.map(|s| number(&s)).unwrap_or(0),
        None => 0,
    };
    let memory: PathBuf = root.join("memory").join(rel);
    let used = read(&memory.join("memory.usage_in_bytes"))?
        .map(|s| number(&s))
        .unwrap_or(0);
    let inactive = read(&memory.join("memory.stat"))?
        .map(|s| field(&s, "total_inactive_file"))
        .unwrap_or(0);
    Ok((cpu, used.saturating_sub(inactive)))
}

/// A cgroup file's content; `None` if it does not exist (the cgroup is gone, or the
/// controller is not enabled for it).
fn read(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Backend {
            context: format!("read {}", path.display()),
            source: Some(Box::new(e)),
        }),
    }
}

fn number(s: &str) -> u64 {
    s.trim().parse().unwrap_or(0)
}

/// The value of `key` in a flat-keyed cgroup file (`key value` lines).
fn field(s: &str, key: &str) -> u64 {
    s.lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(number)
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, content: &str) {
        std::fs::create_dir_all(dir).expect("dir");
        std::fs::write(dir.join(file), content).expect("write");
    }

    #[test]
    fn cgroup_v2_files_are_read() {
        let root = tempfile::tempdir().expect("tmp");
        let dir = root.path().join("kybernetes/c1");
        write(
            &dir,
            "cpu.stat",
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        );
        write(&dir, "memory.current", "10485760\n");
        write(
            &dir,
            "memory.stat",
            "anon 8388608\nfile 2097152\ninactive_file 1048576\n",
        );
        let (cpu, memory) = usage(root.path(), "/kybernetes/c1").expect("usage");
        assert_eq!(cpu, 1_500_000);
        assert_eq!(memory, 10_485_760 - 1_048_576);
    }

    #[test]
    fn cgroup_v1_files_are_read() {
        let root = tempfile::tempdir().expect("tmp");
        write(
            &root.path().join("cpuacct/kybernetes/c1"),
            "cpuacct.usage",
            "123456789\n",
        );
        let mem = root.path().join("memory/kybernetes/c1");
        write(&mem, "memory.usage_in_bytes", "4096000\n");
        write(
            &mem,
            "memory.stat",
            "inactive_file 1\ntotal_inactive_file 96000\n",
        );
        let (cpu, memory) = usage(root.path(), "/kybernetes/c1").expect("usage");
        assert_eq!(cpu, 123_456_789);
        assert_eq!(memory, 4_000_000);
    }

    #[test]
    fn a_cgroup_that_is_gone_reads_as_zeros() {
        let root = tempfile::tempdir().expect("tmp");
        assert_eq!(
            usage(root.path(), "/kybernetes/gone").expect("usage"),
            (0, 0)
        );
    }
}
