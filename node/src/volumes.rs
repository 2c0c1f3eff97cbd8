//! Pod volumes, as upstream's volume manager sets them up before any container starts:
//! each volume that needs a directory gets `<root>/pods/<uid>/volumes/kubernetes.io~<plugin>/<name>`,
//! API-data volumes (`configMap`, `secret`, `downwardAPI`, `projected`) are written there
//! with the atomic writer and rewritten on every resync when their source changed, and
//! `hostPath` and `persistentVolumeClaim` volumes are checked and used where they are.
//! Container `volumeMounts` become the runtime's bind [`Mount`]s. The pod directory goes
//! when the pod is removed.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, HostPathVolumeSource, PersistentVolume, PersistentVolumeClaim,
    ProjectedVolumeSource, Volume,
};
use kube::Api;
use kybernetes_core::quantity::parse_milli;
use kybernetes_runtime::Mount;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::atomic_writer::{self, FileProjection, Payload, validate_path};
use crate::env::EnvInputs;
use crate::events::EventType;
use crate::pod_worker::{Next, PodWorker};
use crate::volume_payload::{
    DEFAULT_MODE, ObjectReader, config_map_payload, downward_api_payload, secret_payload,
    service_account_token,
};

/// A set-up volume: where it is on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VolumePath {
    pub(crate) host: PathBuf,
    /// API-data volumes are always mounted read-only, as upstream's.
    pub(crate) readonly: bool,
}

/// A pod's set-up volumes by name.
pub(crate) type PodVolumes = HashMap<String, VolumePath>;

/// A cached bound token of a `serviceAccountToken` projection.
#[derive(Clone, Debug)]
pub(crate) struct CachedToken {
    token: String,
    /// Upstream's token manager refreshes at 80% of the token's life.
    refresh_at: Instant,
}

/// `<root>/pods/<uid>`.
pub(crate) fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

fn plugin_dir(root: &Path, uid: &str, plugin: &str, name: &str) -> PathBuf {
    pod_dir(root, uid)
        .join("volumes")
        .join(format!("kubernetes.io~{plugin}"))
        .join(name)
}

/// Whether the volume's files come from the API and so change on resync.
fn is_api_data(v: &Volume) -> bool {
    v.config_map.is_some()
        || v.secret.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
}

/// The mount points under `dir` (from `/proc/self/mountinfo`), deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Mounts a tmpfs on `dir` (root only), with `size` if the volume has a `sizeLimit`.
fn mount_tmpfs(dir: &Path, size_bytes: Option<i128>) -> Result<(), String> {
    if !mounts_under(dir).iter().any(|m| m == dir) {
        let data = match size_bytes {
            Some(b) => format!("mode=0777,size={b}"),
            None => "mode=0777".to_string(),
        };
        let data = std::ffi::CString::new(data).map_err(|e| e.to_string())?;
        rustix::mount::mount(
            "tmpfs",
            dir,
            "tmpfs",
            rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
            data.as_c_str(),
        )
        .map_err(|e| format!("mount tmpfs on {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Unmounts whatever is mounted under `dir` and removes it.
pub(crate) fn remove_volume_dir(dir: &Path) -> io::Result<()> {
    for m in mounts_under(dir) {
        rustix::mount::unmount(&m, rustix::mount::UnmountFlags::DETACH)
            .map_err(|e| io::Error::other(format!("unmount {}: {e}", m.display())))?;
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Creates `dir` (and its parents) with `mode`.
fn make_dir(dir: &Path, mode: u32) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", dir.display()))
}

fn memory_backed(dir: &Path, size_limit: Option<i128>) -> Result<(), String> {
    if rustix::process::geteuid().is_root() {
        mount_tmpfs(dir, size_limit)
    } else {
        warn!(dir = %dir.display(), "not root: a memory-medium volume is a plain directory");
        Ok(())
    }
}

/// `hostPath` type checks (upstream `checkType`), creating what the `*OrCreate` types ask for.
fn check_host_path(path: &str, kind: Option<&str>) -> Result<(), String> {
    let p = Path::new(path);
    let meta = std::fs::metadata(p);
    let fail = |what: &str| {
        Err(format!(
            "hostPath type check failed: {path} is not a {what}"
        ))
    };
    match kind.unwrap_or("") {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if meta.is_err() {
                return make_dir(p, 0o755);
            }
            if meta.is_ok_and(|m| m.is_dir()) {
                Ok(())
            } else {
                fail("directory")
            }
        }
        "Directory" => {
            if meta.is_ok_and(|m| m.is_dir()) {
                Ok(())
            } else {
                fail("directory")
            }
        }
        "FileOrCreate" => {
            if meta.is_err() {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .and_then(|_| {
                        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644))
                    })
                    .map_err(|e| format!("hostPath type check failed: {path}: {e}"))?;
                return Ok(());
            }
            if meta.is_ok_and(|m| m.is_file()) {
                Ok(())
            } else {
                fail("file")
            }
        }
        "File" => {
            if meta.is_ok_and(|m| m.is_file()) {
                Ok(())
            } else {
                fail("file")
            }
        }
        "Socket" => {
            if meta.is_ok_and(|m| m.file_type().is_socket()) {
                Ok(())
            } else {
                fail("socket file")
            }
        }
        "CharDevice" => {
            if meta.is_ok_and(|m| m.file_type().is_char_device()) {
                Ok(())
            } else {
                fail("character device")
            }
        }
        "BlockDevice" => {
            if meta.is_ok_and(|m| m.file_type().is_block_device()) {
                Ok(())
            } else {
                fail("block device")
            }
        }
        other => Err(format!("invalid HostPathType {other}")),
    }
}

impl PodWorker {
    fn volumes_spec(&self) -> Vec<Volume> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default()
    }

    /// Sets up (or refreshes) every volume of the pod. The first time, a volume that fails
    /// holds the pod in `ContainerCreating` with a `FailedMount` event and leaves nothing of
    /// itself behind; once the pod runs, a failed refresh keeps the old files, as upstream.
    pub(crate) async fn mount_volumes(&mut self) -> Result<(), Next> {
        let first = self.volumes.is_none();
        let mut paths = self.volumes.clone().unwrap_or_default();
        let mut failed = false;
        for volume in self.volumes_spec() {
            if !first && !is_api_data(&volume) && paths.contains_key(&volume.name) {
                continue;
            }
            match self.set_up_volume(&volume).await {
                Ok(path) => {
                    paths.insert(volume.name.clone(), path);
                }
                Err(message) => {
                    failed = true;
                    warn!(volume = %volume.name, %message, "volume set-up failed");
                    self.ctx.recorder.pod(
                        &self.pod,
                        None,
                        EventType::Warning,
                        "FailedMount",
                        format!(
                            "MountVolume.SetUp failed for volume \"{}\" : {message}",
                            volume.name
                        ),
                    );
                }
            }
        }
        if failed && first {
            let now = self.ctx.now();
            let delay = self.backoff.next("volumes", now, now);
            let delay = delay.min(self.ctx.config.backoff.initial);
            return Err(Next::WakeAt(Instant::now() + delay));
        }
        if !failed {
            self.backoff.reset("volumes");
        }
        self.volumes = Some(paths);
        Ok(())
    }

    /// When API-data volumes are next refreshed (upstream's periodic pod resync).
    pub(crate) fn volume_resync(&self) -> Next {
        if self.volumes_spec().iter().any(is_api_data) {
            Next::WakeAt(Instant::now() + self.ctx.config.volume_resync_interval)
        } else {
            Next::Idle
        }
    }

    /// Sets up one volume; on failure removes what this attempt created.
    async fn set_up_volume(&mut self, v: &Volume) -> Result<VolumePath, String> {
        let root = self.ctx.root_dir.clone();
        let dir_for = |plugin: &str| plugin_dir(&root, &self.uid, plugin, &v.name);
        if let Some(h) = &v.host_path {
            return host_path(h).map(|host| VolumePath {
                host,
                readonly: false,
            });
        }
        if let Some(c) = &v.persistent_volume_claim {
            let host = self.claim_path(&c.claim_name).await?;
            return Ok(VolumePath {
                host,
                readonly: c.read_only.unwrap_or(false),
            });
        }
        let (dir, plugin) = if v.empty_dir.is_some() {
            (dir_for("empty-dir"), "empty-dir")
        } else if v.config_map.is_some() {
            (dir_for("configmap"), "configmap")
        } else if v.secret.is_some() {
            (dir_for("secret"), "secret")
        } else if v.downward_api.is_some() {
            (dir_for("downward-api"), "downward-api")
        } else if v.projected.is_some() {
            (dir_for("projected"), "projected")
        } else {
            return Err("no volume plugin matched".into());
        };
        let existed = dir.exists();
        let result = self.fill_volume(v, &dir).await;
        if result.is_err()
            && !existed
            && let Err(e) = remove_volume_dir(&dir)
        {
            warn!(volume = %v.name, error = %e, "removing a half-made volume failed");
        }
        result?;
        if let Some((group, on_root_mismatch)) = crate::volume_ownership::fs_group(&self.pod) {
            crate::volume_ownership::set_volume_ownership(
                &dir,
                group,
                plugin != "empty-dir",
                on_root_mismatch,
            )
            .map_err(|e| format!("set fsGroup {group} on {}: {e}", dir.display()))?;
        }
        debug!(volume = %v.name, plugin, dir = %dir.display(), "volume set up");
        Ok(VolumePath {
            host: dir,
            readonly: plugin != "empty-dir",
        })
    }

    async fn fill_volume(&mut self, v: &Volume, dir: &Path) -> Result<(), String> {
        if let Some(e) = &v.empty_dir {
            return empty_dir(e, dir);
        }
        let namespace = self
            .pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let client = self.ctx.client.clone();
        let reader = ObjectReader {
            client: &client,
            namespace: &namespace,
        };
        let mut payload = Payload::new();
        if let Some(c) = &v.config_map {
            let optional = c.optional.unwrap_or(false);
            config_map_payload(
                &reader,
                &c.name,
                c.items.as_deref(),
                c.default_mode.unwrap_or(DEFAULT_MODE),
                optional,
                &mut payload,
            )
            .await?;
        } else if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            secret_payload(
                &reader,
                &name,
                s.items.as_deref(),
                s.default_mode.unwrap_or(DEFAULT_MODE),
                s.optional.unwrap_or(false),
                &mut payload,
            )
            .await?;
        } else if let Some(d) = &v.downward_api {
            let inputs = self.downward_inputs();
            let Some(inputs) = inputs.as_ref().map(|(c, ip)| EnvInputs {
                pod: &self.pod,
                container: c,
                pod_ip: None,
                host_ip: *ip,
                allocatable_milli: self.ctx.allocatable_milli,
            }) else {
                return Err("the pod has no containers".into());
            };
            downward_api_payload(
                &inputs,
                d.items.as_deref().unwrap_or_default(),
                d.default_mode.unwrap_or(DEFAULT_MODE),
                &mut payload,
            )?;
        } else if let Some(p) = &v.projected {
            self.projected_payload(&v.name, p, &reader, &mut payload)
                .await?;
        }
        let memory = v.secret.is_some();
        if !dir.exists() {
            make_dir(dir, 0o755)?;
        }
        if memory {
            // Secrets never touch the disk, as upstream's secret volumes are tmpfs.
            memory_backed(dir, None)?;
        }
        atomic_writer::write(dir, &payload)
            .map(|changed| {
                if changed {
                    debug!(volume = %v.name, files = payload.len(), "volume files written");
                }
            })
            .map_err(|e| format!("write volume files in {}: {e}", dir.display()))
    }

    fn downward_inputs(&self) -> Option<(Container, std::net::IpAddr)> {
        let c = self.pod.spec.as_ref()?.containers.first()?.clone();
        Some((c, self.ctx.node_ip))
    }

    async fn projected_payload(
        &mut self,
        volume: &str,
        p: &ProjectedVolumeSource,
        reader: &ObjectReader<'_>,
        payload: &mut Payload,
    ) -> Result<(), String> {
        let default_mode = p.default_mode.unwrap_or(DEFAULT_MODE);
        for source in p.sources.iter().flatten() {
            if let Some(c) = &source.config_map {
                config_map_payload(
                    reader,
                    &c.name,
                    c.items.as_deref(),
                    default_mode,
                    c.optional.unwrap_or(false),
                    payload,
                )
                .await?;
            }
            if let Some(s) = &source.secret {
                secret_payload(
                    reader,
                    &s.name,
                    s.items.as_deref(),
                    default_mode,
                    s.optional.unwrap_or(false),
                    payload,
                )
                .await?;
            }
            if let Some(d) = &source.downward_api {
                let Some((c, ip)) = self.downward_inputs() else {
                    return Err("the pod has no containers".into());
                };
                let inputs = EnvInputs {
                    pod: &self.pod,
                    container: &c,
                    pod_ip: None,
                    host_ip: ip,
                    allocatable_milli: self.ctx.allocatable_milli,
                };
                downward_api_payload(
                    &inputs,
                    d.items.as_deref().unwrap_or_default(),
                    default_mode,
                    payload,
                )?;
            }
            if let Some(t) = &source.service_account_token {
                let key = format!("{volume}/{}", t.path);
                let cached = self
                    .tokens
                    .get(&key)
                    .filter(|c| c.refresh_at > Instant::now())
                    .map(|c| c.token.clone());
                let token = match cached {
                    Some(t) => t,
                    None => {
                        let token = service_account_token(&self.ctx.client, &self.pod, t).await?;
                        let life = t.expiration_seconds.unwrap_or(3600).max(600) as u64;
                        self.tokens.insert(
                            key,
                            CachedToken {
                                token: token.clone(),
                                refresh_at: Instant::now() + Duration::from_secs(life * 4 / 5),
                            },
                        );
                        token
                    }
                };
                payload.insert(
                    t.path.clone(),
                    FileProjection {
                        data: token.into_bytes(),
                        mode: u32::try_from(default_mode).unwrap_or(0o644),
                    },
                );
            }
        }
        Ok(())
    }

    /// The host directory of a bound claim's `hostPath` or `local` PersistentVolume.
    async fn claim_path(&self, claim: &str) -> Result<PathBuf, String> {
        let namespace = self.pod.metadata.namespace.as_deref().unwrap_or("default");
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(self.ctx.client.clone(), namespace);
        let pvc = claims
            .get_opt(claim)
            .await
            .map_err(|e| format!("failed to fetch PVC {namespace}/{claim}: {e}"))?
            .ok_or_else(|| {
                format!(
                    "error processing PVC {namespace}/{claim}: failed to fetch PVC from API server: persistentvolumeclaims \"{claim}\" not found"
                )
            })?;
        let phase = pvc
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let volume_name = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        if phase != "Bound" || volume_name.is_empty() {
            return Err(format!(
                "error processing PVC {namespace}/{claim}: PVC is not bound (phase {phase:?}, volumeName {volume_name:?})"
            ));
        }
        let volumes: Api<PersistentVolume> = Api::all(self.ctx.client.clone());
        let pv = volumes
            .get_opt(&volume_name)
            .await
            .map_err(|e| format!("failed to fetch PV {volume_name}: {e}"))?
            .ok_or_else(|| format!("persistentvolumes \"{volume_name}\" not found"))?;
        let spec = pv.spec.unwrap_or_default();
        if let Some(h) = &spec.host_path {
            host_path(h)
        } else if let Some(l) = &spec.local {
            check_host_path(&l.path, Some("Directory"))?;
            Ok(PathBuf::from(&l.path))
        } else {
            Err(format!(
                "PersistentVolume {volume_name} is neither hostPath nor local; this node mounts only those"
            ))
        }
    }

    /// The runtime mounts of a container's `volumeMounts`. A `subPath` is resolved now, so
    /// later updates of the volume do not reach it, as upstream.
    pub(crate) fn container_mounts(&self, spec: &Container) -> Result<Vec<Mount>, String> {
        let volumes = self.volumes.clone().unwrap_or_default();
        let mut out = Vec::new();
        for vm in spec.volume_mounts.iter().flatten() {
            let Some(vol) = volumes.get(&vm.name) else {
                return Err(format!(
                    "cannot find volume \"{}\" to mount into container \"{}\"",
                    vm.name, spec.name
                ));
            };
            let mut host = vol.host.clone();
            if let Some(sub) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
                let prepare = || -> Result<PathBuf, String> {
                    validate_path(sub)?;
                    let full = vol.host.join(sub);
                    if std::fs::symlink_metadata(&full).is_err() {
                        if vol.readonly {
                            return Err(format!("{} does not exist", full.display()));
                        }
                        make_dir(&full, 0o755)?;
                    }
                    let base = vol.host.canonicalize().map_err(|e| e.to_string())?;
                    let real = full.canonicalize().map_err(|e| e.to_string())?;
                    if !real.starts_with(&base) {
                        return Err(format!(
                            "subpath {:?} not within volume path {:?}",
                            real.display().to_string(),
                            base.display().to_string()
                        ));
                    }
                    Ok(real)
                };
                host = prepare().map_err(|e| {
                    format!(
                        "failed to prepare subPath for volumeMount \"{}\" of container \"{}\": {e}",
                        vm.name, spec.name
                    )
                })?;
            }
            out.push(Mount {
                container_path: PathBuf::from(&vm.mount_path),
                host_path: host,
                readonly: vm.read_only.unwrap_or(false) || vol.readonly,
            });
        }
        Ok(out)
    }

    /// Removes the pod's directory (unmounting its memory-backed volumes first).
    pub(crate) fn tear_down_volumes(&mut self) {
        let dir = pod_dir(&self.ctx.root_dir, &self.uid);
        if let Err(e) = remove_volume_dir(&dir) {
            warn!(dir = %dir.display(), error = %e, "removing the pod directory failed");
        }
        self.volumes = None;
        self.tokens.clear();
    }
}

fn host_path(h: &HostPathVolumeSource) -> Result<PathBuf, String> {
    check_host_path(&h.path, h.type_.as_deref())?;
    Ok(PathBuf::from(&h.path))
}

fn empty_dir(e: &EmptyDirVolumeSource, dir: &Path) -> Result<(), String> {
    make_dir(dir, 0o777)?;
    if e.medium.as_deref() == Some("Memory") {
        let size = e
            .size_limit
            .as_ref()
            .and_then(|q| parse_milli(&q.0))
            .map(|m| (m + 999) / 1000);
        memory_backed(dir, size)?;
    }
    Ok(())
}

/// Removes the directories of pods this node no longer runs.
pub(crate) fn remove_orphaned_pod_dirs(root: &Path, known: &std::collections::HashSet<String>) {
    let Ok(entries) = std::fs::read_dir(root.join("pods")) else {
        return;
    };
    for entry in entries.flatten() {
        let uid = entry.file_name().to_string_lossy().into_owned();
        if known.contains(&uid) {
            continue;
        }
        debug!(pod_uid = %uid, "removing an orphaned pod directory");
        if let Err(e) = remove_volume_dir(&entry.path()) {
            warn!(pod_uid = %uid, error = %e, "removing an orphaned pod directory failed");
        }
    }
}
