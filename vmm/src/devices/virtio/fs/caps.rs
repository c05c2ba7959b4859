//! The capabilities a share's worker thread keeps.
//!
//! Capabilities are per thread on Linux, so the worker can drop what serving files does not
//! need without touching the rest of the process. It keeps what a root passthrough server
//! needs to serve files of every owner, and drops the rest, so that the kernel itself refuses:
//! - `CAP_FSETID`: without it the kernel clears setuid/setgid bits when the worker writes to
//!   or truncates a file (`file_remove_privs`), so the guest cannot modify a setuid program
//!   and keep its bit;
//! - `CAP_SETFCAP`: no file capabilities (`security.capability`) set by the guest;
//! - `CAP_MKNOD` unless the share allows devices: no character or block device nodes;
//! - `CAP_SYS_ADMIN`: no mounting, unmounting or remounting of the sandbox, no `trusted.*`
//!   extended attributes;
//! - everything else (`CAP_SYS_CHROOT`, `CAP_SYS_PTRACE`, `CAP_NET_*`, ...).
//!
//! `setresuid` (used by the passthrough to create files as the guest's user) keeps the
//! permitted set while the real uid stays 0, and restores the effective set from it when
//! the effective uid returns to 0, so the dropped capabilities never come back.

use std::io;

/// Capability numbers (`linux/capability.h`).
const CAP_CHOWN: u32 = 0;
const CAP_DAC_OVERRIDE: u32 = 1;
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_FOWNER: u32 = 3;
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_MKNOD: u32 = 27;

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, as two 32-bit halves.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The capabilities the worker keeps, as a 64-bit set.
fn kept(allow_devices: bool) -> u64 {
    let mut set = [
        CAP_CHOWN,
        CAP_DAC_OVERRIDE,
        CAP_DAC_READ_SEARCH,
        CAP_FOWNER,
        CAP_SETGID,
        CAP_SETUID,
    ]
    .iter()
    .fold(0u64, |set, &cap| set | (1 << cap));
    if allow_devices {
        set |= 1 << CAP_MKNOD;
    }
    set
}

fn halves(set: u64) -> [u32; 2] {
    let low = u32::try_from(set & u64::from(u32::MAX)).unwrap_or(u32::MAX);
    let high = u32::try_from(set >> 32).unwrap_or(u32::MAX);
    [low, high]
}

/// Reduces the calling thread's effective and permitted capabilities to those a share's
/// worker keeps (never adding any it does not have), and clears its inheritable set.
pub(super) fn restrict_thread(allow_devices: bool) -> io::Result<()> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes at most two `CapData` (the version-3 layout) into `data` and
    // reads `header`; both live for the call. pid 0 is the calling thread.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            std::ptr::from_mut(&mut header),
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let keep = halves(kept(allow_devices));
    for (half, keep) in data.iter_mut().zip(keep) {
        half.permitted &= keep;
        half.effective &= half.permitted;
        half.inheritable = 0;
    }
    // SAFETY: capset reads `header` and two `CapData`, all valid for the call; it only
    // changes the calling thread's capability sets.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            std::ptr::from_mut(&mut header),
            data.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's effective capability set.
#[cfg(test)]
pub(super) fn effective() -> io::Result<u64> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: as in `restrict_thread`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            std::ptr::from_mut(&mut header),
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from(data[0].effective) | (u64::from(data[1].effective) << 32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_set_excludes_privilege_granting_capabilities() {
        const CAP_FSETID: u32 = 4;
        const CAP_SYS_ADMIN: u32 = 21;
        const CAP_SETFCAP: u32 = 31;
        for allow_devices in [false, true] {
            let set = kept(allow_devices);
            for cap in [CAP_FSETID, CAP_SYS_ADMIN, CAP_SETFCAP] {
                assert_eq!(set & (1 << cap), 0, "capability {cap} kept");
            }
            assert_eq!(set & (1 << CAP_MKNOD) != 0, allow_devices);
            assert_ne!(set & (1 << CAP_DAC_READ_SEARCH), 0);
        }
    }

    #[test]
    fn restricting_a_thread_leaves_the_others_alone() {
        let before = effective().unwrap();
        let inside = std::thread::spawn(|| {
            restrict_thread(false).unwrap();
            effective().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(inside & !kept(false), 0);
        assert_eq!(effective().unwrap(), before);
    }
}
