//! Rendering image trees into a pod: overlay mounts of the tree store (the default) or
//! full copies (`--no-overlay`), plus the small files stage0 adds (contract §2.1 steps
//! 2–3 and §3.2; rkt `stage0/run.go` `prepareOverlay`, `overlayRender`,
//! `ensureMtabExists`, `fileutil.CopyTree`).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::AtFlags;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, Gid, Uid};

use crate::error::{Context, Error, Result};

/// rkt's `common.DefaultRegularDirPerm`.
pub const DIR_PERM: u32 = 0o750;

/// The directories and options of one overlay mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayMount {
    /// Lower layer: the tree store rootfs.
    pub lower: PathBuf,
    /// Upper layer under `$pod/overlay/<treeStoreID>/upper[/<app>]`.
    pub upper: PathBuf,
    /// Work dir under `$pod/overlay/<treeStoreID>/work[/<app>]`.
    pub work: PathBuf,
    /// Mount point (`<dest>/rootfs`).
    pub dest: PathBuf,
}

/// Escapes `:` and `,` in overlay option paths (rkt `common/overlay` `sanitize`).
fn sanitize(p: &Path) -> String {
    p.to_string_lossy().replace(':', "\\:").replace(',', "\\,")
}

impl OverlayMount {
    /// The mount options (`lowerdir=…,upperdir=…,workdir=…`).
    pub fn options(&self) -> String {
        format!(
            "lowerdir={},upperdir={},workdir={}",
            sanitize(&self.lower),
            sanitize(&self.upper),
            sanitize(&self.work)
        )
    }

    /// Mounts it (in minirkt's mount namespace, normally the host's: the mounts persist
    /// after the pod exits until gc, contract §3.2).
    pub fn mount(&self) -> Result<()> {
        mount(
            Some("overlay"),
            &self.dest,
            Some("overlay"),
            MsFlags::empty(),
            Some(self.options().as_str()),
        )
        .map_err(|e| {
            Error::Other(format!(
                "error mounting overlay with options '{}' and dest '{}': {e}",
                self.options(),
                self.dest.display()
            ))
        })
    }
}

fn mkdir_all(path: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .ctx("creating directory", path)
}

/// rkt `prepareOverlay`: creates `<dest>/rootfs` (with the lower layer's mode),
/// `$pod/overlay` (0750, chmod'ed to drop an inherited setgid bit),
/// `$pod/overlay/<treeStoreID>` (0750, group `rkt` when that group exists),
/// `upper[/<app>]` (lower's mode) and `work[/<app>]` (0750). `app` is empty for stage1.
pub fn prepare_overlay(
    lower: &Path,
    tree_store_id: &str,
    pod_dir: &Path,
    dest: &Path,
    app: &str,
    rkt_gid: Option<u32>,
) -> Result<OverlayMount> {
    let img_mode = fs::metadata(lower).ctx("inspecting", lower)?.mode() & 0o7777;
    let dst = dest.join("rootfs");
    mkdir_all(&dst, img_mode)?;
    let overlay_dir = pod_dir.join("overlay");
    mkdir_all(&overlay_dir, DIR_PERM)?;
    fs::set_permissions(&overlay_dir, fs::Permissions::from_mode(DIR_PERM))
        .ctx("changing mode of", &overlay_dir)?;
    let img_dir = overlay_dir.join(tree_store_id);
    mkdir_all(&img_dir, DIR_PERM)?;
    if let Some(gid) = rkt_gid {
        nix::unistd::chown(&img_dir, None, Some(Gid::from_raw(gid))).ctx("chgrp", &img_dir)?;
    }
    let mut upper = img_dir.join("upper");
    let mut work = img_dir.join("work");
    if !app.is_empty() {
        upper.push(app);
        work.push(app);
    }
    mkdir_all(&upper, img_mode)?;
    mkdir_all(&work, DIR_PERM)?;
    Ok(OverlayMount {
        lower: lower.to_path_buf(),
        upper,
        work,
        dest: dst,
    })
}

/// The gid of group `rkt`, if it exists (rkt `common.LookupGid(common.RktGroup)`).
pub fn rkt_gid() -> Option<u32> {
    nix::unistd::Group::from_name("rkt")
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

/// rkt `ensureMtabExists`: if the image has an `/etc` directory and no `etc/mtab`,
/// creates the symlink `etc/mtab -> ../proc/self/mounts` (contract §2.1 step 3).
pub fn ensure_mtab(rootfs: &Path) -> Result<()> {
    let etc = rootfs.join("etc");
    match fs::metadata(&etc) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Error::io(
                "error determining if /etc existed in the image",
                &etc,
                e,
            ))
        }
        Ok(m) if !m.is_dir() => return Ok(()),
        Ok(_) => {}
    }
    let mtab = etc.join("mtab");
    match fs::symlink_metadata(&mtab) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::os::unix::fs::symlink("../proc/self/mounts", &mtab)
                .ctx("error creating mtab symlink", &mtab)
        }
        Err(e) => Err(Error::io(
            "error determining if /etc/mtab exists in the image",
            &mtab,
            e,
        )),
    }
}

/// Copies the tree `src` to `dst` keeping modes (with setuid/setgid/sticky bits),
/// numeric ownership, modification times, symlinks and device nodes (rkt
/// `fileutil.CopyTree`, used for `--no-overlay` stage1 rendering).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(src).ctx("inspecting", src)?;
    let ft = meta.file_type();
    if ft.is_dir() {
        match fs::create_dir(dst) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("creating directory", dst, e)),
        }
        let mut children: Vec<_> = fs::read_dir(src)
            .ctx("reading directory", src)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .ctx("reading directory", src)?;
        children.sort();
        for child in children {
            copy_tree(&src.join(&child), &dst.join(&child))?;
        }
    } else if ft.is_symlink() {
        let target = fs::read_link(src).ctx("reading link", src)?;
        std::os::unix::fs::symlink(&target, dst).ctx("creating symlink", dst)?;
    } else if ft.is_file() {
        fs::copy(src, dst).ctx("copying to", dst)?;
    } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
        let kind = if ft.is_char_device() {
            SFlag::S_IFCHR
        } else if ft.is_block_device() {
            SFlag::S_IFBLK
        } else {
            SFlag::S_IFIFO
        };
        mknod(
            dst,
            kind,
            Mode::from_bits_truncate(meta.mode() & 0o7777),
            meta.rdev(),
        )
        .ctx("creating device node", dst)?;
    } else {
        // Sockets: rkt's CopyTree fails with "unsupported mode" too.
        return Err(Error::Other(format!(
            "unsupported file type: {}",
            src.display()
        )));
    }
    // Ownership first (chown clears setuid/setgid), then mode, then times.
    fchownat(
        None,
        dst,
        Some(Uid::from_raw(meta.uid())),
        Some(Gid::from_raw(meta.gid())),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .ctx("changing owner of", dst)?;
    if !ft.is_symlink() {
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .ctx("changing mode of", dst)?;
    }
    let atime = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    utimensat(None, dst, &atime, &mtime, UtimensatFlags::NoFollowSymlink)
        .ctx("setting times of", dst)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_options_escape_separators() {
        let m = OverlayMount {
            lower: "/a:b".into(),
            upper: "/u,v".into(),
            work: "/w".into(),
            dest: "/d".into(),
        };
        assert_eq!(m.options(), "lowerdir=/a\\:b,upperdir=/u\\,v,workdir=/w");
    }
}
