//! A container's OCI bundle in isolated mode, under `containers/<id>` of the runtime's root:
//! `config.json`, built by the same spec builder as ContainerdRuntime's, and the root
//! filesystem. A container of an imported image gets an overlay of the unpacked image (its
//! own upper directory, so it writes without touching the image); any other container sees
//! the host's root, bound recursively read-only inside its own mount namespace (runc cannot
//! pivot into `/` itself), with its pod's directory writable as its default working
//! directory.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use serde_json::json;
use tracing::debug;

use super::Isolation;
use crate::container::ContainerConfig;
use crate::oci::backend;
use crate::oci::spec::{self, ImageProcess, SpecInputs};
use crate::oci::user::{self, RootfsFiles};
use crate::process::{ImageCommand, ProcessSandbox};
use crate::{Error, Result};

/// A container's bundle.
#[derive(Clone, Debug)]
pub(crate) struct Bundle {
    pub(crate) dir: PathBuf,
    /// Its cgroup, relative to each hierarchy's root.
    pub(crate) cgroups_path: String,
    /// Whether an overlay of its image is mounted at `dir/rootfs`.
    overlay: bool,
}

impl Isolation {
    /// Writes the bundle of container `id` of `sandbox` and returns it with the argv that
    /// runs it. Nothing is left behind if a step fails.
    pub(crate) fn prepare(
        &self,
        id: &str,
        sandbox: &ProcessSandbox,
        config: &ContainerConfig,
        mapping: Option<&ImageCommand>,
    ) -> Result<(Vec<String>, Bundle)> {
        let dir = self.root.join("containers").join(id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| backend(format!("create bundle {}", dir.display()), e))?;
        let mut bundle = Bundle {
            dir,
            cgroups_path: format!("{}/{id}", self.cgroup_parent),
            overlay: false,
        };
        match self.write_bundle(&mut bundle, sandbox, config, mapping) {
            Ok(()) => Ok((self.run_argv(&bundle.dir, id), bundle)),
            Err(e) => {
                remove(&bundle);
                Err(e)
            }
        }
    }

    fn write_bundle(
        &self,
        bundle: &mut Bundle,
        sandbox: &ProcessSandbox,
        config: &ContainerConfig,
        mapping: Option<&ImageCommand>,
    ) -> Result<()> {
        let image = self.image(&config.image);
        let (rootfs, files, process) = match &image {
            Some(unpacked) => {
                let rootfs = bundle.dir.join("rootfs");
                mount_overlay(&unpacked.rootfs, &bundle.dir)?;
                bundle.overlay = true;
                (rootfs, unpacked.rootfs.clone(), unpacked.process.clone())
            }
            None => {
                let process = ImageProcess {
                    working_dir: Some(sandbox.dir.to_string_lossy().into_owned()),
                    ..Default::default()
                };
                let rootfs = bundle.dir.join("rootfs");
                std::fs::create_dir_all(&rootfs)
                    .map_err(|e| backend(format!("create {}", rootfs.display()), e))?;
                (rootfs, PathBuf::from("/"), process)
            }
        };
        let args = match (mapping, &image) {
            (Some(m), _) => m.argv(&config.command, &config.args),
            (None, Some(_)) => spec::argv(&process, config),
            (None, None) => config.command.iter().chain(&config.args).cloned().collect(),
        };
        let user = user::resolve(
            process.user.as_deref(),
            &config.security,
            &RootfsFiles::new(vec![files]),
        )?;
        let netns = sandbox
            .netns
            .as_deref()
            .ok_or_else(|| Error::InvalidState {
                id: sandbox.status.id.clone(),
                message: "the sandbox has no network namespace".into(),
            })?;
        let resolv_conf = sandbox
            .config
            .dns_config
            .is_some()
            .then(|| sandbox.dir.join(super::RESOLV_CONF));
        let mut spec = spec::build(
            config,
            &SpecInputs {
                image: &process,
                args: &args,
                rootfs: &rootfs,
                hostname: &sandbox.config.hostname,
                netns,
                cgroups_path: &bundle.cgroups_path,
                resolv_conf: resolv_conf.as_deref(),
                user: &user,
            },
        )?;
        if image.is_none() {
            // The host's files, bound first (in the container's own mount namespace, so
            // nothing of it reaches the host's) and read-only all the way down; they are
            // never the container's to change. Its pod directory is writable.
            spec["root"]["readonly"] = json!(true);
            if let Some(mounts) = spec["mounts"].as_array_mut() {
                mounts.insert(
                    0,
                    json!({
                        "destination": "/",
                        "type": "bind",
                        "source": "/",
                        "options": ["rbind", "rro", "rprivate"],
                    }),
                );
                mounts.push(json!({
                    "destination": sandbox.dir,
                    "type": "bind",
                    "source": sandbox.dir,
                    "options": ["rbind", "rprivate", "rw"],
                }));
            }
        }
        let path = bundle.dir.join("config.json");
        let data =
            serde_json::to_vec_pretty(&spec).map_err(|e| backend("encode the OCI spec", e))?;
        std::fs::write(&path, data).map_err(|e| backend(format!("write {}", path.display()), e))
    }
}

/// The mount points at or under `path` (from `/proc/self/mountinfo`), outermost first.
pub(crate) fn mounts_under(path: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(path))
        .collect()
}

/// A mountinfo field with its octal escapes (`\040` for a space) decoded.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(code) = field
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(code);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mounts an overlay of `lower` at `dir/rootfs`, writing to `dir/upper`.
fn mount_overlay(lower: &Path, dir: &Path) -> Result<()> {
    let (upper, work, rootfs) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
    for d in [&upper, &work, &rootfs] {
        std::fs::create_dir_all(d).map_err(|e| backend(format!("create {}", d.display()), e))?;
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    nix::mount::mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| {
        backend(
            format!(
                "mount an overlay of {} on {}",
                lower.display(),
                rootfs.display()
            ),
            e,
        )
    })
}

/// Removes a bundle: its overlay, then its directory.
pub(crate) fn remove(bundle: &Bundle) {
    if bundle.overlay {
        let rootfs = bundle.dir.join("rootfs");
        match nix::mount::umount2(&rootfs, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            Err(e) => {
                tracing::warn!(rootfs = %rootfs.display(), error = %e, "unmounting a container's root filesystem failed");
                // Its files are the image's: never remove through a mount.
                return;
            }
        }
    }
    if let Err(e) = std::fs::remove_dir_all(&bundle.dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        debug!(bundle = %bundle.dir.display(), error = %e, "removing a bundle failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_decode() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
