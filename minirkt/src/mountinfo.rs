//! Mounts of this process's mount namespace (`/proc/self/mountinfo`), and removing every
//! mount under a directory the way rkt's `common.ChrootPrivateUnmount` does before it
//! deletes a pod (contract §2.3: "stage0 unmounts everything under `$pod`").

use std::fs;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{Context, Error, Result};

/// One line of mountinfo (the fields minirkt needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Mount point (unescaped).
    pub mount_point: PathBuf,
    /// Filesystem type.
    pub fs_type: String,
    /// Whether the mount has shared propagation (`shared:N` among optional fields).
    pub shared: bool,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = &bytes[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text.
pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let mount_point = PathBuf::from(unescape(fields.get(4)?));
            let shared = fields.iter().skip(6).any(|f| f.starts_with("shared:"));
            let fs_type = right.split(' ').next()?.to_string();
            Some(MountInfo {
                mount_point,
                fs_type,
                shared,
            })
        })
        .collect()
}

/// The mounts of this process's namespace.
pub fn mounts() -> Result<Vec<MountInfo>> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(path).ctx("reading", path)?;
    Ok(parse(&text))
}

/// Mounts at or below `dir`, deepest (longest path) first.
pub fn mounts_under(dir: &Path) -> Result<Vec<MountInfo>> {
    let mut found: Vec<MountInfo> = mounts()?
        .into_iter()
        .filter(|m| m.mount_point.starts_with(dir))
        .collect();
    found.sort_by(|a, b| {
        b.mount_point
            .components()
            .count()
            .cmp(&a.mount_point.components().count())
            .then_with(|| b.mount_point.cmp(&a.mount_point))
    });
    found.dedup_by(|a, b| a.mount_point == b.mount_point && a.fs_type == b.fs_type);
    Ok(found)
}

/// Whether something is mounted exactly at `path`.
pub fn is_mount_point(path: &Path) -> Result<bool> {
    Ok(mounts()?.iter().any(|m| m.mount_point == path))
}

/// Unmounts everything at or below `dir`: shared mounts are made private first (so the
/// unmount does not propagate to peers), then children are unmounted before parents; a
/// busy mount is lazily detached (rkt `ChrootPrivateUnmount`). Stacked mounts on one
/// point are all removed.
pub fn unmount_all_under(dir: &Path) -> Result<()> {
    // A mount point can carry several stacked mounts; loop until none is left, bounded.
    for _ in 0..64 {
        let found = mounts_under(dir)?;
        if found.is_empty() {
            return Ok(());
        }
        for m in found.iter().rev() {
            if m.shared {
                // Failure only means the propagation stays; the unmount below still runs.
                let _ = mount(
                    None::<&str>,
                    &m.mount_point,
                    None::<&str>,
                    MsFlags::MS_PRIVATE | MsFlags::MS_REC,
                    None::<&str>,
                );
            }
        }
        for m in &found {
            match umount2(&m.mount_point, MntFlags::UMOUNT_NOFOLLOW) {
                Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
                Err(Errno::EBUSY) => {
                    eprintln!(
                        "mount {:?} is busy, marking for lazy detach",
                        m.mount_point.display()
                    );
                    umount2(
                        &m.mount_point,
                        MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW,
                    )
                    .ctx("detaching", &m.mount_point)?;
                }
                Err(e) => return Err(Error::sys("unmounting", &m.mount_point, e)),
            }
        }
    }
    Err(Error::Other(format!(
        "mounts under {} keep coming back",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo() {
        let text = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 0:30 / /var/lib/x/pods/run/u/stage1/rootfs rw shared:5 - overlay overlay rw,lowerdir=a\n";
        let m = parse(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt/with space"));
        assert!(!m[0].shared);
        assert_eq!(m[1].fs_type, "overlay");
        assert!(m[1].shared);
    }
}
