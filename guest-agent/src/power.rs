//! Ending the VM: stop every process, report the verdict, reset.
//!
//! The kernel runs with `reboot=t` and the engines treat a guest reset as the end of the
//! VM (`-no-reboot` under QEMU, `KVM_EXIT_SHUTDOWN` in our VMM), so "power off" is a
//! reboot. The verdict marker written just before tells the host whether it was clean.

use std::time::{Duration, Instant};

use nix::sys::reboot::{reboot, RebootMode};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::marker::{self, Marker};
use crate::{console, reaper};

/// How the agent ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Everything the host asked for was done.
    Clean,
    /// The agent hit an error it reported on the console.
    Failed,
}

/// Terminates every other process (SIGTERM, then SIGKILL after `grace`), reports the
/// verdict and resets the VM. Never returns.
pub fn off(verdict: Verdict, grace: Duration) -> ! {
    terminate_all(grace);
    console::line(match verdict {
        Verdict::Clean => "powering off",
        Verdict::Failed => "powering off after a failure",
    });
    reset(verdict)
}

fn terminate_all(grace: Duration) {
    // kill(-1) reaches every process but PID 1; ESRCH just means there are none.
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while reaper::has_children() && Instant::now() < deadline {
        reaper::reap_exited();
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    reaper::reap_all_blocking();
}

fn reset(verdict: Verdict) -> ! {
    marker::write(match verdict {
        Verdict::Clean => Marker::ShutdownClean,
        Verdict::Failed => Marker::AgentFailed,
    });
    // nix wraps reboot(2). It only returns on failure, and then the best we
    // can do as PID 1 is to exit, which panics the kernel (`panic=-1` resets the VM).
    let err = reboot(RebootMode::RB_AUTOBOOT).unwrap_err();
    eprintln!("{}reboot failed: {err}", console::PREFIX);
    std::process::abort()
}

/// On a panic: print it, report a failure and reset at once. As PID 1 the agent must not
/// unwind into an exit (that would be a kernel panic with a less useful message).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("{}panic: {info}", console::PREFIX);
        reset(Verdict::Failed);
    }));
}
