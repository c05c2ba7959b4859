//! flock(2) locks on pod directories and store keys, as rkt's `pkg/lock` takes them.
//!
//! A pod's lock is an fd opened `O_RDONLY|O_DIRECTORY` (close-on-exec, as Go opens every
//! file) on the pod directory. The fd keeps referring to the directory across the state
//! renames, and it is the fd handed to stage1 as `RKT_LOCK_FD` (contract §2.1,
//! "RKT_LOCK_FD semantics"). The pod is running exactly while some process holds an
//! exclusive lock on it (contract §3.1).

// nix 0.29 deprecates the free `flock` function in favour of `Flock<T>`, which ties a lock
// to the lifetime of an owned wrapper and unlocks on drop. rkt's semantics need the
// opposite: lock, unlock and re-lock one long-lived fd, and hand that very fd (still
// locked) to stage1 across exec. The free function is the faithful tool here.
#![allow(deprecated)]

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{fcntl, flock, FcntlArg, FdFlag, FlockArg};

use crate::error::{Context, Error, Result};

/// An open, possibly locked, file descriptor on a directory or a lock file.
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    /// Opens `path` as a directory (`O_RDONLY|O_DIRECTORY|O_CLOEXEC`), unlocked
    /// (rkt `lock.NewLock(path, lock.Dir)`).
    pub fn open_dir(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)
            .ctx("opening directory", path)?;
        Ok(Lock {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Opens (creating) a regular lock file (rkt's key locks of the tree store).
    pub fn open_file(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .ctx("opening lock file", path)?;
        Ok(Lock {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The path it was opened on (the directory may have been renamed since).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw descriptor (the number passed as `RKT_LOCK_FD`).
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Takes an exclusive lock, waiting for it.
    pub fn exclusive(&self) -> Result<()> {
        flock(self.raw_fd(), FlockArg::LockExclusive).ctx("locking (exclusive)", &self.path)
    }

    /// Tries a shared lock; `false` when someone holds an exclusive lock.
    pub fn try_shared(&self) -> Result<bool> {
        self.try_lock(FlockArg::LockSharedNonblock, "locking (shared)")
    }

    fn try_lock(&self, arg: FlockArg, op: &'static str) -> Result<bool> {
        match flock(self.raw_fd(), arg) {
            Ok(()) => Ok(true),
            Err(Errno::EWOULDBLOCK) => Ok(false),
            Err(e) => Err(Error::sys(op, &self.path, e)),
        }
    }

    /// Releases this descriptor's lock.
    pub fn unlock(&self) -> Result<()> {
        flock(self.raw_fd(), FlockArg::Unlock).ctx("unlocking", &self.path)
    }

    /// Clears FD_CLOEXEC so the descriptor (and its lock) survives exec
    /// (`stage0/run.go`: `sys.CloseOnExec(cfg.LockFd, false)`, contract §2.1 step 7).
    pub fn keep_across_exec(&self) -> Result<()> {
        fcntl(self.raw_fd(), FcntlArg::F_SETFD(FdFlag::empty()))
            .map(drop)
            .ctx("clearing FD_CLOEXEC on lock fd of", &self.path)
    }
}
