//! The OCI runtime spec of a container, for every runtime that runs containers through runc
//! (`ContainerdRuntime`, and `ProcessRuntime`'s isolated mode): containerd's default Linux
//! spec (the mounts, capabilities and masked paths `ctr run` uses), with the process from the
//! image config and
//! the container config, the user and security settings as containerd's CRI plugin applies
//! them, the pod's network namespace, bind mounts for the volumes and the resource limits as
//! cgroup settings.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use super::user::ProcessUser;
use crate::container::{ContainerConfig, ContainerResources};
use crate::process::ImageCommand;
use crate::{Error, Result};

/// The `config` part of an OCI image config: what a container of the image runs by default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ImageProcess {
    #[serde(default)]
    pub(crate) entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) cmd: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) env: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) working_dir: Option<String>,
    #[serde(default)]
    pub(crate) user: Option<String>,
}

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
pub(crate) struct SpecInputs<'a> {
    pub(crate) image: &'a ImageProcess,
    /// The process's argv ([`argv`] for an image whose config says what runs).
    pub(crate) args: &'a [String],
    /// The root filesystem (relative to the bundle, or absolute).
    pub(crate) rootfs: &'a Path,
    pub(crate) hostname: &'a str,
    pub(crate) netns: &'a Path,
    pub(crate) cgroups_path: &'a str,
    /// The pod's resolver file, if the node agent gave a DNS config.
    pub(crate) resolv_conf: Option<&'a Path>,
    /// The user, resolved against the image's account files.
    pub(crate) user: &'a ProcessUser,
}

/// The process's argv by Docker's rules: `command` replaces the entrypoint (and drops the
/// image's `Cmd`), `args` replace the `Cmd`.
pub(crate) fn argv(image: &ImageProcess, config: &ContainerConfig) -> Vec<String> {
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
pub(crate) fn build(config: &ContainerConfig, inputs: &SpecInputs<'_>) -> Result<Value> {
    let args = inputs.args;
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
    let security = &config.security;
    let capabilities = super::capabilities::effective(security)?;
    let sysfs = if security.privileged { "rw" } else { "ro" };
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
               "options": ["nosuid", "noexec", "nodev", sysfs]}),
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
    let mut linux = json!({
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
    });
    if security.privileged {
        // As containerd's `WithPrivileged`, `WithHostDevices` and `WithAllDevicesAllowed`:
        // nothing masked, every host device, every device allowed.
        linux["maskedPaths"] = json!([]);
        linux["readonlyPaths"] = json!([]);
        linux["devices"] = Value::Array(super::capabilities::host_devices());
        linux["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    }
    Ok(json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": config.tty,
            "user": {
                "uid": inputs.user.uid,
                "gid": inputs.user.gid,
                "additionalGids": inputs.user.additional_gids,
            },
            "args": args,
            "env": env(inputs.image, config, inputs.hostname),
            "cwd": cwd,
            "capabilities": {
                "bounding": capabilities,
                "effective": capabilities,
                "permitted": capabilities,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            // The kubelet asks for no_new_privs only with `allowPrivilegeEscalation: false`,
            // and containerd's CRI plugin sets it only then.
            "noNewPrivileges": security.no_new_privs,
        },
        "root": {"path": inputs.rootfs, "readonly": security.readonly_rootfs},
        "hostname": inputs.hostname,
        "mounts": mounts,
        "linux": linux,
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
        let image = image();
        let args = argv(&image, &config);
        let inputs = SpecInputs {
            image: &image,
            args: &args,
            rootfs: Path::new("rootfs"),
            hostname: "web-0",
            netns: Path::new("/run/netns/x"),
            cgroups_path: "/kybernetes/c1",
            resolv_conf: Some(Path::new("/pods/p/resolv.conf")),
            user: &ProcessUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![1000],
            },
        };
        let spec = build(&config, &inputs).expect("spec");
        // No entrypoint and args set: args replace the image's Cmd.
        assert_eq!(spec["process"]["args"], json!(["-c", "echo hi"]));
        assert_eq!(
            spec["process"]["env"],
            json!(["PATH=/bin", "HOSTNAME=web-0", "A=pod"])
        );
        assert_eq!(spec["process"]["cwd"], "/srv");
        assert_eq!(
            spec["process"]["user"],
            json!({"uid": 1000, "gid": 1000, "additionalGids": [1000]})
        );
        assert_eq!(spec["process"]["noNewPrivileges"], false);
        assert_eq!(spec["root"]["readonly"], false);
        assert_eq!(
            spec["process"]["capabilities"]["effective"]
                .as_array()
                .map(Vec::len),
            Some(14)
        );
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
            args: &[],
            rootfs: Path::new("rootfs"),
            hostname: "h",
            netns: Path::new("/n"),
            cgroups_path: "/k/c",
            resolv_conf: None,
            user: &ProcessUser::default(),
        };
        let err = build(&ContainerConfig::default(), &inputs).expect_err("no command");
        assert!(err.to_string().contains("no command"), "{err}");
    }
}
