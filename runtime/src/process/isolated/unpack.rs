//! Unpacking an image's layers into one directory, in order, as the OCI image spec's
//! "applying changesets" says: each layer's files land over the ones below; a `.wh.NAME`
//! entry deletes `NAME` from the layers below, and `.wh..wh..opq` in a directory hides
//! everything the layers below put there. Layers may be gzip-compressed.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::oci::backend;
use crate::{Error, Result};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Applies the layer `data` (a tar, or a gzip-compressed one) over `root`.
pub(super) fn apply_layer(root: &Path, data: &[u8]) -> Result<()> {
    let reader: Box<dyn Read + '_> = if data.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(data))
    } else {
        Box::new(data)
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    // Ownership is applied by `own`, which accepts headers that leave the ids blank.
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    // Paths this layer wrote: an opaque directory hides only what the layers below put in it.
    let mut written: HashSet<PathBuf> = HashSet::new();
    let entries = archive
        .entries()
        .map_err(|e| backend("reading an image layer", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| backend("reading an image layer entry", e))?;
        let path = entry
            .path()
            .map_err(|e| backend("reading an image layer path", e))?
            .into_owned();
        let Some(relative) = clean(&path) else {
            return Err(Error::Backend {
                context: format!(
                    "image layer entry {} leaves the root filesystem",
                    path.display()
                ),
                source: None,
            });
        };
        let name = relative
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = relative.parent().unwrap_or(Path::new("")).to_path_buf();
        if name == OPAQUE {
            hide_below(root, &parent, &written)?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            remove_any(&root.join(&parent).join(hidden))?;
            continue;
        }
        let target = root.join(&relative);
        // A file replaces a directory of the layers below, and the other way round.
        if let Ok(meta) = std::fs::symlink_metadata(&target) {
            let is_dir = entry.header().entry_type().is_dir();
            if meta.is_dir() != is_dir || (!is_dir && !meta.is_file()) {
                remove_any(&target)?;
            }
        }
        let unpacked = entry
            .unpack_in(root)
            .map_err(|e| backend(format!("unpacking {}", relative.display()), e))?;
        if !unpacked {
            return Err(Error::Backend {
                context: format!(
                    "image layer entry {} leaves the root filesystem",
                    relative.display()
                ),
                source: None,
            });
        }
        own(&target, entry.header())?;
        written.insert(relative);
    }
    Ok(())
}

/// Gives `path` the owner its header names (root when the header leaves it blank), then
/// its mode again, since a change of owner clears the set-id bits.
fn own(path: &Path, header: &tar::Header) -> Result<()> {
    let (Ok(uid), Ok(gid)) = (header.uid(), header.gid()) else {
        return Ok(());
    };
    let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
        return Ok(());
    };
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| backend(format!("chown {}", path.display()), e))?;
    let symlink = header.entry_type().is_symlink();
    if let (false, Ok(mode)) = (symlink, header.mode()) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| backend(format!("chmod {}", path.display()), e))?;
    }
    Ok(())
}

/// `path` relative, without `.` parts; `None` if it climbs out with `..`.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Removes what the layers below put in `dir` (everything this layer did not write).
fn hide_below(root: &Path, dir: &Path, written: &HashSet<PathBuf>) -> Result<()> {
    let full = root.join(dir);
    let entries = match std::fs::read_dir(&full) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(backend(format!("listing {}", full.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| backend(format!("listing {}", full.display()), e))?;
        let relative = dir.join(entry.file_name());
        if !written.contains(&relative) {
            remove_any(&entry.path())?;
        }
    }
    Ok(())
}

/// Removes a file, link or directory tree; one that is not there is fine.
fn remove_any(path: &Path) -> Result<()> {
    let removed = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    };
    removed.map_err(|e| backend(format!("removing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, content) in entries {
            let mut h = tar::Header::new_gnu();
            match content {
                Some(text) => {
                    h.set_mode(0o644);
                    h.set_size(text.len() as u64);
                    b.append_data(&mut h, path, text.as_bytes()).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    b.append_data(&mut h, path, std::io::empty()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn layers_apply_in_order_with_whiteouts_and_opaque_directories() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        apply_layer(
            r,
            &layer(&[
                ("etc/", None),
                ("etc/a", Some("1")),
                ("etc/b", Some("1")),
                ("var/", None),
                ("var/old", Some("1")),
            ]),
        )
        .unwrap();
        apply_layer(
            r,
            &layer(&[
                ("etc/a", Some("2")),
                ("etc/.wh.b", Some("")),
                ("var/new", Some("2")),
                ("var/.wh..wh..opq", Some("")),
            ]),
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(r.join("etc/a")).unwrap(), "2");
        assert!(!r.join("etc/b").exists());
        assert!(!r.join("var/old").exists(), "opaque hides the lower layer");
        assert_eq!(std::fs::read_to_string(r.join("var/new")).unwrap(), "2");
    }

    #[test]
    fn an_entry_that_climbs_out_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..5].copy_from_slice(b"../x\0");
        h.set_mode(0o644);
        h.set_size(1);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b"x"[..]).unwrap();
        let err = apply_layer(root.path(), &b.into_inner().unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("leaves the root filesystem"),
            "{err}"
        );
    }
}
