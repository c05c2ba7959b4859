//! Node ids and file handles as the guest sees them: the passthrough's own numbers, tagged
//! with a per-device salt so that a number one share handed out is refused by every other.
//!
//! Each device has its own passthrough, so its own inode and handle tables: a number from
//! another share can never reach that share's files. Both tables count from small numbers,
//! though, so without a salt inode 5 of one share would be *some* inode of another. The salt
//! makes such a number fail (`EBADF`) instead. Layout of a guest-visible id:
//!
//! ```text
//!  63      56 55            40 39                              0
//! [ 0 .. 0  ][  salt (16 bits) ][ passthrough's number (40 bits) ]
//! ```
//!
//! The root (`FUSE_ROOT_ID`, 1) is the same on every share, as the protocol requires; the
//! result stays below fuse-backend-rs's `VFS_MAX_INO` (2^56). Salts come from a process-wide
//! counter — the only thing shared between devices, and it only hands out numbers.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use fuse_backend_rs::abi::fuse_abi::ROOT_ID;

const SALT_SHIFT: u32 = 40;
const LOCAL_MASK: u64 = (1 << SALT_SHIFT) - 1;
const SALTS: u64 = 0xffff;

static NEXT_SALT: AtomicU64 = AtomicU64::new(0);

/// One device's id space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct IdSpace {
    salt: u64,
}

fn ebadf() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

impl IdSpace {
    /// A fresh id space, distinct from the previous 65534 ones made in this process.
    pub(super) fn new() -> Self {
        let n = NEXT_SALT.fetch_add(1, Ordering::Relaxed);
        Self::with_salt(n % SALTS + 1)
    }

    fn with_salt(salt: u64) -> Self {
        Self { salt }
    }

    fn export(self, local: u64) -> io::Result<u64> {
        if local > LOCAL_MASK {
            // 2^40 inodes or handles in one session: refuse rather than alias.
            return Err(io::Error::from_raw_os_error(libc::ENFILE));
        }
        Ok((self.salt << SALT_SHIFT) | local)
    }

    fn import(self, visible: u64) -> io::Result<u64> {
        if visible >> SALT_SHIFT == self.salt {
            Ok(visible & LOCAL_MASK)
        } else {
            Err(ebadf())
        }
    }

    /// The guest-visible node id of the passthrough's inode `local`.
    pub(super) fn export_inode(self, local: u64) -> io::Result<u64> {
        match local {
            // 0 is "no inode" (a negative entry), 1 the root: the same everywhere.
            0 | ROOT_ID => Ok(local),
            _ => self.export(local),
        }
    }

    /// The passthrough's inode for the guest's node id, or `EBADF` if this device did not
    /// hand it out.
    pub(super) fn import_inode(self, visible: u64) -> io::Result<u64> {
        if visible == ROOT_ID {
            return Ok(ROOT_ID);
        }
        match self.import(visible)? {
            0 | ROOT_ID => Err(ebadf()),
            local => Ok(local),
        }
    }

    /// The guest-visible file handle of the passthrough's handle `local`.
    pub(super) fn export_handle(self, local: u64) -> io::Result<u64> {
        self.export(local)
    }

    /// The passthrough's handle for the guest's file handle, or `EBADF`.
    pub(super) fn import_handle(self, visible: u64) -> io::Result<u64> {
        self.import(visible)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno(r: io::Result<u64>) -> i32 {
        r.unwrap_err().raw_os_error().unwrap()
    }

    #[test]
    fn round_trip_and_root() {
        let ids = IdSpace::with_salt(7);
        for local in [2, 3, 1000, LOCAL_MASK] {
            let visible = ids.export_inode(local).unwrap();
            assert_ne!(visible, local);
            assert!(visible < 1 << 56, "above VFS_MAX_INO");
            assert_eq!(ids.import_inode(visible).unwrap(), local);
            let handle = ids.export_handle(local).unwrap();
            assert_eq!(ids.import_handle(handle).unwrap(), local);
        }
        assert_eq!(ids.export_inode(ROOT_ID).unwrap(), ROOT_ID);
        assert_eq!(ids.import_inode(ROOT_ID).unwrap(), ROOT_ID);
        assert_eq!(ids.export_inode(0).unwrap(), 0);
    }

    #[test]
    fn another_space_refuses_our_numbers() {
        let (a, b) = (IdSpace::with_salt(1), IdSpace::with_salt(2));
        let inode = a.export_inode(2).unwrap();
        let handle = a.export_handle(1).unwrap();
        assert_eq!(errno(b.import_inode(inode)), libc::EBADF);
        assert_eq!(errno(b.import_handle(handle)), libc::EBADF);
        // Raw passthrough numbers (no salt) and forged ones are refused too.
        assert_eq!(errno(a.import_inode(2)), libc::EBADF);
        assert_eq!(errno(a.import_handle(1)), libc::EBADF);
        assert_eq!(errno(a.import_inode(u64::MAX)), libc::EBADF);
        assert_eq!(errno(a.import_inode(1 << SALT_SHIFT)), libc::EBADF);
        assert_eq!(errno(a.export_inode(LOCAL_MASK + 1)), libc::ENFILE);
    }

    #[test]
    fn fresh_spaces_differ() {
        let (a, b) = (IdSpace::new(), IdSpace::new());
        assert_ne!(a, b);
        assert!((1..=SALTS).contains(&a.salt));
    }
}
