//! A container's Linux security settings, as CRI's `LinuxContainerSecurityContext`: what the
//! node agent derives from the pod's and the container's `securityContext` (the container's
//! fields win) and every backend applies as far as it can.

/// The user, groups, capabilities and filesystem rules a container runs with.
///
/// Everything here is already merged: `run_as_user` is the container's `runAsUser`, else the
/// pod's; `supplemental_groups` holds the pod's `fsGroup` and `supplementalGroups`. An unset
/// user means the image's (`USER` in its config), root if the image names none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerSecurity {
    /// The numeric user to run as, overriding the image's.
    pub run_as_user: Option<i64>,
    /// The primary group to run as; without `run_as_user` a backend that follows containerd
    /// refuses it (`user group "N" is specified without user`).
    pub run_as_group: Option<i64>,
    /// Further groups, after the ones the image's `/etc/group` gives the user.
    pub supplemental_groups: Vec<i64>,
    /// Mount the root filesystem read-only (`readOnlyRootFilesystem`).
    pub readonly_rootfs: bool,
    /// Every capability, every host device, no masked paths (`privileged`).
    pub privileged: bool,
    /// Capabilities to add to the runtime's default set, as Kubernetes spells them
    /// (`NET_ADMIN`, or `ALL`).
    pub add_capabilities: Vec<String>,
    /// Capabilities to drop from it (`NET_RAW`, or `ALL`).
    pub drop_capabilities: Vec<String>,
    /// Set the `no_new_privs` bit (`allowPrivilegeEscalation: false`).
    pub no_new_privs: bool,
}

impl ContainerSecurity {
    /// Whether nothing is asked beyond the runtime's defaults.
    pub fn is_default(&self) -> bool {
        self == &ContainerSecurity::default()
    }
}

/// The user an image's config names (`USER` in a Dockerfile), as CRI's `ImageStatus`
/// reports it: a numeric uid, or a user name the image's `/etc/passwd` must resolve. The
/// group part (`uid:gid`) does not count. Both are empty when the image names no user.
///
/// ```
/// use kybernetes_runtime::security::image_user;
/// assert_eq!(image_user("1000:1000"), (Some(1000), None));
/// assert_eq!(image_user("nobody"), (None, Some("nobody".to_string())));
/// assert_eq!(image_user(""), (None, None));
/// ```
pub fn image_user(user: &str) -> (Option<i64>, Option<String>) {
    let name = user.split(':').next().unwrap_or("");
    if name.is_empty() {
        return (None, None);
    }
    match name.parse::<i64>() {
        Ok(uid) => (Some(uid), None),
        Err(_) => (None, Some(name.to_string())),
    }
}
