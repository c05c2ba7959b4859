//! virtio-fs shares: mounted by tag at the paths the host names, read-only where the host
//! says so (the device refuses writes to a read-only share too; the read-only mount makes
//! the guest's view match and fail early with EROFS).
//!
//! The developer CLI names them on the kernel command line as
//! `stage1_kvm.share=TAG:/guest/path[:ro]` (one argument per share).

use std::fs;

use nix::mount::{mount, MsFlags};

/// Kernel command line key of a share.
const CMDLINE_KEY: &str = "stage1_kvm.share=";

/// One share to mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    /// The device's tag.
    pub tag: String,
    /// Absolute mount point in the guest.
    pub path: String,
    /// Mount read-only.
    pub read_only: bool,
}

/// The shares named on a kernel command line; malformed entries are errors.
pub fn from_cmdline(cmdline: &str) -> Result<Vec<Share>, String> {
    cmdline
        .split_whitespace()
        .filter_map(|arg| arg.strip_prefix(CMDLINE_KEY))
        .map(parse)
        .collect()
}

fn parse(spec: &str) -> Result<Share, String> {
    let mut parts = spec.split(':');
    let (Some(tag), Some(path)) = (parts.next(), parts.next()) else {
        return Err(format!("share {spec:?}: expected TAG:/path[:ro]"));
    };
    let read_only = match parts.next() {
        None => false,
        Some("ro") => true,
        Some(other) => return Err(format!("share {spec:?}: unknown option {other:?}")),
    };
    if parts.next().is_some() || tag.is_empty() || !path.starts_with('/') {
        return Err(format!("share {spec:?}: expected TAG:/path[:ro]"));
    }
    if path.split('/').any(|c| c == "." || c == "..") {
        // "/mnt/.." would mount the share over the guest's root.
        return Err(format!("share {spec:?}: the path has a . or .. component"));
    }
    Ok(Share {
        tag: tag.to_owned(),
        path: path.to_owned(),
        read_only,
    })
}

/// Mounts `share` (creating its mount point).
pub fn mount_share(share: &Share) -> Result<(), String> {
    let what = || format!("mounting share {} on {}", share.tag, share.path);
    fs::create_dir_all(&share.path).map_err(|e| format!("{}: {e}", what()))?;
    let mut flags = MsFlags::MS_NODEV;
    if share.read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    mount(
        Some(share.tag.as_str()),
        share.path.as_str(),
        Some("virtiofs"),
        flags,
        None::<&str>,
    )
    .map_err(|errno| format!("{}: {errno}", what()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_shares_and_ignores_other_arguments() {
        let shares = from_cmdline(
            "quiet stage1_kvm.share=data:/mnt/data stage1_kvm.share=apps:/opt/stage2:ro panic=-1",
        )
        .unwrap();
        assert_eq!(
            shares,
            [
                Share {
                    tag: "data".into(),
                    path: "/mnt/data".into(),
                    read_only: false
                },
                Share {
                    tag: "apps".into(),
                    path: "/opt/stage2".into(),
                    read_only: true
                },
            ]
        );
        assert!(from_cmdline("quiet").unwrap().is_empty());
    }

    #[test]
    fn malformed_shares_are_errors() {
        for bad in [
            "stage1_kvm.share=data",
            "stage1_kvm.share=:/x",
            "stage1_kvm.share=d:rel",
            "stage1_kvm.share=d:/x:rw",
            "stage1_kvm.share=d:/x:ro:extra",
            "stage1_kvm.share=d:/mnt/..",
            "stage1_kvm.share=d:/mnt/.",
            "stage1_kvm.share=d:/mnt/../etc",
        ] {
            assert!(from_cmdline(bad).is_err(), "{bad}");
        }
    }
}
