//! The share's policy, applied to every request before the passthrough sees it.
//!
//! [`ConfinedFs`] is a [`FileSystem`] that wraps fuse-backend-rs's [`PassthroughFs`] and
//! forwards a request only once it is acceptable:
//! - names of directory entries are single components: not empty, not `.` or `..`, no `/`
//!   (`EINVAL`), at most 255 bytes (`ENAMETOOLONG`); embedded NULs never get here (see
//!   `request.rs`);
//! - a read-only share refuses every write before touching the host (`EROFS`): SETATTR,
//!   SYMLINK, MKNOD, MKDIR, UNLINK, RMDIR, RENAME(2), LINK, CREATE, OPEN for writing or with
//!   `O_TRUNC`, WRITE, FALLOCATE, SETXATTR, REMOVEXATTR, and ACCESS for `W_OK` (the kernel's
//!   read-only mount in the sandbox is the second line);
//! - device nodes: MKNOD of a character or block device, and RENAME_WHITEOUT (which makes
//!   one), fail with `EPERM` unless the share allows devices; other file types than regular,
//!   FIFO and socket are `EINVAL`;
//! - setuid/setgid: **stripped** (not refused) from the mode of files the guest creates
//!   (CREATE, MKNOD) or chmods (SETATTR); directories keep setgid (group inheritance, no
//!   privilege) and lose setuid — a chmod that sets it is made as a member of the
//!   directory's group, or the host's kernel would drop it. Writes and truncations clear the bits of existing files
//!   because the worker has no `CAP_FSETID`. File capabilities (`security.capability`)
//!   cannot be set (`EPERM`);
//! - open flags are reduced to those a file server should honour (no `O_PATH`,
//!   `O_TMPFILE`, `FASYNC`...; access mode 3 is `EINVAL`);
//! - sizes: READ and WRITE above 1 MiB, or a READ larger than the reply buffer, are
//!   `EINVAL`; directory listings and xattr buffers are clamped to sane sizes, so a guest
//!   cannot make the host allocate gigabytes;
//! - creations by a guest user other than root are checked on the host as if the user
//!   were in the parent directory's group (FUSE does not send supplementary groups; the
//!   guest's kernel has checked them);
//! - node ids and handles are translated through the device's [`IdSpace`] (numbers from
//!   another share are `EBADF`);
//! - what we do not serve is `ENOSYS`: DAX mappings, locks, ioctl, bmap, poll.
//!
//! A method not written here falls back to the trait's default, which refuses (`ENOSYS`),
//! except `open`, `opendir` and `statfs`, whose defaults succeed — those three are always
//! written here.

use std::ffi::CStr;
use std::io;
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::{stat64, statvfs64, CreateIn};
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileSystem, FsOptions, GetxattrReply, ListxattrReply, OpenOptions,
    SetattrValid, ZeroCopyReader, ZeroCopyWriter,
};
use fuse_backend_rs::api::server::MAX_BUFFER_SIZE;
use fuse_backend_rs::passthrough::{Config, PassthroughFs};

use super::ids::IdSpace;
use super::sandbox::SHARE_DIR;

/// Longest name of a directory entry.
const NAME_MAX: usize = 255;
/// Longest symlink target (PATH_MAX including the NUL).
const TARGET_MAX: usize = 4095;
/// Longest extended attribute name and value (`XATTR_NAME_MAX`, `XATTR_SIZE_MAX`).
const XATTR_NAME_MAX: usize = 255;
const XATTR_SIZE_MAX: u32 = 65536;
/// Largest READ or WRITE: what we tell the guest in INIT (`max_write`, `max_pages`).
const MAX_IO: u32 = MAX_BUFFER_SIZE;

/// What a share allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Policy {
    /// Refuse every write with `EROFS`.
    pub read_only: bool,
    /// Allow character and block device nodes.
    pub allow_devices: bool,
}

fn err(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

/// A directory entry's name must be one path component.
fn check_name(name: &CStr) -> io::Result<()> {
    let bytes = name.to_bytes();
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return Err(err(libc::EINVAL));
    }
    if bytes.len() > NAME_MAX {
        return Err(err(libc::ENAMETOOLONG));
    }
    Ok(())
}

/// A symlink's target is stored, never followed by the host: any text is fine but an empty
/// or overlong one.
fn check_target(target: &CStr) -> io::Result<()> {
    match target.to_bytes().len() {
        0 => Err(err(libc::ENOENT)),
        n if n > TARGET_MAX => Err(err(libc::ENAMETOOLONG)),
        _ => Ok(()),
    }
}

fn check_xattr_name(name: &CStr) -> io::Result<()> {
    match name.to_bytes().len() {
        0 => Err(err(libc::ERANGE)),
        n if n > XATTR_NAME_MAX => Err(err(libc::ERANGE)),
        _ => Ok(()),
    }
}

fn bits(flag: libc::c_int) -> u32 {
    flag.cast_unsigned()
}

/// Open flags the passthrough may pass to `open(2)`.
fn open_flags(flags: u32, create: bool) -> io::Result<u32> {
    let accmode = bits(libc::O_ACCMODE);
    if flags & accmode == accmode {
        return Err(err(libc::EINVAL));
    }
    let mut allowed = accmode
        | bits(libc::O_APPEND)
        | bits(libc::O_NONBLOCK)
        | bits(libc::O_DIRECT)
        | bits(libc::O_SYNC)
        | bits(libc::O_DSYNC)
        | bits(libc::O_NOATIME)
        | bits(libc::O_LARGEFILE)
        | bits(libc::O_DIRECTORY)
        | bits(libc::O_NOFOLLOW)
        | bits(libc::O_TRUNC)
        | bits(libc::O_CLOEXEC);
    if create {
        allowed |= bits(libc::O_CREAT) | bits(libc::O_EXCL);
    }
    Ok(flags & allowed)
}

/// Whether opening with `flags` can change the file.
fn opens_for_writing(flags: u32) -> bool {
    flags & bits(libc::O_ACCMODE) != bits(libc::O_RDONLY) || flags & bits(libc::O_TRUNC) != 0
}

/// The file-status flags READ and WRITE may set on an open file (`fcntl(F_SETFL)`).
fn status_flags(flags: u32) -> u32 {
    flags
        & (bits(libc::O_APPEND)
            | bits(libc::O_NONBLOCK)
            | bits(libc::O_DIRECT)
            | bits(libc::O_NOATIME)
            | bits(libc::O_LARGEFILE))
}

/// `mode` without the privilege bits a guest may not give a file of type `kind`.
fn strip_privileges(kind: u32, mode: u32) -> u32 {
    if kind == libc::S_IFDIR {
        mode & !libc::S_ISUID
    } else {
        mode & !(libc::S_ISUID | libc::S_ISGID)
    }
}

/// The calling thread's file-system group id set to a group until dropped, when the
/// previous one is restored (`setfsgid` is per thread; the worker keeps `CAP_SETGID`).
struct FsGroup {
    previous: libc::gid_t,
}

impl FsGroup {
    fn enter(gid: libc::gid_t) -> io::Result<Self> {
        // SAFETY: setfsgid only changes this thread's credentials; it returns the previous
        // file-system gid whether or not it succeeded.
        let previous = unsafe { libc::setfsgid(gid) };
        let group = Self {
            previous: libc::gid_t::try_from(previous).unwrap_or(0),
        };
        // An invalid id changes nothing and returns the current one: the way to check.
        // SAFETY: as above.
        if libc::gid_t::try_from(unsafe { libc::setfsgid(libc::gid_t::MAX) }).ok() != Some(gid) {
            return Err(err(libc::EPERM));
        }
        Ok(group)
    }
}

impl Drop for FsGroup {
    fn drop(&mut self) {
        // SAFETY: as in `enter`.
        unsafe { libc::setfsgid(self.previous) };
    }
}

/// The calling thread's supplementary groups replaced by one group until dropped, when
/// the previous list is restored. The raw system call changes this thread only (glibc's
/// `setgroups` would change every thread of the process).
struct SupplementaryGroup {
    previous: Vec<libc::gid_t>,
}

impl SupplementaryGroup {
    fn enter(gid: libc::gid_t) -> io::Result<Self> {
        // SAFETY: getgroups(0, NULL) only returns the number of groups.
        let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
        let mut previous = vec![0; usize::try_from(n).map_err(|_| io::Error::last_os_error())?];
        // SAFETY: the buffer holds `n` gids, as the kernel was told.
        let n = unsafe { libc::getgroups(n, previous.as_mut_ptr()) };
        previous.truncate(usize::try_from(n).map_err(|_| io::Error::last_os_error())?);
        set_groups(&[gid])?;
        Ok(Self { previous })
    }
}

impl Drop for SupplementaryGroup {
    fn drop(&mut self) {
        let _ = set_groups(&self.previous);
    }
}

/// `setgroups(2)` for the calling thread only.
fn set_groups(groups: &[libc::gid_t]) -> io::Result<()> {
    // SAFETY: the kernel reads `groups.len()` gids from the pointer, which is valid for them.
    let rc = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The passthrough behind the share's policy.
pub(super) struct ConfinedFs {
    inner: PassthroughFs<()>,
    ids: IdSpace,
    policy: Policy,
}

impl std::fmt::Debug for ConfinedFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfinedFs")
            .field("ids", &self.ids)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl ConfinedFs {
    /// A passthrough over [`SHARE_DIR`]. Call it inside the worker's sandbox: it opens
    /// `/proc/self/fd`, which must be the worker's own.
    pub(super) fn new(policy: Policy) -> io::Result<Self> {
        let config = Config {
            root_dir: SHARE_DIR.to_owned(),
            do_import: true,
            xattr: true,
            // Never open inodes by file handle: the guest cannot name a handle, and
            // open_by_handle_at would need a descriptor on every mount.
            inode_file_handles: false,
            writeback: false,
            no_open: false,
            no_opendir: false,
            killpriv_v2: false,
            seal_size: false,
            use_host_ino: false,
            dax_file_size: None,
            // As virtiofsd's default (cache=auto): the host may change files too.
            entry_timeout: Duration::from_secs(1),
            attr_timeout: Duration::from_secs(1),
            ..Config::default()
        };
        Ok(Self {
            inner: PassthroughFs::new(config)?,
            ids: IdSpace::new(),
            policy,
        })
    }

    fn writable(&self) -> io::Result<()> {
        if self.policy.read_only {
            Err(err(libc::EROFS))
        } else {
            Ok(())
        }
    }

    fn inode(&self, visible: u64) -> io::Result<u64> {
        self.ids.import_inode(visible)
    }

    fn handle(&self, visible: u64) -> io::Result<u64> {
        self.ids.import_handle(visible)
    }

    fn opt_handle(&self, visible: Option<u64>) -> io::Result<Option<u64>> {
        visible.map(|h| self.handle(h)).transpose()
    }

    /// An entry the passthrough returned, with its node id made guest-visible. If that
    /// fails, the lookup the passthrough counted is given back.
    fn entry(&self, ctx: &Context, mut entry: Entry) -> io::Result<Entry> {
        match self.ids.export_inode(entry.inode) {
            Ok(visible) => {
                entry.inode = visible;
                Ok(entry)
            }
            Err(e) => {
                self.inner.forget(ctx, entry.inode, 1);
                Err(e)
            }
        }
    }

    fn out_handle(&self, local: Option<u64>) -> io::Result<Option<u64>> {
        local.map(|h| self.ids.export_handle(h)).transpose()
    }

    /// Runs a creation in `parent` (a local inode) that the passthrough makes as the
    /// guest's user (`ctx.uid`/`ctx.gid`, never its supplementary groups, which FUSE does
    /// not send). A guest user may write to a directory through a supplementary group
    /// (`root:staff 2775` and a member of staff): the guest's kernel checked that with the
    /// user's real groups (virtiofs mounts with default_permissions), so the host checks
    /// as a member of the directory's group rather than refuse what the guest allowed. The
    /// owner and the other bits of the directory's mode still apply on the host.
    fn as_creator<T>(
        &self,
        ctx: &Context,
        parent: u64,
        create: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        if ctx.uid == 0 {
            return create();
        }
        let (dir, _) = self.inner.getattr(ctx, parent, None)?;
        if dir.st_gid == ctx.gid {
            return create();
        }
        let _group = SupplementaryGroup::enter(dir.st_gid)?;
        create()
    }
}

impl FileSystem for ConfinedFs {
    type Inode = u64;
    type Handle = u64;

    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        // The passthrough asks for readdirplus only; what else we want (the server keeps
        // what the guest offered): 1 MiB requests, concurrency, and page-cache
        // invalidation when the host changes a file. Never EXPORT_SUPPORT (it would make
        // the guest look up `..`), locks (the guest keeps them), writeback caching or DAX.
        let wanted = FsOptions::ASYNC_READ
            | FsOptions::BIG_WRITES
            | FsOptions::MAX_PAGES
            | FsOptions::PARALLEL_DIROPS
            | FsOptions::ATOMIC_O_TRUNC
            | FsOptions::AUTO_INVAL_DATA
            | FsOptions::ASYNC_DIO
            | FsOptions::CACHE_SYMLINKS;
        let never = FsOptions::EXPORT_SUPPORT
            | FsOptions::POSIX_LOCKS
            | FsOptions::FLOCK_LOCKS
            | FsOptions::WRITEBACK_CACHE
            | FsOptions::PERFILE_DAX;
        Ok((self.inner.init(capable)? | wanted) - never)
    }

    fn destroy(&self) {
        self.inner.destroy();
    }

    fn lookup(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<Entry> {
        check_name(name)?;
        let entry = self.inner.lookup(ctx, self.inode(parent)?, name)?;
        self.entry(ctx, entry)
    }

    fn forget(&self, ctx: &Context, inode: u64, count: u64) {
        if let Ok(inode) = self.inode(inode) {
            self.inner.forget(ctx, inode, count);
        }
    }

    fn batch_forget(&self, ctx: &Context, requests: Vec<(u64, u64)>) {
        let requests = requests
            .into_iter()
            .filter_map(|(inode, count)| Some((self.inode(inode).ok()?, count)))
            .collect();
        self.inner.batch_forget(ctx, requests);
    }

    fn getattr(
        &self,
        ctx: &Context,
        inode: u64,
        handle: Option<u64>,
    ) -> io::Result<(stat64, Duration)> {
        self.inner
            .getattr(ctx, self.inode(inode)?, self.opt_handle(handle)?)
    }

    fn setattr(
        &self,
        ctx: &Context,
        inode: u64,
        mut attr: stat64,
        handle: Option<u64>,
        valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        self.writable()?;
        let inode = self.inode(inode)?;
        let handle = self.opt_handle(handle)?;
        if valid.contains(SetattrValid::MODE) {
            // The type comes from the host, not from what the guest says it is.
            let (current, _) = self.inner.getattr(ctx, inode, None)?;
            let kind = current.st_mode & libc::S_IFMT;
            attr.st_mode = strip_privileges(kind, attr.st_mode & !libc::S_IFMT);
            if kind == libc::S_IFDIR && attr.st_mode & libc::S_ISGID != 0 {
                // Without CAP_FSETID the host's kernel silently drops setgid from a chmod
                // unless the caller is in the directory's group; the guest's kernel has
                // already applied that rule with the guest's credentials (virtiofs mounts
                // with default_permissions), so act as a member of the group for this one
                // chmod (the passthrough changes the mode before any owner).
                let _group = FsGroup::enter(current.st_gid)?;
                return self.inner.setattr(ctx, inode, attr, handle, valid);
            }
        }
        self.inner.setattr(ctx, inode, attr, handle, valid)
    }

    fn readlink(&self, ctx: &Context, inode: u64) -> io::Result<Vec<u8>> {
        self.inner.readlink(ctx, self.inode(inode)?)
    }

    fn symlink(&self, ctx: &Context, target: &CStr, parent: u64, name: &CStr) -> io::Result<Entry> {
        self.writable()?;
        check_name(name)?;
        check_target(target)?;
        let parent = self.inode(parent)?;
        let entry = self.as_creator(ctx, parent, || {
            self.inner.symlink(ctx, target, parent, name)
        })?;
        self.entry(ctx, entry)
    }

    fn mknod(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        self.writable()?;
        check_name(name)?;
        let kind = mode & libc::S_IFMT;
        match kind {
            0 | libc::S_IFREG | libc::S_IFIFO | libc::S_IFSOCK => {}
            libc::S_IFCHR | libc::S_IFBLK if self.policy.allow_devices => {}
            libc::S_IFCHR | libc::S_IFBLK => return Err(err(libc::EPERM)),
            _ => return Err(err(libc::EINVAL)),
        }
        let mode = kind | strip_privileges(kind, mode & !libc::S_IFMT);
        let parent = self.inode(parent)?;
        let entry = self.as_creator(ctx, parent, || {
            self.inner.mknod(ctx, parent, name, mode, rdev, umask)
        })?;
        self.entry(ctx, entry)
    }

    fn mkdir(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        self.writable()?;
        check_name(name)?;
        let mode = strip_privileges(libc::S_IFDIR, mode);
        let parent = self.inode(parent)?;
        let entry = self.as_creator(ctx, parent, || {
            self.inner.mkdir(ctx, parent, name, mode, umask)
        })?;
        self.entry(ctx, entry)
    }

    fn unlink(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()> {
        self.writable()?;
        check_name(name)?;
        self.inner.unlink(ctx, self.inode(parent)?, name)
    }

    fn rmdir(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()> {
        self.writable()?;
        check_name(name)?;
        self.inner.rmdir(ctx, self.inode(parent)?, name)
    }

    fn rename(
        &self,
        ctx: &Context,
        olddir: u64,
        oldname: &CStr,
        newdir: u64,
        newname: &CStr,
        flags: u32,
    ) -> io::Result<()> {
        self.writable()?;
        check_name(oldname)?;
        check_name(newname)?;
        if flags & !(libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE | libc::RENAME_WHITEOUT) != 0 {
            return Err(err(libc::EINVAL));
        }
        if flags & libc::RENAME_WHITEOUT != 0 && !self.policy.allow_devices {
            // A whiteout is a character device (0, 0).
            return Err(err(libc::EPERM));
        }
        self.inner.rename(
            ctx,
            self.inode(olddir)?,
            oldname,
            self.inode(newdir)?,
            newname,
            flags,
        )
    }

    fn link(&self, ctx: &Context, inode: u64, newparent: u64, newname: &CStr) -> io::Result<Entry> {
        self.writable()?;
        check_name(newname)?;
        let entry = self
            .inner
            .link(ctx, self.inode(inode)?, self.inode(newparent)?, newname)?;
        self.entry(ctx, entry)
    }

    fn open(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions, Option<u32>)> {
        let flags = open_flags(flags, false)?;
        if opens_for_writing(flags) {
            self.writable()?;
        }
        let (handle, options, passthrough) =
            self.inner
                .open(ctx, self.inode(inode)?, flags, fuse_flags)?;
        Ok((self.out_handle(handle)?, options, passthrough))
    }

    fn create(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        mut args: CreateIn,
    ) -> io::Result<(Entry, Option<u64>, OpenOptions, Option<u32>)> {
        self.writable()?;
        check_name(name)?;
        args.flags = open_flags(args.flags, true)?;
        args.mode = strip_privileges(libc::S_IFREG, args.mode);
        let parent = self.inode(parent)?;
        let (entry, handle, options, passthrough) =
            self.as_creator(ctx, parent, || self.inner.create(ctx, parent, name, args))?;
        let entry = self.entry(ctx, entry)?;
        Ok((entry, self.out_handle(handle)?, options, passthrough))
    }

    fn read(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        flags: u32,
    ) -> io::Result<usize> {
        let fits = usize::try_from(size).is_ok_and(|size| size <= w.available_bytes());
        if size > MAX_IO || !fits {
            return Err(err(libc::EINVAL));
        }
        self.inner.read(
            ctx,
            self.inode(inode)?,
            self.handle(handle)?,
            w,
            size,
            offset,
            lock_owner,
            status_flags(flags),
        )
    }

    fn write(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        r: &mut dyn ZeroCopyReader,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        delayed_write: bool,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<usize> {
        self.writable()?;
        if size > MAX_IO {
            return Err(err(libc::EINVAL));
        }
        self.inner.write(
            ctx,
            self.inode(inode)?,
            self.handle(handle)?,
            r,
            size,
            offset,
            lock_owner,
            delayed_write,
            status_flags(flags),
            fuse_flags,
        )
    }

    fn flush(&self, ctx: &Context, inode: u64, handle: u64, lock_owner: u64) -> io::Result<()> {
        self.inner
            .flush(ctx, self.inode(inode)?, self.handle(handle)?, lock_owner)
    }

    fn fsync(&self, ctx: &Context, inode: u64, datasync: bool, handle: u64) -> io::Result<()> {
        self.inner
            .fsync(ctx, self.inode(inode)?, datasync, self.handle(handle)?)
    }

    fn fallocate(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> io::Result<()> {
        self.writable()?;
        self.inner.fallocate(
            ctx,
            self.inode(inode)?,
            self.handle(handle)?,
            mode,
            offset,
            length,
        )
    }

    fn release(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
        handle: u64,
        flush: bool,
        flock_release: bool,
        lock_owner: Option<u64>,
    ) -> io::Result<()> {
        self.inner.release(
            ctx,
            self.inode(inode)?,
            flags,
            self.handle(handle)?,
            flush,
            flock_release,
            lock_owner,
        )
    }

    fn statfs(&self, ctx: &Context, inode: u64) -> io::Result<statvfs64> {
        self.inner.statfs(ctx, self.inode(inode)?)
    }

    fn setxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> io::Result<()> {
        self.writable()?;
        check_xattr_name(name)?;
        if name.to_bytes() == b"security.capability" {
            // File capabilities are privileges, like setuid.
            return Err(err(libc::EPERM));
        }
        if value.len() > XATTR_SIZE_MAX as usize {
            return Err(err(libc::E2BIG));
        }
        self.inner
            .setxattr(ctx, self.inode(inode)?, name, value, flags)
    }

    fn getxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        size: u32,
    ) -> io::Result<GetxattrReply> {
        check_xattr_name(name)?;
        self.inner
            .getxattr(ctx, self.inode(inode)?, name, size.min(XATTR_SIZE_MAX))
    }

    fn listxattr(&self, ctx: &Context, inode: u64, size: u32) -> io::Result<ListxattrReply> {
        self.inner
            .listxattr(ctx, self.inode(inode)?, size.min(XATTR_SIZE_MAX))
    }

    fn removexattr(&self, ctx: &Context, inode: u64, name: &CStr) -> io::Result<()> {
        self.writable()?;
        check_xattr_name(name)?;
        self.inner.removexattr(ctx, self.inode(inode)?, name)
    }

    fn opendir(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions)> {
        let flags = open_flags(flags, false)? & !bits(libc::O_TRUNC);
        let (handle, options) = self.inner.opendir(ctx, self.inode(inode)?, flags)?;
        Ok((self.out_handle(handle)?, options))
    }

    fn readdir(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry) -> io::Result<usize>,
    ) -> io::Result<()> {
        let ids = self.ids;
        self.inner.readdir(
            ctx,
            self.inode(inode)?,
            self.handle(handle)?,
            size.min(MAX_IO),
            offset,
            &mut |mut dirent| {
                dirent.ino = ids.export_inode(dirent.ino)?;
                add_entry(dirent)
            },
        )
    }

    fn readdirplus(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry, Entry) -> io::Result<usize>,
    ) -> io::Result<()> {
        let ids = self.ids;
        self.inner.readdirplus(
            ctx,
            self.inode(inode)?,
            self.handle(handle)?,
            size.min(MAX_IO),
            offset,
            &mut |dirent, mut entry| {
                entry.inode = ids.export_inode(entry.inode)?;
                add_entry(dirent, entry)
            },
        )
    }

    fn fsyncdir(&self, ctx: &Context, inode: u64, datasync: bool, handle: u64) -> io::Result<()> {
        self.inner
            .fsyncdir(ctx, self.inode(inode)?, datasync, self.handle(handle)?)
    }

    fn releasedir(&self, ctx: &Context, inode: u64, flags: u32, handle: u64) -> io::Result<()> {
        self.inner
            .releasedir(ctx, self.inode(inode)?, flags, self.handle(handle)?)
    }

    fn access(&self, ctx: &Context, inode: u64, mask: u32) -> io::Result<()> {
        if mask & bits(libc::W_OK) != 0 {
            self.writable()?;
        }
        self.inner.access(ctx, self.inode(inode)?, mask)
    }

    fn lseek(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        offset: u64,
        whence: u32,
    ) -> io::Result<u64> {
        self.inner.lseek(
            ctx,
            self.inode(inode)?,
            self.handle(handle)?,
            offset,
            whence,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno(r: io::Result<()>) -> i32 {
        r.unwrap_err().raw_os_error().unwrap()
    }

    #[test]
    fn names_are_single_components() {
        for ok in [&b"a\0"[..], b"...\0", b".hidden\0", b"a b\0"] {
            check_name(CStr::from_bytes_with_nul(ok).unwrap()).unwrap();
        }
        for (bad, expected) in [
            (&b"\0"[..], libc::EINVAL),
            (b".\0", libc::EINVAL),
            (b"..\0", libc::EINVAL),
            (b"a/b\0", libc::EINVAL),
            (b"/\0", libc::EINVAL),
            (b"../x\0", libc::EINVAL),
        ] {
            let name = CStr::from_bytes_with_nul(bad).unwrap();
            assert_eq!(errno(check_name(name)), expected, "{name:?}");
        }
        let long = std::ffi::CString::new(vec![b'x'; 256]).unwrap();
        assert_eq!(errno(check_name(&long)), libc::ENAMETOOLONG);
        let max = std::ffi::CString::new(vec![b'x'; 255]).unwrap();
        check_name(&max).unwrap();
    }

    #[test]
    fn open_flags_are_reduced() {
        let rdwr = bits(libc::O_RDWR);
        assert_eq!(open_flags(rdwr | bits(libc::O_PATH), false).unwrap(), rdwr);
        assert_eq!(
            open_flags(bits(libc::O_CREAT) | bits(libc::O_EXCL), false).unwrap(),
            0
        );
        assert_eq!(
            open_flags(bits(libc::O_CREAT), true).unwrap(),
            bits(libc::O_CREAT)
        );
        assert_eq!(
            open_flags(bits(libc::O_ACCMODE), false)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EINVAL)
        );
        assert!(opens_for_writing(bits(libc::O_WRONLY)));
        assert!(opens_for_writing(bits(libc::O_TRUNC)));
        assert!(!opens_for_writing(
            bits(libc::O_RDONLY) | bits(libc::O_APPEND)
        ));
    }

    #[test]
    fn privileges_are_stripped() {
        assert_eq!(strip_privileges(libc::S_IFREG, 0o6755), 0o755);
        assert_eq!(strip_privileges(libc::S_IFDIR, 0o6775), 0o2775);
        assert_eq!(strip_privileges(libc::S_IFREG, 0o1777), 0o1777);
    }
}
