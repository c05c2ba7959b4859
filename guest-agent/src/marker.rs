//! Boot markers: single bytes written to a fixed I/O port that the host timestamps.
//!
//! The in-process VMM traps the port; under QEMU an `isa-debugcon` device on the same port
//! forwards the bytes to the host. On a machine with neither, the write goes nowhere,
//! which is harmless. The values are shared with the host (`vmm::devices::pseudo::boot_marker`).

use std::sync::atomic::{AtomicBool, Ordering};

/// The marker port (the "port 0xe9 hack" debug console of Bochs and QEMU).
pub const PORT: u16 = 0xe9;

/// What a marker says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Marker {
    /// `/init` is running: the kernel's part of boot is over.
    AgentStarted = 0x10,
    /// File systems are mounted and the agent is ready for work.
    AgentReady = 0x11,
    /// The agent is powering off after everything ended well.
    ShutdownClean = 0x1e,
    /// The agent failed (error or panic) and is resetting the VM.
    AgentFailed = 0x1f,
}

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Asks the kernel for access to the marker port. Without it markers are skipped and the
/// host sees a guest that never reports, which it treats as a failure.
pub fn init() {
    // SAFETY: ioperm only changes this process's I/O permission bitmap; it touches no
    // memory of ours.
    let rc = unsafe { libc::ioperm(libc::c_ulong::from(PORT), 1, 1) };
    if rc == 0 {
        ENABLED.store(true, Ordering::Relaxed);
    } else {
        eprintln!(
            "stage1-kvm-agent: warning: no access to the boot-marker port: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Writes one marker.
pub fn write(marker: Marker) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let value = marker as u8;
    // SAFETY: `init` granted this process access to PORT, so `out` cannot fault; the
    // instruction writes one byte to an I/O port and touches no memory.
    unsafe {
        std::arch::asm!("out dx, al", in("dx") PORT, in("al") value, options(nomem, nostack, preserves_flags));
    }
}
