//! The guest's basic file systems, mounted once at start.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::Path;

use nix::mount::{mount, MsFlags};

/// One mount the agent makes.
struct Mount {
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
}

const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);
const NOSUID_NODEV_NOEXEC: MsFlags = NOSUID_NODEV.union(MsFlags::MS_NOEXEC);

/// In order: a target must exist in a file system mounted before it.
const MOUNTS: &[Mount] = &[
    Mount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    Mount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    Mount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
    },
    Mount {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    },
    Mount {
        source: "shm",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=1777"),
    },
    Mount {
        source: "run",
        target: "/run",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=0755"),
    },
    Mount {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: Some("nsdelegate"),
    },
];

/// The usual `/dev` links that devtmpfs does not provide.
const DEV_LINKS: &[(&str, &str)] = &[
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
];

/// A failed mount, naming what it was.
#[derive(Debug)]
pub struct MountError {
    what: String,
    source: io::Error,
}

impl std::fmt::Display for MountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

/// Mounts every file system in [`MOUNTS`] and creates the `/dev` links.
pub fn mount_all() -> Result<(), MountError> {
    for m in MOUNTS {
        let what = || format!("mounting {} ({}) on {}", m.source, m.fstype, m.target);
        fs::create_dir_all(m.target).map_err(|source| MountError {
            what: what(),
            source,
        })?;
        mount(Some(m.source), m.target, Some(m.fstype), m.flags, m.data).map_err(|errno| {
            MountError {
                what: what(),
                source: errno.into(),
            }
        })?;
    }
    for (target, link) in DEV_LINKS {
        // devtmpfs has a ptmx node of its own; replace it with the link into our devpts
        // instance so that every pty comes from the one instance apps see.
        if Path::new(link).exists() || fs::symlink_metadata(link).is_ok() {
            fs::remove_file(link).map_err(|source| MountError {
                what: format!("removing {link}"),
                source,
            })?;
        }
        symlink(target, link).map_err(|source| MountError {
            what: format!("linking {link} to {target}"),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mount_target_is_inside_an_earlier_mount_or_the_initramfs() {
        // The initramfs ships these top-level directories (see mkinitramfs).
        let initramfs_dirs = ["/dev", "/proc", "/sys", "/run", "/tmp"];
        for (i, m) in MOUNTS.iter().enumerate() {
            let parent = Path::new(m.target).parent().unwrap();
            let provided = parent == Path::new("/")
                || MOUNTS[..i]
                    .iter()
                    .any(|earlier| parent.starts_with(earlier.target));
            assert!(provided, "{} needs its parent mounted first", m.target);
            if parent == Path::new("/") {
                assert!(
                    initramfs_dirs.contains(&m.target),
                    "{} missing from initramfs",
                    m.target
                );
            }
        }
    }
}
