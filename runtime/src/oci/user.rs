//! The user a container's process runs as, resolved as containerd's CRI plugin does
//! (`oci.WithUser`, `WithAdditionalGIDs`, `WithSupplementalGroups`): the user string comes
//! from `runAsUser[:runAsGroup]`, else the image's `USER`; names are looked up in the image's
//! `/etc/passwd` and `/etc/group`, read from the container's prepared root filesystem; the
//! groups are the ones `/etc/group` lists the user in, the primary group, and the pod's
//! supplemental groups, sorted without repeats.

use std::path::{Path, PathBuf};

use crate::security::ContainerSecurity;
use crate::{Error, Result};

/// The `process.user` of an OCI spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProcessUser {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) additional_gids: Vec<u32>,
}

/// Files of a container's root filesystem, read through its layers without mounting them
/// (for a containerd snapshot: a bind mount's source, or an overlay's upper then lower
/// directories, top first).
pub(crate) struct RootfsFiles {
    layers: Vec<PathBuf>,
}

impl RootfsFiles {
    /// The files of the root filesystem whose layers are `layers`, top first (one
    /// directory for a root filesystem that is already one tree).
    pub(crate) fn new(layers: Vec<PathBuf>) -> RootfsFiles {
        RootfsFiles { layers }
    }

    /// The text of `path` (absolute in the container), `None` if no layer has it (or the top
    /// one that does deletes it with an overlay whiteout).
    fn read(&self, path: &str) -> Result<Option<String>> {
        use std::os::unix::fs::FileTypeExt;
        let relative = path.trim_start_matches('/');
        for layer in &self.layers {
            let file = layer.join(relative);
            match std::fs::symlink_metadata(&file) {
                Ok(meta) if meta.file_type().is_char_device() => return Ok(None),
                Ok(_) => {
                    return read_text(&file).map(Some);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(read_error(&file, e)),
            }
        }
        Ok(None)
    }
}

fn read_text(file: &Path) -> Result<String> {
    std::fs::read(file)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| read_error(file, e))
}

fn read_error(file: &Path, e: std::io::Error) -> Error {
    Error::Backend {
        context: format!("read {} of the container's root filesystem", file.display()),
        source: Some(Box::new(e)),
    }
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// The entries of a passwd file (`name:x:uid:gid:…`); malformed lines are skipped, as libc
/// skips them.
fn passwd_entries(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            Some(PasswdEntry {
                name: fields.first()?.to_string(),
                uid: fields.get(2)?.parse().ok()?,
                gid: fields.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

/// The entries of a group file (`name:x:gid:member,member`).
fn group_entries(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            Some(GroupEntry {
                name: fields.first()?.to_string(),
                gid: fields.get(2)?.parse().ok()?,
                members: fields
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The image's `/etc/passwd` and `/etc/group`, read once.
struct Accounts {
    passwd: Option<Vec<PasswdEntry>>,
    group: Option<Vec<GroupEntry>>,
}

impl Accounts {
    fn read(files: &RootfsFiles) -> Result<Accounts> {
        Ok(Accounts {
            passwd: files.read("/etc/passwd")?.as_deref().map(passwd_entries),
            group: files.read("/etc/group")?.as_deref().map(group_entries),
        })
    }

    fn user_named(&self, name: &str) -> Result<&PasswdEntry> {
        let Some(passwd) = &self.passwd else {
            return Err(no_such(format!(
                "unable to find user {name}: the image has no /etc/passwd"
            )));
        };
        passwd.iter().find(|u| u.name == name).ok_or_else(|| {
            no_such(format!(
                "unable to find user {name}: no matching entries in passwd file"
            ))
        })
    }

    fn group_named(&self, name: &str) -> Result<u32> {
        let Some(group) = &self.group else {
            return Err(no_such(format!(
                "unable to find group {name}: the image has no /etc/group"
            )));
        };
        group
            .iter()
            .find(|g| g.name == name)
            .map(|g| g.gid)
            .ok_or_else(|| {
                no_such(format!(
                    "unable to find group {name}: no matching entries in group file"
                ))
            })
    }

    /// `oci.WithUser`: `uid`, `name`, `uid:gid`, `name:group`, … A numeric user without a
    /// passwd entry runs with group 0.
    fn uid_gid(&self, userstr: &str) -> Result<(u32, u32)> {
        let parts: Vec<&str> = userstr.split(':').collect();
        match parts.as_slice() {
            [user] => match user.parse::<u32>() {
                Ok(uid) => {
                    let gid = self
                        .passwd
                        .iter()
                        .flatten()
                        .find(|u| u.uid == uid)
                        .map(|u| u.gid)
                        .unwrap_or(0);
                    Ok((uid, gid))
                }
                Err(_) => {
                    let u = self.user_named(user)?;
                    Ok((u.uid, u.gid))
                }
            },
            [user, group] => {
                let uid = match user.parse::<u32>() {
                    Ok(uid) => uid,
                    Err(_) => self.user_named(user)?.uid,
                };
                let gid = match group.parse::<u32>() {
                    Ok(gid) => gid,
                    Err(_) => self.group_named(group)?,
                };
                Ok((uid, gid))
            }
            _ => Err(no_such(format!("invalid USER value {userstr}"))),
        }
    }

    /// `WithAdditionalGIDs`: the groups `/etc/group` lists the user in (a user with no
    /// passwd entry has none).
    fn member_gids(&self, user: &str) -> Vec<u32> {
        let name = match user.parse::<u32>() {
            Ok(uid) => match self.passwd.iter().flatten().find(|u| u.uid == uid) {
                Some(u) => u.name.clone(),
                None => return Vec::new(),
            },
            Err(_) => user.to_string(),
        };
        self.group
            .iter()
            .flatten()
            .filter(|g| g.name != name && g.members.contains(&name))
            .map(|g| g.gid)
            .collect()
    }
}

fn no_such(context: String) -> Error {
    Error::Backend {
        context,
        source: None,
    }
}

/// A Kubernetes id (an `int64`) as the `uint32` the kernel takes.
fn id(value: i64, what: &str) -> Result<u32> {
    u32::try_from(value).map_err(|_| no_such(format!("{what} {value} is not a valid id")))
}

/// The process user of a container of an image whose config names `image_user`, under
/// `security`, with the account files of its root filesystem `files`.
pub(crate) fn resolve(
    image_user: Option<&str>,
    security: &ContainerSecurity,
    files: &RootfsFiles,
) -> Result<ProcessUser> {
    let image_user = image_user.filter(|u| !u.is_empty());
    let userstr = match (security.run_as_user, security.run_as_group) {
        (Some(uid), Some(gid)) => Some(format!("{}:{}", id(uid, "uid")?, id(gid, "gid")?)),
        (Some(uid), None) => Some(id(uid, "uid")?.to_string()),
        (None, Some(gid)) => {
            return Err(no_such(format!(
                "user group \"{gid}\" is specified without user"
            )));
        }
        (None, None) => image_user.map(str::to_string),
    };
    let accounts = Accounts::read(files)?;
    let (uid, gid) = match &userstr {
        Some(u) => accounts.uid_gid(u)?,
        None => (0, 0),
    };
    let user_part = match (security.run_as_user, image_user) {
        (Some(uid), _) => uid.to_string(),
        (None, Some(u)) => u.split(':').next().unwrap_or(u).to_string(),
        (None, None) => "0".to_string(),
    };
    let mut gids = accounts.member_gids(&user_part);
    gids.push(gid);
    for g in &security.supplemental_groups {
        gids.push(id(*g, "supplemental group")?);
    }
    gids.sort_unstable();
    gids.dedup();
    Ok(ProcessUser {
        uid,
        gid,
        additional_gids: gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\napp:x:1234:\nstaff:x:50:app,other\n";

    fn rootfs(passwd: Option<&str>, group: Option<&str>) -> (tempfile::TempDir, RootfsFiles) {
        let dir = tempfile::tempdir().expect("tmp");
        let lower = dir.path().join("lower");
        let upper = dir.path().join("upper");
        std::fs::create_dir_all(lower.join("etc")).expect("lower");
        std::fs::create_dir_all(upper.join("etc")).expect("upper");
        if let Some(p) = passwd {
            std::fs::write(lower.join("etc/passwd"), p).expect("passwd");
        }
        if let Some(g) = group {
            std::fs::write(lower.join("etc/group"), g).expect("group");
        }
        // Upper first, as a snapshot's overlay lists its layers.
        let files = RootfsFiles::new(vec![upper, lower]);
        (dir, files)
    }

    #[test]
    fn an_image_user_name_resolves_through_passwd_and_group() {
        let (_dir, files) = rootfs(Some(PASSWD), Some(GROUP));
        let user = resolve(Some("app"), &ContainerSecurity::default(), &files).expect("app");
        assert_eq!(
            user,
            ProcessUser {
                uid: 1234,
                gid: 1234,
                additional_gids: vec![50, 1234]
            }
        );
    }

    #[test]
    fn run_as_user_and_group_win_over_the_image_and_groups_merge() {
        let (_dir, files) = rootfs(Some(PASSWD), Some(GROUP));
        let security = ContainerSecurity {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            supplemental_groups: vec![4000, 3000],
            ..Default::default()
        };
        let user = resolve(Some("app"), &security, &files).expect("resolve");
        assert_eq!(
            user,
            ProcessUser {
                uid: 1000,
                gid: 3000,
                additional_gids: vec![3000, 4000]
            }
        );
        // A numeric user with no passwd entry has group 0.
        let security = ContainerSecurity {
            run_as_user: Some(1000),
            ..Default::default()
        };
        assert_eq!(resolve(None, &security, &files).expect("uid").gid, 0);
    }

    #[test]
    fn unknown_names_and_a_group_without_user_are_refused() {
        let (_dir, files) = rootfs(Some(PASSWD), None);
        let err =
            resolve(Some("nobody"), &ContainerSecurity::default(), &files).expect_err("no nobody");
        assert!(
            err.to_string().contains("unable to find user nobody"),
            "{err}"
        );
        let err = resolve(Some("app:wheel"), &ContainerSecurity::default(), &files)
            .expect_err("no group file");
        assert!(
            err.to_string().contains("unable to find group wheel"),
            "{err}"
        );
        let security = ContainerSecurity {
            run_as_group: Some(5),
            ..Default::default()
        };
        let err = resolve(None, &security, &files).expect_err("group alone");
        assert!(err.to_string().contains("specified without user"), "{err}");
    }
}
