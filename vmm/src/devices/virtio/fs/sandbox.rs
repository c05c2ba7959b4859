//! The sandbox a share's worker thread lives in: the kernel, not the passthrough code,
//! keeps every file operation inside the share.
//!
//! [`enter`] turns the calling thread (and only it) into a thread whose whole view of the
//! host is:
//!
//! ```text
//! /                    tmpfs, read-only, nosuid, nodev, noexec, almost empty
//! /share               the share: a recursive bind of its directory, nosymfollow, nosuid,
//!                      nodev (and read-only for a read-only share, recursively)
//! /proc/self/fd        a bind of this thread's own fd directory (read-only)
//! /proc/self/mountinfo a bind of this thread's mountinfo (read-only)
//! ```
//!
//! and nothing else. It does so in this order:
//! 1. `unshare(CLONE_FILES | CLONE_FS | CLONE_NEWNS)`: a private descriptor table, root,
//!    working directory and umask (the passthrough sets `umask(0)`, which must not leak to
//!    the process), and a private copy of the mount table;
//! 2. closes every inherited descriptor except stdio and the ones it is told to keep, so
//!    `/proc/self/fd` inside the sandbox leads only to this share's files;
//! 3. makes every mount private (nothing it does propagates back to the host);
//! 4. clones the share's mount tree (`open_tree`) and restricts it (`mount_setattr`);
//! 5. builds the tmpfs root (mounted over the share's path, in this namespace only),
//!    attaches the share and the two `/proc` entries there (`move_mount`), makes it
//!    read-only;
//! 6. `pivot_root`s into it and detaches the old root: the host's file system above the
//!    share is no longer reachable by any path;
//! 7. checks that `/share` is the directory it was asked to serve;
//! 8. drops capabilities ([`super::caps`]) and sets `no_new_privs` (so the worker can be
//!    given a seccomp filter later without `CAP_SYS_ADMIN`).
//!
//! Why each layer: the passthrough resolves guest names one component at a time relative
//! to directory descriptors it holds, with `O_NOFOLLOW` — correct, but only as long as no
//! code path ever resolves a multi-component or absolute path, follows a symlink the guest
//! made, or climbs with `..`. Here, even if one did, `/` is the sandbox root (an absolute
//! symlink to `/etc/shadow` names nothing), `..` stops at it, `nosymfollow` makes the kernel
//! refuse to follow *any* symlink on the share (`ELOOP`; `readlink` still works), the
//! read-only flag is the kernel's (`EROFS`), and `/proc/self/fd` is this thread's table
//! only. The passthrough needs `/proc/self/fd` (to reopen its `O_PATH` descriptors and for
//! extended attributes) and `/proc/self/mountinfo` (read once when it is created), which is
//! why those two exist and nothing else of `/proc` does.
//!
//! Descriptor ownership after step 1: this thread has its own table. A descriptor created
//! before [`enter`] exists in both tables under the same number; one created by another
//! thread afterwards does not exist here at all. So an object that owns a descriptor must
//! be dropped by a thread of the table its descriptor lives in — see `worker.rs` for how
//! the worker keeps to that.
//!
//! Needs `CAP_SYS_ADMIN` (the stage1 runs as root) and Linux 5.12 (`mount_setattr`);
//! without either, creating the device fails rather than serving unconfined.

use std::ffi::{CStr, CString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use super::caps;

/// Where the share appears inside the sandbox (the passthrough's root directory).
pub(super) const SHARE_DIR: &str = "/share";

/// What to confine the calling thread to.
#[derive(Debug)]
pub(super) struct Spec<'a> {
    /// The share's directory on the host (absolute, canonical).
    pub root: &'a Path,
    /// Make the share read-only in the kernel's eyes too.
    pub read_only: bool,
    /// Keep `CAP_MKNOD` so the guest may create device nodes.
    pub allow_devices: bool,
    /// Descriptors (besides stdio) the thread keeps from the process's table.
    pub keep: &'a [RawFd],
}

/// A step of confining a worker thread to its share failed.
#[derive(Debug)]
pub struct SandboxError {
    /// What was being done.
    pub step: &'static str,
    /// Why it failed.
    pub source: io::Error,
}

impl fmt::Display for SandboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.source)
    }
}

impl std::error::Error for SandboxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

trait Step<T> {
    fn step(self, step: &'static str) -> Result<T, SandboxError>;
}

impl<T> Step<T> for io::Result<T> {
    fn step(self, step: &'static str) -> Result<T, SandboxError> {
        self.map_err(|source| SandboxError { step, source })
    }
}

impl<T> Step<T> for nix::Result<T> {
    fn step(self, step: &'static str) -> Result<T, SandboxError> {
        self.map_err(|errno| SandboxError {
            step,
            source: io::Error::from(errno),
        })
    }
}

/// Confines the calling thread to the share (see the module documentation). Irreversible:
/// call it on a thread of its own. On error the thread may be half-confined (its own
/// descriptor table and mount namespace but not yet pivoted) and must only exit.
pub(super) fn enter(spec: &Spec<'_>) -> Result<(), SandboxError> {
    nix::sched::unshare(CloneFlags::CLONE_FILES | CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS)
        .step("unsharing the descriptor table, fs attributes and mount namespace")?;
    close_inherited(spec.keep).step("closing descriptors inherited from the process")?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .step("making every mount private")?;

    let root = path_cstring(spec.root).step("reading the share path")?;
    let share = open(
        None,
        &root,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
    )
    .step("opening the share")?;
    let share_id = file_id(share.as_fd()).step("inspecting the share")?;

    let share_tree = clone_tree(share.as_fd(), true).step("cloning the share's mounts")?;
    let mut share_attrs =
        libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOSYMFOLLOW;
    if spec.read_only {
        share_attrs |= libc::MOUNT_ATTR_RDONLY;
    }
    set_mount_attrs(share_tree.as_fd(), share_attrs, true)
        .step("restricting the share's mounts (nosymfollow, nodev, nosuid, ro)")?;
    let proc_attrs = libc::MOUNT_ATTR_RDONLY
        | libc::MOUNT_ATTR_NOSUID
        | libc::MOUNT_ATTR_NODEV
        | libc::MOUNT_ATTR_NOEXEC;
    let fd_dir = open(
        None,
        c"/proc/thread-self/fd",
        libc::O_PATH | libc::O_DIRECTORY,
    )
    .and_then(|dir| clone_tree(dir.as_fd(), false))
    .step("cloning this thread's /proc fd directory")?;
    set_mount_attrs(fd_dir.as_fd(), proc_attrs, false).step("restricting the fd directory")?;
    let mountinfo = open(None, c"/proc/thread-self/mountinfo", libc::O_PATH)
        .and_then(|file| clone_tree(file.as_fd(), false))
        .step("cloning this thread's /proc mountinfo")?;
    set_mount_attrs(mountinfo.as_fd(), proc_attrs, false).step("restricting mountinfo")?;

    // The sandbox root is mounted over the share's own path: in this private namespace
    // that hides nothing from anyone else, and the path is one that surely exists.
    nix::mount::mount(
        Some("tmpfs"),
        fd_path(share.as_fd()).as_c_str(),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("size=16k,nr_inodes=16,mode=0755"),
    )
    .step("mounting the sandbox root")?;
    let sandbox = open(
        None,
        &root,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
    )
    .step("opening the sandbox root")?;
    check_is_tmpfs(sandbox.as_fd()).step("checking the sandbox root")?;

    let share_dir = mkdir(sandbox.as_fd(), c"share", 0o755).step("creating /share")?;
    let proc_dir = mkdir(sandbox.as_fd(), c"proc", 0o555).step("creating /proc")?;
    let self_dir = mkdir(proc_dir.as_fd(), c"self", 0o555).step("creating /proc/self")?;
    let fd_target = mkdir(self_dir.as_fd(), c"fd", 0o555).step("creating /proc/self/fd")?;
    let mountinfo_target =
        mkfile(self_dir.as_fd(), c"mountinfo").step("creating /proc/self/mountinfo")?;
    attach(share_tree.as_fd(), share_dir.as_fd()).step("attaching the share at /share")?;
    attach(fd_dir.as_fd(), fd_target.as_fd()).step("attaching /proc/self/fd")?;
    attach(mountinfo.as_fd(), mountinfo_target.as_fd()).step("attaching /proc/self/mountinfo")?;
    set_mount_attrs(sandbox.as_fd(), libc::MOUNT_ATTR_RDONLY, false)
        .step("making the sandbox root read-only")?;

    nix::unistd::fchdir(sandbox.as_raw_fd()).step("entering the sandbox root")?;
    nix::unistd::pivot_root(".", ".").step("pivoting into the sandbox root")?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH).step("detaching the host's root")?;
    nix::unistd::chdir("/").step("changing to the new root")?;

    let served = open(
        None,
        c"/share",
        libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
    )
    .and_then(|dir| file_id(dir.as_fd()))
    .step("opening /share inside the sandbox")?;
    if served != share_id {
        return Err(SandboxError {
            step: "checking that /share is the share",
            source: io::Error::other("a different directory is mounted at /share"),
        });
    }

    caps::restrict_thread(spec.allow_devices).step("dropping capabilities")?;
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) only sets a flag on this thread.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error()).step("setting no_new_privs");
    }
    Ok(())
}

/// `/proc/thread-self/fd/N` for a descriptor of the calling thread: a path that names
/// exactly what the descriptor refers to, without resolving any host path again.
fn fd_path(fd: BorrowedFd<'_>) -> CString {
    CString::new(format!("/proc/thread-self/fd/{}", fd.as_raw_fd()))
        .unwrap_or_else(|_| c"/nonexistent".to_owned())
}

fn path_cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn cvt(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn owned(rc: libc::c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(cvt(rc)?).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat(dir or AT_FDCWD, path, flags | O_CLOEXEC)`.
fn open(dir: Option<BorrowedFd<'_>>, path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: `path` is a valid NUL-terminated string for the call; openat does not
    // retain it.
    let rc = unsafe { libc::openat(dirfd, path.as_ptr(), flags | libc::O_CLOEXEC) };
    owned(libc::c_long::from(rc))
}

fn mkdir(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid NUL-terminated string for the call.
    let rc = unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) };
    cvt(libc::c_long::from(rc))?;
    open(
        Some(dir),
        name,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
    )
}

fn mkfile(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid NUL-terminated string for the call; the mode argument is
    // passed because O_CREAT is set.
    let rc = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            0o444,
        )
    };
    drop(owned(libc::c_long::from(rc))?);
    open(Some(dir), name, libc::O_PATH | libc::O_NOFOLLOW)
}

/// `open_tree(OPEN_TREE_CLONE)`: a detached copy of the mount at `fd` (and, recursively,
/// of the mounts below it).
fn clone_tree(fd: BorrowedFd<'_>, recursive: bool) -> io::Result<OwnedFd> {
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    flags |= u32::try_from(libc::AT_EMPTY_PATH).unwrap_or(0);
    if recursive {
        flags |= u32::try_from(libc::AT_RECURSIVE).unwrap_or(0);
    }
    // SAFETY: open_tree reads the empty path string and returns a new descriptor.
    let rc = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) };
    owned(rc)
}

/// `mount_setattr`: sets `attrs` on the mount at `fd` (and the mounts below it).
fn set_mount_attrs(fd: BorrowedFd<'_>, attrs: u64, recursive: bool) -> io::Result<()> {
    let mut flags = libc::AT_EMPTY_PATH;
    if recursive {
        flags |= libc::AT_RECURSIVE;
    }
    let attr = libc::mount_attr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads the empty path and `attr` (of the size passed), both
    // valid for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            std::ptr::from_ref(&attr),
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    cvt(rc).map(drop)
}

/// `move_mount`: attaches the detached mount `tree` on the directory (or file) `target`.
fn attach(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: move_mount reads the two empty paths, valid for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    cvt(rc).map(drop)
}

/// Device and inode of what `fd` refers to.
fn file_id(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(io::Error::from)?;
    Ok((st.st_dev, st.st_ino))
}

fn check_is_tmpfs(fd: BorrowedFd<'_>) -> io::Result<()> {
    let st = nix::sys::statfs::fstatfs(fd).map_err(io::Error::from)?;
    if st.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC {
        Ok(())
    } else {
        Err(io::Error::other("the freshly mounted root is not a tmpfs"))
    }
}

/// Closes every descriptor from 3 up except those in `keep`.
fn close_inherited(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|&fd| u32::try_from(fd).ok())
        .filter(|&fd| fd > 2)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first = 3u32;
    for fd in keep {
        if fd > first {
            close_range(first, fd - 1)?;
        }
        first = fd + 1;
    }
    close_range(first, u32::MAX)
}

fn close_range(first: u32, last: u32) -> io::Result<()> {
    // SAFETY: close_range only closes descriptors of this thread's (private) table; the
    // caller has made sure none of them is owned by an object this thread will use.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    cvt(rc).map(drop)
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::fs;
    use std::io::{ErrorKind, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};

    use super::*;

    /// Runs `f` on a fresh thread confined to `root`.
    fn confined<T: Send + 'static>(
        root: &Path,
        read_only: bool,
        allow_devices: bool,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let root = root.to_owned();
        std::thread::spawn(move || {
            let spec = Spec {
                root: &root,
                read_only,
                allow_devices,
                keep: &[],
            };
            enter(&spec).unwrap();
            f()
        })
        .join()
        .unwrap()
    }

    fn errno<T: std::fmt::Debug>(r: io::Result<T>) -> i32 {
        r.unwrap_err().raw_os_error().unwrap()
    }

    /// `<tmp>/share` with a file and symlinks out, `<tmp>/outside/secret`.
    fn layout() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let share = tmp.path().join("share");
        fs::create_dir_all(&share).unwrap();
        fs::create_dir_all(tmp.path().join("outside")).unwrap();
        fs::write(share.join("file"), b"inside").unwrap();
        fs::write(tmp.path().join("outside/secret"), b"secret").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("outside/secret"), share.join("abs")).unwrap();
        std::os::unix::fs::symlink("../outside/secret", share.join("rel")).unwrap();
        std::os::unix::fs::symlink("file", share.join("inner")).unwrap();
        (tmp, share)
    }

    fn names(dir: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_thread_sees_only_the_share() {
        let (tmp, share) = layout();
        let secret = tmp.path().join("outside/secret");
        let secret_from_share = share.join("../outside/secret");
        let (root, proc_self, content, host_paths) = confined(&share, false, false, move || {
            let host_paths = [
                errno(fs::read(&secret)),
                errno(fs::read(&secret_from_share)),
                errno(fs::read("/etc/passwd")),
                errno(fs::read("/share/../../outside/secret")),
                errno(fs::read("/proc/1/root/etc/passwd")),
            ];
            (
                names("/"),
                names("/proc/self"),
                fs::read("/share/file").unwrap(),
                host_paths,
            )
        });
        assert_eq!(root, ["proc", "share"]);
        assert_eq!(proc_self, ["fd", "mountinfo"]);
        assert_eq!(content, b"inside");
        assert_eq!(host_paths, [libc::ENOENT; 5]);
    }

    #[test]
    fn symlinks_on_the_share_are_never_followed() {
        let (_tmp, share) = layout();
        let (followed, read) = confined(&share, false, false, || {
            let followed = ["/share/abs", "/share/rel", "/share/inner"].map(|p| errno(fs::read(p)));
            let read = fs::read_link("/share/abs").unwrap();
            (followed, read)
        });
        assert_eq!(followed, [libc::ELOOP; 3]);
        assert!(read.ends_with("outside/secret"), "{read:?}");
    }

    #[test]
    fn a_read_only_share_is_read_only_in_the_kernel() {
        let (_tmp, share) = layout();
        let host_file = share.join("file");
        let errors = confined(&share, true, false, || {
            [
                errno(fs::write("/share/file", b"x")),
                errno(fs::write("/share/new", b"x")),
                errno(fs::create_dir("/share/dir")),
                errno(fs::remove_file("/share/file")),
                errno(fs::write("/new-in-root", b"x")),
            ]
        });
        assert_eq!(errors, [libc::EROFS; 5]);
        assert_eq!(fs::read(host_file).unwrap(), b"inside");
    }

    fn mknod(path: &str, kind: libc::mode_t) -> io::Result<()> {
        let path = CString::new(path).unwrap();
        // SAFETY: `path` is a valid C string for the call.
        let rc = unsafe { libc::mknod(path.as_ptr(), kind | 0o666, libc::makedev(1, 3)) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    #[test]
    fn device_nodes_need_the_share_to_allow_them() {
        let (_tmp, share) = layout();
        let refused = confined(&share, false, false, || {
            [
                errno(mknod("/share/null", libc::S_IFCHR)),
                errno(mknod("/share/blk", libc::S_IFBLK)),
            ]
        });
        assert_eq!(refused, [libc::EPERM; 2]);
        assert!(!share.join("null").exists());

        let opened = confined(&share, false, true, || {
            mknod("/share/null", libc::S_IFCHR).unwrap();
            // The share is mounted nodev: even then the node cannot be opened.
            errno(fs::File::open("/share/null"))
        });
        assert_eq!(opened, libc::EACCES);
        let meta = fs::symlink_metadata(share.join("null")).unwrap();
        assert_eq!(meta.mode() & libc::S_IFMT, libc::S_IFCHR);
    }

    #[test]
    fn capabilities_and_setuid_files() {
        let (_tmp, share) = layout();
        let suid = share.join("suid");
        fs::write(&suid, b"#!/bin/sh\n").unwrap();
        fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755)).unwrap();
        let (caps, mount) = confined(&share, false, false, || {
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open("/share/suid")
                .unwrap();
            f.write_all(b"echo owned\n").unwrap();
            let mount = nix::mount::mount(
                Some("tmpfs"),
                "/share",
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            );
            (caps::effective().unwrap(), mount.map_err(io::Error::from))
        });
        const CAP_FSETID: u64 = 1 << 4;
        const CAP_SYS_ADMIN: u64 = 1 << 21;
        const CAP_MKNOD: u64 = 1 << 27;
        const CAP_SETFCAP: u64 = 1 << 31;
        assert_eq!(
            caps & (CAP_FSETID | CAP_SYS_ADMIN | CAP_MKNOD | CAP_SETFCAP),
            0
        );
        assert_eq!(errno(mount), libc::EPERM);
        // Written without CAP_FSETID: the kernel cleared the setuid bit.
        assert_eq!(fs::metadata(&suid).unwrap().mode() & 0o7777, 0o755);
    }

    #[test]
    fn descriptors_and_fs_attributes_stay_private() {
        let (_tmp, share) = layout();
        let outside = fs::File::open(share.join("file")).unwrap();
        let outside_fd = outside.as_raw_fd();
        let umask_before = process_umask();
        let (fds, probe) = confined(&share, false, false, move || {
            // SAFETY: umask only changes this thread's (unshared) fs attributes.
            unsafe { libc::umask(0) };
            // SAFETY: F_GETFD on a number only queries this thread's table.
            let probe = unsafe { libc::fcntl(outside_fd, libc::F_GETFD) };
            (names("/proc/self/fd"), probe)
        });
        assert_eq!(
            probe, -1,
            "a descriptor of the process is open in the sandbox"
        );
        // stdio and the descriptor read_dir used.
        assert!(fds.len() <= 4, "{fds:?}");
        assert_eq!(process_umask(), umask_before);
        // Ours is still open here.
        // SAFETY: as above.
        assert_ne!(unsafe { libc::fcntl(outside_fd, libc::F_GETFD) }, -1);
    }

    fn process_umask() -> String {
        fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find(|l| l.starts_with("Umask:"))
            .unwrap()
            .to_owned()
    }

    #[test]
    fn a_missing_share_fails_cleanly() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing");
        let err = std::thread::spawn(move || {
            let spec = Spec {
                root: &missing,
                read_only: false,
                allow_devices: false,
                keep: &[],
            };
            enter(&spec).unwrap_err()
        })
        .join()
        .unwrap();
        assert_eq!(err.step, "opening the share");
        assert_eq!(err.source.kind(), ErrorKind::NotFound);
    }
}
