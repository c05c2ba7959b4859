//! A vCPU: its boot configuration (CPUID, MSRs, LAPIC, FPU, and for the boot vCPU the PVH
//! entry registers), one step of `KVM_RUN`, and the kick that gets its thread out of
//! `KVM_RUN` from another thread.
//!
//! The kick is a real-time signal sent to the vCPU's thread. Its handler sets
//! `kvm_run.immediate_exit`, so the vCPU leaves `KVM_RUN` with `EINTR` whether the signal
//! arrives inside the ioctl or just before it (a plain signal arriving just before would be
//! lost, and an AP halted waiting for INIT/SIPI would sleep forever).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use kvm_bindings::{kvm_run, CpuId, KVM_INTERNAL_ERROR_EMULATION};
use kvm_ioctls::VcpuFd;

use super::{ioctl, VstateError};
use crate::engine::kvm::arch::x86_64::{lapic, msr, regs};
use crate::engine::kvm::exit::{handle_exit, Fatal, GuestEnd, IoBuses, Step};

/// A vCPU of the VM.
#[derive(Debug)]
pub struct Vcpu {
    fd: VcpuFd,
    index: u8,
}

impl Vcpu {
    pub(super) fn new(fd: VcpuFd, index: u8) -> Self {
        Self { fd, index }
    }

    /// The vCPU's index (and APIC ID).
    pub fn index(&self) -> u8 {
        self.index
    }

    fn what(&self, op: &str) -> String {
        format!("{op} on vCPU {}", self.index)
    }

    /// What every vCPU needs before it runs: its CPUID, the boot MSRs, LINT0/LINT1 wiring
    /// and a reset FPU.
    pub fn configure(&self, cpuid: &CpuId) -> Result<(), VstateError> {
        self.fd
            .set_cpuid2(cpuid)
            .map_err(ioctl(self.what("KVM_SET_CPUID2")))?;
        let msrs = msr::boot_msr_entries();
        let set = self
            .fd
            .set_msrs(&msrs)
            .map_err(ioctl(self.what("KVM_SET_MSRS")))?;
        if set != msrs.as_slice().len() {
            // KVM stops at the first MSR it refuses and returns how many it set.
            let refused = msrs.as_slice().get(set).map_or(0, |e| e.index);
            return Err(VstateError::Ioctl {
                what: self.what(&format!("KVM_SET_MSRS (MSR {refused:#x} refused)")),
                source: kvm_ioctls::Error::new(libc::EINVAL),
            });
        }
        let state = self
            .fd
            .get_lapic()
            .map_err(ioctl(self.what("KVM_GET_LAPIC")))?;
        self.fd
            .set_lapic(&lapic::with_lint_modes(state))
            .map_err(ioctl(self.what("KVM_SET_LAPIC")))?;
        self.fd
            .set_fpu(&regs::boot_fpu())
            .map_err(ioctl(self.what("KVM_SET_FPU")))
    }

    /// Puts the boot vCPU at the PVH entry point `entry`.
    pub fn configure_pvh_entry(&self, entry: u64) -> Result<(), VstateError> {
        let sregs = self
            .fd
            .get_sregs()
            .map_err(ioctl(self.what("KVM_GET_SREGS")))?;
        self.fd
            .set_sregs(&regs::pvh_sregs(sregs))
            .map_err(ioctl(self.what("KVM_SET_SREGS")))?;
        self.fd
            .set_regs(&regs::pvh_regs(entry))
            .map_err(ioctl(self.what("KVM_SET_REGS")))
    }

    /// The multiprocessing state (`KVM_MP_STATE_*`): with the in-kernel LAPIC, KVM makes
    /// vCPU 0 runnable and leaves the others waiting for INIT/SIPI.
    pub fn mp_state(&self) -> Result<u32, VstateError> {
        self.fd
            .get_mp_state()
            .map(|s| s.mp_state)
            .map_err(ioctl(self.what("KVM_GET_MP_STATE")))
    }

    /// Runs the vCPU until the guest ends (exit port, reset, a fatal exit) or `stop` is set
    /// and the thread kicked; `None` in the latter case. Call it on the thread that the
    /// kick signal is sent to.
    pub fn run(&mut self, io: &IoBuses, stop: &AtomicBool) -> Option<GuestEnd> {
        let _target = KickTarget::install(self.fd.get_kvm_run());
        loop {
            // Checked after the kick target is installed: a stop requested earlier was
            // followed by a kick that may have found no target yet.
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            match self.fd.run() {
                Ok(exit) => match handle_exit(exit, io) {
                    Step::Continue => {}
                    Step::End(end) => return Some(end),
                    Step::Fatal(fatal) => return Some(GuestEnd::Failed(self.describe(&fatal))),
                },
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.fd.set_kvm_immediate_exit(0);
                }
                Err(e) => {
                    return Some(GuestEnd::Failed(format!(
                        "vCPU {}: KVM_RUN: {e}",
                        self.index
                    )))
                }
            }
        }
    }

    /// A fatal exit explained with what KVM says about it and where the guest was.
    fn describe(&mut self, fatal: &Fatal) -> String {
        let mut text = format!("vCPU {}: {fatal}", self.index);
        if let Fatal::InternalError = fatal {
            // SAFETY: the last exit was KVM_EXIT_INTERNAL_ERROR, for which the kernel
            // fills the `internal` member of the exit union.
            let suberror = unsafe { self.fd.get_kvm_run().__bindgen_anon_1.internal.suberror };
            let kind = match suberror {
                KVM_INTERNAL_ERROR_EMULATION => " (instruction emulation failed)",
                _ => "",
            };
            text.push_str(&format!(", suberror {suberror}{kind}"));
        }
        if let Ok(regs) = self.fd.get_regs() {
            text.push_str(&format!(" at rip {:#x}", regs.rip));
        }
        text
    }
}

thread_local! {
    /// The `kvm_run` of the vCPU this thread runs, for the kick handler.
    static KICK_TARGET: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

/// While alive, a kick signal to this thread sets `immediate_exit` in its `kvm_run`. It
/// lives inside [`Vcpu::run`], so the mapping outlives it.
struct KickTarget;

impl KickTarget {
    fn install(run: *mut kvm_run) -> Self {
        KICK_TARGET.with(|target| target.set(run));
        Self
    }
}

impl Drop for KickTarget {
    fn drop(&mut self) {
        KICK_TARGET.with(|target| target.set(std::ptr::null_mut()));
    }
}

/// The signal that kicks vCPU threads.
pub fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn handle_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Async-signal-safe: a const-initialized thread-local without destructor is a plain
    // TLS load, and the store is a single volatile byte write.
    KICK_TARGET.with(|target| {
        let run = target.get();
        if !run.is_null() {
            // SAFETY: a non-null target is the live kvm_run mapping of the vCPU this thread
            // runs: it is set by `kick_target` and cleared before the vCPU (and its
            // mapping) can be dropped, on this same thread.
            unsafe { std::ptr::addr_of_mut!((*run).immediate_exit).write_volatile(1) };
        }
    });
}

/// Installs the kick handler (once per process; a failure is reported every time).
pub fn install_kick_handler() -> Result<(), VstateError> {
    static INSTALLED: OnceLock<Result<(), kvm_ioctls::Error>> = OnceLock::new();
    let installed = *INSTALLED
        .get_or_init(|| vmm_sys_util::signal::register_signal_handler(kick_signal(), handle_kick));
    installed.map_err(ioctl("installing the vCPU kick signal handler"))
}
