//! Writing a volume's files the way upstream's `AtomicWriter` does, so that a container sees
//! either the old set of files or the new one, never a mix:
//!
//! ```text
//! <volume>/..2026_12_07_08_00_00.123456789/<path>   the files, with their modes
//! <volume>/..data -> ..2026_12_07_08_00_00.123456789
//! <volume>/<first path segment> -> ..data/<first path segment>
//! ```
//!
//! An update writes a new timestamped directory, points `..data_tmp` at it and renames that
//! over `..data` (one atomic `rename`), then fixes the user-visible links and removes the
//! old directory. A payload equal to what is there already writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path};

use chrono::Utc;

/// The link to the current timestamped directory.
const DATA_DIR: &str = "..data";
/// The link renamed over [`DATA_DIR`].
const DATA_DIR_TMP: &str = "..data_tmp";

/// One file of a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileProjection {
    pub(crate) data: Vec<u8>,
    pub(crate) mode: u32,
}

/// Files by relative path.
pub(crate) type Payload = BTreeMap<String, FileProjection>;

/// Checks a payload path as upstream's `validatePath`: relative, no `..` segment, not
/// starting with `..`.
pub(crate) fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("invalid path: must not be empty".into());
    }
    if path.starts_with("..") {
        return Err(format!("invalid path: must not start with '..': {path}"));
    }
    for c in Path::new(path).components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!("invalid path: must not contain '..': {path}"));
            }
            _ => return Err(format!("invalid path: must be relative path: {path}")),
        }
    }
    Ok(())
}

/// Whether the files under `..data` are exactly `payload`.
fn unchanged(dir: &Path, payload: &Payload) -> bool {
    let data = dir.join(DATA_DIR);
    if !data.exists() {
        return false;
    }
    let mut found = BTreeSet::new();
    if collect_files(&data, &data, &mut found).is_err() {
        return false;
    }
    if found.len() != payload.len() || payload.keys().any(|k| !found.contains(k)) {
        return false;
    }
    payload.iter().all(|(path, f)| {
        let p = data.join(path);
        let same_mode = std::fs::metadata(&p)
            .map(|m| m.permissions().mode() & 0o7777 == f.mode & 0o7777)
            .unwrap_or(false);
        same_mode && std::fs::read(&p).is_ok_and(|d| d == f.data)
    })
}

fn collect_files(root: &Path, dir: &Path, out: &mut BTreeSet<String>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.insert(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// The first segment of each payload path: the names linked from the volume's top level.
fn top_level(payload: &Payload) -> BTreeSet<String> {
    payload
        .keys()
        .filter_map(|p| {
            Path::new(p).components().find_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
        })
        .collect()
}

/// Makes `dir` hold exactly `payload`. Returns whether anything was written.
pub(crate) fn write(dir: &Path, payload: &Payload) -> io::Result<bool> {
    for path in payload.keys() {
        validate_path(path).map_err(io::Error::other)?;
    }
    if unchanged(dir, payload) {
        return Ok(false);
    }
    let data_link = dir.join(DATA_DIR);
    // No data link yet is the first write; anything else unreadable is an error to report.
    let old_ts = match std::fs::read_link(&data_link) {
        Ok(target) => Some(target),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mut old_top = BTreeSet::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") {
            old_top.insert(name);
        }
    }

    let ts_name = format!("..{}", Utc::now().format("%Y_%m_%d_%H_%M_%S.%f"));
    let ts_dir = dir.join(&ts_name);
    std::fs::create_dir(&ts_dir)?;
    std::fs::set_permissions(&ts_dir, std::fs::Permissions::from_mode(0o755))?;
    let filled = (|| {
        for (path, f) in payload {
            let target = ts_dir.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&target, &f.data)?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(f.mode & 0o7777))?;
        }
        let tmp = dir.join(DATA_DIR_TMP);
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        symlink(&ts_name, &tmp)?;
        std::fs::rename(&tmp, &data_link)
    })();
    if let Err(e) = filled {
        // Leave the old payload in place and nothing of the new one. The write's own error is
        // the one to return; a failed clean-up only leaves an unlinked directory behind.
        if let Err(cleanup) = std::fs::remove_dir_all(&ts_dir) {
            tracing::warn!(dir = %ts_dir.display(), error = %cleanup, "could not remove a half-written volume payload");
        }
        return Err(e);
    }
    let new_top = top_level(payload);
    for name in &new_top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_DIR).join(name), &link)?;
        }
    }
    for name in old_top.difference(&new_top) {
        std::fs::remove_file(dir.join(name))?;
    }
    if let Some(old) = old_ts.filter(|o| o.as_os_str() != ts_name.as_str()) {
        std::fs::remove_dir_all(dir.join(old))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(s: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: s.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn an_update_swaps_the_data_link_and_drops_old_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = Payload::new();
        p.insert("a".into(), file("1", 0o644));
        p.insert("sub/b".into(), file("2", 0o400));
        assert!(write(dir.path(), &p).expect("write"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a")).expect("a"),
            "1"
        );
        let b = dir.path().join("sub/b");
        assert_eq!(std::fs::read_to_string(&b).expect("b"), "2");
        let mode = std::fs::metadata(&b).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o400);
        assert!(
            !write(dir.path(), &p).expect("rewrite"),
            "same payload writes nothing"
        );
        let first = std::fs::read_link(dir.path().join("..data")).expect("link");

        let mut q = Payload::new();
        q.insert("a".into(), file("3", 0o644));
        assert!(write(dir.path(), &q).expect("update"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a")).expect("a"),
            "3"
        );
        assert!(std::fs::symlink_metadata(dir.path().join("sub")).is_err());
        assert!(
            !dir.path().join(&first).exists(),
            "old timestamped dir removed"
        );
    }

    #[test]
    fn paths_escaping_the_volume_are_refused() {
        for bad in ["../x", "/etc/x", "a/../../x", "..x"] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
        assert!(validate_path("a/b.txt").is_ok());
    }
}
