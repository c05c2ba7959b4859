//! What a share is (tag, host directory, flags), how it is checked before anything is
//! served, and the device's configuration space.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::error::FsError;

/// Length of the tag field in the configuration space (virtio 1.2 §5.11.4).
pub const TAG_LEN: usize = 36;
/// Size of the configuration space: the tag, then `num_request_queues` (u32 LE).
pub const CONFIG_SPACE_LEN: usize = TAG_LEN + 4;

/// One share: a host directory the guest mounts with `mount -t virtiofs TAG /path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsConfig {
    /// The tag the guest mounts it by: 1 to 36 bytes of printable ASCII, no spaces.
    pub tag: String,
    /// The host directory. Nothing above it is reachable from the guest.
    pub root: PathBuf,
    /// Refuse every write (`EROFS`); the guest should mount it read-only too.
    pub read_only: bool,
    /// Let the guest create character and block device nodes (refused with `EPERM`
    /// otherwise). The host never opens device nodes of a share either way.
    pub allow_devices: bool,
}

impl FsConfig {
    /// A read-write share without device nodes.
    pub fn new(tag: impl Into<String>, root: impl Into<PathBuf>) -> Self {
        Self {
            tag: tag.into(),
            root: root.into(),
            read_only: false,
            allow_devices: false,
        }
    }

    /// Checks the tag and the directory; returns the directory's canonical path.
    pub(super) fn validate(&self) -> Result<PathBuf, FsError> {
        check_tag(&self.tag)?;
        check_root(&self.root)
    }
}

fn check_tag(tag: &str) -> Result<(), FsError> {
    let reason = if tag.is_empty() {
        "empty"
    } else if tag.len() > TAG_LEN {
        "longer than 36 bytes"
    } else if !tag.bytes().all(|b| b.is_ascii_graphic()) {
        "only printable ASCII without spaces is allowed"
    } else {
        return Ok(());
    };
    Err(FsError::InvalidTag {
        tag: tag.to_owned(),
        reason,
    })
}

fn check_root(root: &Path) -> Result<PathBuf, FsError> {
    let canonical = root.canonicalize().map_err(|source| FsError::Root {
        root: root.to_owned(),
        source,
    })?;
    let metadata = canonical.metadata().map_err(|source| FsError::Root {
        root: root.to_owned(),
        source,
    })?;
    if !metadata.is_dir() {
        return Err(FsError::RootNotDirectory {
            root: root.to_owned(),
        });
    }
    if canonical == Path::new("/") {
        return Err(FsError::RootIsHostRoot {
            root: root.to_owned(),
        });
    }
    Ok(canonical)
}

/// `TAG=HOSTDIR[:ro|:rw]`, as the developer CLI's `--share` takes it.
impl FromStr for FsConfig {
    type Err = FsError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| FsError::InvalidSpec {
            spec: spec.to_owned(),
            reason,
        };
        let (tag, rest) = spec.split_once('=').ok_or_else(|| invalid("no '='"))?;
        let (dir, read_only) = if let Some(dir) = rest.strip_suffix(":ro") {
            (dir, true)
        } else {
            (rest.strip_suffix(":rw").unwrap_or(rest), false)
        };
        if dir.is_empty() {
            return Err(invalid("no host directory"));
        }
        check_tag(tag)?;
        Ok(Self {
            read_only,
            ..Self::new(tag, dir)
        })
    }
}

/// The configuration space: the tag, NUL-padded, and the number of request queues.
pub(super) fn config_space(tag: &str, request_queues: u32) -> [u8; CONFIG_SPACE_LEN] {
    let mut space = [0u8; CONFIG_SPACE_LEN];
    let tag = tag.as_bytes();
    let n = tag.len().min(TAG_LEN);
    space[..n].copy_from_slice(&tag[..n]);
    space[TAG_LEN..].copy_from_slice(&request_queues.to_le_bytes());
    space
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        check_tag("apps").unwrap();
        check_tag(&"x".repeat(36)).unwrap();
        for bad in ["", &"x".repeat(37), "a b", "a\0b", "é", "tab\t"] {
            assert!(
                matches!(check_tag(bad), Err(FsError::InvalidTag { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn roots() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(
            check_root(dir.path()).unwrap(),
            dir.path().canonicalize().unwrap()
        );
        let missing = dir.path().join("missing");
        let e = check_root(&missing).unwrap_err();
        assert!(
            matches!(&e, FsError::Root { source, .. } if source.raw_os_error() == Some(libc::ENOENT))
        );
        assert!(
            e.to_string().contains(&missing.display().to_string()),
            "{e}"
        );
        let e = check_root(&file).unwrap_err();
        assert!(matches!(e, FsError::RootNotDirectory { .. }));
        assert!(e.to_string().ends_with("not a directory"), "{e}");
        assert!(matches!(
            check_root(Path::new("/")),
            Err(FsError::RootIsHostRoot { .. })
        ));
        // A symlink to a directory is resolved on the host, once, at start-up.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        assert_eq!(
            check_root(&link).unwrap(),
            dir.path().canonicalize().unwrap()
        );
    }

    #[test]
    fn specs() {
        let c: FsConfig = "apps=/var/lib/x".parse().unwrap();
        assert_eq!(c, FsConfig::new("apps", "/var/lib/x"));
        let c: FsConfig = "vol=/a:b:ro".parse().unwrap();
        assert_eq!((c.root.as_path(), c.read_only), (Path::new("/a:b"), true));
        let c: FsConfig = "vol=/a:rw".parse().unwrap();
        assert_eq!((c.root.as_path(), c.read_only), (Path::new("/a"), false));
        for bad in ["apps", "=/x", "apps=", "apps=:ro", "a b=/x"] {
            assert!(bad.parse::<FsConfig>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_space_layout() {
        let space = config_space("myfs", 1);
        assert_eq!(&space[..4], b"myfs");
        assert!(space[4..TAG_LEN].iter().all(|&b| b == 0));
        assert_eq!(&space[TAG_LEN..], &1u32.to_le_bytes());
        let full = config_space(&"t".repeat(36), 2);
        assert!(full[..TAG_LEN].iter().all(|&b| b == b't'));
    }
}
