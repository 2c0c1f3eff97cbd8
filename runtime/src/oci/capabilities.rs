//! A container's capabilities and, when privileged, its host devices, as containerd's CRI
//! plugin sets them: the default set (Docker's fourteen), every capability the kernel knows
//! for a privileged container, then `add` (`ALL` first, so `add: [ALL], drop: [CHOWN]`
//! means every one but `CAP_CHOWN`) and `drop`.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde_json::{Value, json};

use crate::security::ContainerSecurity;
use crate::{Error, Result};

/// containerd's default capabilities (`oci.populateDefaultUnixSpec`), Docker's set.
const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability by number (`linux/capability.h`).
const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities this kernel knows (up to `/proc/sys/kernel/cap_last_cap`), as
/// containerd's `cap.Current` lists them for privileged containers.
fn known_capabilities() -> &'static [&'static str] {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(ALL_CAPABILITIES.len() - 1);
    &ALL_CAPABILITIES[..=last.min(ALL_CAPABILITIES.len() - 1)]
}

/// A Kubernetes capability name (`NET_ADMIN`, `net_admin`, `CAP_NET_ADMIN`) as the OCI spec
/// spells it; a name no kernel knows is refused here rather than by runc at start.
fn oci_name(name: &str) -> Result<String> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(Error::Backend {
            context: format!("unknown capability {name:?}"),
            source: None,
        })
    }
}

/// The bounding, effective and permitted set of a container under `security`.
pub(crate) fn effective(security: &ContainerSecurity) -> Result<Vec<String>> {
    let base: &[&str] = if security.privileged {
        known_capabilities()
    } else {
        &DEFAULT_CAPABILITIES
    };
    let mut caps: Vec<String> = base.iter().map(|c| c.to_string()).collect();
    if security.privileged {
        // containerd ignores add and drop for a privileged container.
        return Ok(caps);
    }
    let is_all = |c: &String| c.eq_ignore_ascii_case("ALL");
    if security.add_capabilities.iter().any(is_all) {
        caps = known_capabilities().iter().map(|c| c.to_string()).collect();
    }
    if security.drop_capabilities.iter().any(is_all) {
        caps.clear();
    }
    for add in security.add_capabilities.iter().filter(|c| !is_all(c)) {
        let name = oci_name(add)?;
        if !caps.contains(&name) {
            caps.push(name);
        }
    }
    for drop in security.drop_capabilities.iter().filter(|c| !is_all(c)) {
        let name = oci_name(drop)?;
        caps.retain(|c| c != &name);
    }
    Ok(caps)
}

/// The host's device nodes under `/dev` as OCI `linux.devices` entries, as containerd's
/// `WithHostDevices` lists them for a privileged container (skipping `/dev/pts`, `/dev/shm`,
/// `/dev/mqueue`, which the spec mounts itself, and anything unreadable).
pub(crate) fn host_devices() -> Vec<Value> {
    let mut out = Vec::new();
    collect_devices(Path::new("/dev"), &mut out);
    out
}

fn collect_devices(dir: &Path, out: &mut Vec<Value>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let kind = meta.file_type();
        if kind.is_dir() {
            let skip = ["pts", "shm", "mqueue", "fd", ".lxc", ".lxd-mounts", ".udev"];
            let name = entry.file_name();
            if !skip.iter().any(|s| name == *s) {
                collect_devices(&path, out);
            }
            continue;
        }
        let kind = if kind.is_char_device() {
            "c"
        } else if kind.is_block_device() {
            "b"
        } else {
            continue;
        };
        // /dev/console belongs to the container's terminal, as runc sets it up.
        if path == Path::new("/dev/console") {
            continue;
        }
        let rdev = meta.rdev();
        let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
        let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
        out.push(json!({
            "path": path,
            "type": kind,
            "major": major,
            "minor": minor,
            "fileMode": meta.mode() & 0o7777,
            "uid": meta.uid(),
            "gid": meta.gid(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(add: &[&str], drop: &[&str]) -> Result<Vec<String>> {
        effective(&ContainerSecurity {
            add_capabilities: add.iter().map(|s| s.to_string()).collect(),
            drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
    }

    #[test]
    fn add_and_drop_change_the_default_set() {
        let caps = with(&["NET_ADMIN"], &["NET_RAW", "chown"]).expect("caps");
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_NET_RAW".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert_eq!(caps.len(), 13);
        assert_eq!(with(&[], &["ALL"]).expect("none"), Vec::<String>::new());
        assert_eq!(
            with(&["KILL"], &["ALL"]).expect("kill"),
            vec!["CAP_KILL".to_string()]
        );
        let all_but_chown = with(&["ALL"], &["CHOWN"]).expect("all");
        assert!(all_but_chown.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!all_but_chown.contains(&"CAP_CHOWN".to_string()));
    }

    #[test]
    fn an_unknown_capability_is_refused_by_name() {
        let err = with(&["FLY"], &[]).expect_err("unknown");
        assert!(
            err.to_string().contains("unknown capability \"FLY\""),
            "{err}"
        );
    }

    #[test]
    fn a_privileged_container_gets_every_capability() {
        let caps = effective(&ContainerSecurity {
            privileged: true,
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        })
        .expect("caps");
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!host_devices().is_empty());
    }
}
