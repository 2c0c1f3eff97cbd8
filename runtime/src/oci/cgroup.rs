//! A container's cgroup as the kubelet's stats provider (cAdvisor) and containerd read it:
//! cumulative CPU time, the memory working set (usage less inactive file pages, which the
//! kernel reclaims first), and whether the OOM killer struck. Both cgroup v2 (one unified
//! hierarchy) and v1 (`cpuacct` and `memory` controllers) are read.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Where the cgroup hierarchies are mounted.
pub(crate) const ROOT: &str = "/sys/fs/cgroup";

/// CPU nanoseconds and working-set bytes of the cgroup at `path` (relative to each
/// hierarchy's root) under the hierarchies mounted at `root`. A cgroup that is already gone
/// (the task exited between the state check and the read) reads as zeros.
pub(crate) fn usage(root: &Path, path: &str) -> Result<(u64, u64)> {
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

/// Whether the kernel's OOM killer killed a process of the cgroup at `path` (cgroup v1's
/// `memory.oom_control`, or v2's `memory.events`). Read before the container is deleted,
/// since runc removes the cgroup then.
pub(crate) fn oom_killed(path: &str) -> bool {
    let rel = path.trim_start_matches('/');
    let files = [
        Path::new(ROOT)
            .join("memory")
            .join(rel)
            .join("memory.oom_control"),
        Path::new(ROOT).join(rel).join("memory.events"),
    ];
    files.iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|s| {
            s.lines().any(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    })
}

/// Removes the cgroup at `path` and every cgroup under it, from the unified hierarchy or
/// from every v1 hierarchy that has it, killing what still runs in them first (a container
/// whose runc was killed leaves its processes there). One that is gone is fine.
pub(crate) fn remove(path: &str) {
    let rel = path.trim_start_matches('/');
    let root = Path::new(ROOT);
    let mut dirs = vec![root.join(rel)];
    if let Ok(hierarchies) = std::fs::read_dir(root) {
        dirs.extend(hierarchies.flatten().map(|h| h.path().join(rel)));
    }
    for dir in dirs {
        if dir.is_dir() {
            remove_tree(&dir);
        }
    }
}

/// How often an emptied cgroup's removal is retried while its killed processes exit.
const REMOVE_TRIES: u32 = 200;

fn remove_tree(dir: &Path) {
    if let Ok(children) = std::fs::read_dir(dir) {
        for child in children.flatten() {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&child.path());
            }
        }
    }
    for attempt in 0..REMOVE_TRIES {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    // One that exited meanwhile is what we want.
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e)
                if e.kind() == std::io::ErrorKind::ResourceBusy && attempt + 1 < REMOVE_TRIES =>
            {
                // The killed processes are still exiting.
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => {
                tracing::warn!(cgroup = %dir.display(), error = %e, "removing a cgroup failed");
                return;
            }
        }
    }
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
