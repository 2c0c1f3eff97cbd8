//! A pod's `fsGroup` applied to its volumes, as upstream's `SetVolumeOwnership`: every file
//! and directory under the volume gets the group, group read/write (read only for a
//! read-only volume), directories group execute and setgid (so new files inherit the group).
//! `fsGroupChangePolicy: OnRootMismatch` skips the walk when the volume root already fits.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// The pod's `fsGroup` and whether its change policy is `OnRootMismatch`.
pub(crate) fn fs_group(pod: &Pod) -> Option<(u32, bool)> {
    let sc = pod.spec.as_ref()?.security_context.as_ref()?;
    let group = u32::try_from(sc.fs_group?).ok()?;
    let on_root_mismatch = sc.fs_group_change_policy.as_deref() == Some("OnRootMismatch");
    Some((group, on_root_mismatch))
}

/// Gives everything under `dir` group `group`, as upstream does for volumes that support
/// ownership management.
pub(crate) fn set_volume_ownership(
    dir: &Path,
    group: u32,
    readonly: bool,
    on_root_mismatch: bool,
) -> io::Result<()> {
    if on_root_mismatch && !needs_change(dir, group, readonly)? {
        return Ok(());
    }
    walk(dir, group, readonly)
}

/// Whether the volume root lacks the group or the mode bits `fsGroup` gives.
fn needs_change(dir: &Path, group: u32, readonly: bool) -> io::Result<bool> {
    let meta = std::fs::metadata(dir)?;
    let want = if readonly { RO_MASK } else { RW_MASK } | EXEC_MASK | SETGID;
    Ok(meta.gid() != group || meta.mode() & want != want)
}

fn walk(path: &Path, group: u32, readonly: bool) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    std::os::unix::fs::lchown(path, None, Some(group))?;
    // A symlink's own mode means nothing; what it points to is walked on its own (inside
    // the volume) or is none of the volume's business.
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mut mask = if readonly { RO_MASK } else { RW_MASK };
    if meta.is_dir() {
        mask |= SETGID | EXEC_MASK;
    }
    let mode = meta.mode() & 0o7777;
    if mode | mask != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | mask))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            walk(&entry?.path(), group, readonly)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_and_its_bits_reach_every_file_and_directory() {
        let dir = tempfile::tempdir().expect("tmp");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("sub");
        std::fs::write(sub.join("f"), "x").expect("file");
        std::fs::set_permissions(sub.join("f"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        std::os::unix::fs::symlink("sub/f", dir.path().join("link")).expect("symlink");
        set_volume_ownership(dir.path(), 2000, false, false).expect("ownership (as root)");
        let file = std::fs::metadata(sub.join("f")).expect("meta");
        assert_eq!(file.gid(), 2000);
        assert_eq!(file.mode() & 0o7777, 0o660);
        let d = std::fs::metadata(&sub).expect("meta");
        assert_eq!(d.mode() & 0o2070, 0o2070);
        assert!(!needs_change(dir.path(), 2000, false).expect("root"));
        assert!(needs_change(dir.path(), 3000, false).expect("root"));
    }
}
