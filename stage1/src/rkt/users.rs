//! App user and group resolution (contract §5.4): `root` or a number as is, a path → the
//! owner of that file in the app's rootfs, a name → the app's own `/etc/passwd` or
//! `/etc/group` (no NSS). Files of the app are read without following symlinks, since the
//! rootfs is untrusted.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Which database a name is looked up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    /// `/etc/passwd` (users).
    Passwd,
    /// `/etc/group` (groups).
    Group,
}

/// Resolves `spec` for an app whose rootfs is `rootfs`.
pub fn resolve(spec: &str, rootfs: &Path, db: Db) -> Result<u32, String> {
    if spec.is_empty() || spec == "root" {
        return Ok(0);
    }
    if let Ok(id) = spec.parse::<u32>() {
        return Ok(id);
    }
    if let Some(relative) = spec.strip_prefix('/') {
        let path = rootfs.join(relative);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("{spec}: {e}"))?;
        return Ok(if db == Db::Passwd {
            meta.uid()
        } else {
            meta.gid()
        });
    }
    let file = if db == Db::Passwd {
        "etc/passwd"
    } else {
        "etc/group"
    };
    let path = rootfs.join(file);
    let mut text = String::new();
    File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| format!("looking up {spec:?} in /{file}: {e}"))?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&spec))
        .and_then(|fields| fields.get(2)?.parse().ok())
        .ok_or_else(|| format!("{spec:?} not found in /{file}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_numbers_names_and_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nuser1:x:1000:100::/home:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\ngroup1:x:100:\n").unwrap();
        assert_eq!(resolve("", dir.path(), Db::Passwd), Ok(0));
        assert_eq!(resolve("root", dir.path(), Db::Passwd), Ok(0));
        assert_eq!(resolve("42", dir.path(), Db::Group), Ok(42));
        assert_eq!(resolve("user1", dir.path(), Db::Passwd), Ok(1000));
        assert_eq!(resolve("group1", dir.path(), Db::Group), Ok(100));
        assert_eq!(resolve("/etc/passwd", dir.path(), Db::Passwd), Ok(0));
        assert!(resolve("nobody", dir.path(), Db::Passwd)
            .unwrap_err()
            .contains("not found"));
    }

    #[test]
    fn a_passwd_symlink_out_of_the_rootfs_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("etc/passwd")).unwrap();
        assert!(resolve("root2", dir.path(), Db::Passwd).is_err());
        assert!(resolve("daemon", dir.path(), Db::Passwd)
            .unwrap_err()
            .contains("looking up"));
    }
}
