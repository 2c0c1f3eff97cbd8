//! CPU and memory of a process group, from `/proc`.

/// CPU time (in nanoseconds of one core) and resident memory (bytes) of every process in
/// group `pgid`.
pub(crate) fn group_usage(pgid: u32) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return (0, 0);
    };
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    let (mut cpu_ticks, mut rss) = (0u64, 0u64);
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // A process may exit between the listing and the read: it then simply counts no more.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((group, cpu)) = parse_stat(&stat) else {
            continue;
        };
        if group != pgid {
            continue;
        }
        cpu_ticks += cpu;
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            rss += parse_rss(&status);
        }
    }
    (cpu_ticks.saturating_mul(1_000_000_000) / ticks, rss)
}

/// The process group and `utime + stime` (in clock ticks) from a `/proc/<pid>/stat` line.
fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    // The command name (field 2) is in parentheses and may hold spaces: fields after it
    // start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): pgrp is field 5, utime 14, stime 15.
    let pgrp = fields.get(2)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((pgrp, utime + stime))
}

/// `VmRSS` from `/proc/<pid>/status`, in bytes.
fn parse_rss(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let stat = "42 (my (odd) cmd) S 1 40 40 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 1000 50";
        assert_eq!(parse_stat(stat), Some((40, 10)));
        assert_eq!(parse_rss("Name:\tsh\nVmRSS:\t  1024 kB\n"), 1024 * 1024);
    }

    #[test]
    fn this_process_group_uses_memory() {
        let me = std::process::id();
        let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
        let (pgrp, _) = parse_stat(&stat).unwrap();
        let (_, rss) = group_usage(pgrp);
        assert!(rss > 0);
    }
}
