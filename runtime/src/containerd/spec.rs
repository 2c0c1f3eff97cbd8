//! The OCI runtime spec of a container: containerd's default Linux spec (the mounts,
//! capabilities and masked paths `ctr run` uses), with the process from the image config and
//! the container config, the pod's network namespace, bind mounts for the volumes and the
//! resource limits as cgroup settings.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::container::{ContainerConfig, ContainerResources};
use crate::process::ImageCommand;
use crate::{Error, Result};

/// The `config` part of an OCI image config: what a container of the image runs by default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ImageProcess {
    #[serde(default)]
    pub(super) entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub(super) cmd: Option<Vec<String>>,
    #[serde(default)]
    pub(super) env: Option<Vec<String>>,
    #[serde(default)]
    pub(super) working_dir: Option<String>,
    #[serde(default)]
    pub(super) user: Option<String>,
}

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

const MASKED_PATHS: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

const READONLY_PATHS: [&str; 6] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/sys/fs/cgroup",
];

/// The CFS period the kubelet uses for CPU limits, in microseconds.
const CPU_PERIOD: u64 = 100_000;

/// What a container spec is built from, besides the container config.
pub(super) struct SpecInputs<'a> {
    pub(super) image: &'a ImageProcess,
    pub(super) hostname: &'a str,
    pub(super) netns: &'a Path,
    pub(super) cgroups_path: &'a str,
    /// The pod's resolver file, if the node agent gave a DNS config.
    pub(super) resolv_conf: Option<&'a Path>,
}

/// The process's argv by Docker's rules: `command` replaces the entrypoint (and drops the
/// image's `Cmd`), `args` replace the `Cmd`.
pub(super) fn argv(image: &ImageProcess, config: &ContainerConfig) -> Vec<String> {
    ImageCommand::Entrypoint {
        entrypoint: image.entrypoint.clone().unwrap_or_default(),
        cmd: image.cmd.clone().unwrap_or_default(),
    }
    .argv(&config.command, &config.args)
}

/// The environment: the image's, with the container's on top (same key: the container
/// wins), and `HOSTNAME`, as Docker and containerd's CRI set it.
fn env(image: &ImageProcess, config: &ContainerConfig, hostname: &str) -> Vec<String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match out.iter_mut().find(|(key, _)| key == k) {
        Some(slot) => slot.1 = v.to_string(),
        None => out.push((k.to_string(), v.to_string())),
    };
    set(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    set("HOSTNAME", hostname);
    for kv in image.env.iter().flatten() {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        set(k, v);
    }
    for (k, v) in &config.env {
        set(k, v);
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The image's `User` as numeric ids (`uid`, `uid:gid`); a user name would need the
/// image's `/etc/passwd`, which is not read yet.
fn user(image: &ImageProcess) -> Result<(u32, u32)> {
    let Some(user) = image.user.as_deref().filter(|u| !u.is_empty()) else {
        return Ok((0, 0));
    };
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    let uid = match u {
        "root" => 0,
        _ => u.parse().map_err(|_| {
            Error::Unsupported(format!(
                "image user {user:?}: user names (rather than numeric ids) on containerd"
            ))
        })?,
    };
    let gid = match g {
        "" | "root" => 0,
        _ => g.parse().map_err(|_| {
            Error::Unsupported(format!(
                "image user {user:?}: group names (rather than numeric ids) on containerd"
            ))
        })?,
    };
    Ok((uid, gid))
}

/// The cgroup settings for the container's requests and limits, as the kubelet computes
/// them: CPU shares from the request, a CFS quota from the limit, the memory limit.
fn resources(r: &ContainerResources) -> Value {
    let mut out = json!({"devices": [{"allow": false, "access": "rwm"}]});
    let mut cpu = serde_json::Map::new();
    if let Some(millis) = r.cpu_request_millis.or(r.cpu_limit_millis) {
        cpu.insert("shares".into(), json!((millis * 1024 / 1000).max(2)));
    }
    if let Some(millis) = r.cpu_limit_millis {
        cpu.insert(
            "quota".into(),
            json!((millis * CPU_PERIOD / 1000).max(1000)),
        );
        cpu.insert("period".into(), json!(CPU_PERIOD));
    }
    if !cpu.is_empty() {
        out["cpu"] = Value::Object(cpu);
    }
    if let Some(limit) = r.memory_limit_bytes {
        out["memory"] = json!({"limit": limit});
    }
    out
}

/// The OCI runtime spec of a container.
pub(super) fn build(config: &ContainerConfig, inputs: &SpecInputs<'_>) -> Result<Value> {
    let args = argv(inputs.image, config);
    if args.is_empty() {
        return Err(Error::Backend {
            context: format!(
                "container {:?} has no command: neither the pod spec nor image {:?} sets one",
                config.metadata.name, config.image
            ),
            source: None,
        });
    }
    let cwd = config
        .working_dir
        .clone()
        .filter(|d| !d.is_empty())
        .or_else(|| inputs.image.working_dir.clone().filter(|d| !d.is_empty()))
        .unwrap_or_else(|| "/".into());
    let (uid, gid) = user(inputs.image)?;
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
    ];
    // A volume the pod mounts at /etc/resolv.conf wins over the pod's DNS config.
    if let Some(resolv) = inputs.resolv_conf
        && !config
            .mounts
            .iter()
            .any(|m| m.container_path == Path::new("/etc/resolv.conf"))
    {
        mounts.push(json!({
            "destination": "/etc/resolv.conf",
            "type": "bind",
            "source": resolv,
            "options": ["rbind", "rprivate", "rw"],
        }));
    }
    for m in &config.mounts {
        mounts.push(json!({
            "destination": m.container_path,
            "type": "bind",
            "source": m.host_path,
            "options": ["rbind", "rprivate", if m.readonly { "ro" } else { "rw" }],
        }));
    }
    Ok(json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid},
            "args": args,
            "env": env(inputs.image, config, inputs.hostname),
            "cwd": cwd,
            "capabilities": {
                "bounding": DEFAULT_CAPABILITIES,
                "effective": DEFAULT_CAPABILITIES,
                "permitted": DEFAULT_CAPABILITIES,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": inputs.hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": inputs.cgroups_path,
            "resources": resources(&config.resources),
            "namespaces": [
                {"type": "pid"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "network", "path": inputs.netns},
            ],
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::ContainerMetadata;

    fn image() -> ImageProcess {
        ImageProcess {
            entrypoint: None,
            cmd: Some(vec!["sh".into()]),
            env: Some(vec!["PATH=/bin".into(), "A=image".into()]),
            working_dir: Some("/srv".into()),
            user: Some("1000:1000".into()),
        }
    }

    #[test]
    fn the_spec_takes_the_image_defaults_under_the_container_config() {
        let config = ContainerConfig {
            metadata: ContainerMetadata {
                name: "c".into(),
                attempt: 0,
            },
            args: vec!["-c".into(), "echo hi".into()],
            env: vec![("A".into(), "pod".into())],
            resources: ContainerResources {
                cpu_limit_millis: Some(500),
                memory_limit_bytes: Some(64 << 20),
                ..Default::default()
            },
            ..Default::default()
        };
        let inputs = SpecInputs {
            image: &image(),
            hostname: "web-0",
            netns: Path::new("/run/netns/x"),
            cgroups_path: "/kybernetes/c1",
            resolv_conf: Some(Path::new("/pods/p/resolv.conf")),
        };
        let spec = build(&config, &inputs).expect("spec");
        // No entrypoint and args set: args replace the image's Cmd.
        assert_eq!(spec["process"]["args"], json!(["-c", "echo hi"]));
        assert_eq!(
            spec["process"]["env"],
            json!(["PATH=/bin", "HOSTNAME=web-0", "A=pod"])
        );
        assert_eq!(spec["process"]["cwd"], "/srv");
        assert_eq!(spec["process"]["user"], json!({"uid": 1000, "gid": 1000}));
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(spec["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(spec["linux"]["namespaces"][4]["path"], "/run/netns/x");
        let resolv = spec["mounts"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["destination"] == "/etc/resolv.conf"))
            .expect("a resolv.conf mount");
        assert_eq!(resolv["source"], "/pods/p/resolv.conf");
    }

    #[test]
    fn a_container_with_no_command_anywhere_is_refused() {
        let inputs = SpecInputs {
            image: &ImageProcess::default(),
            hostname: "h",
            netns: Path::new("/n"),
            cgroups_path: "/k/c",
            resolv_conf: None,
        };
        let err = build(&ContainerConfig::default(), &inputs).expect_err("no command");
        assert!(err.to_string().contains("no command"), "{err}");
    }
}
