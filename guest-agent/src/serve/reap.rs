//! Learning that children ended: `SIGCHLD` through a signalfd, then `waitpid`.
//!
//! As PID 1 the agent inherits every orphan of the guest, so there it waits for any child
//! (`waitpid(-1)`) and the loop ignores the pids it does not know. Elsewhere (the unit
//! tests run the loop inside the test process, next to other code that has children) it
//! waits only for its own children, by pid.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use protocol::ExitStatus;

use super::child::exit_status;

/// Whom to wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every child, orphans included (the agent is PID 1).
    All,
    /// Only the pids the loop started.
    Own,
}

/// The `SIGCHLD` signalfd.
#[derive(Debug)]
pub struct ChildEvents {
    fd: SignalFd,
    scope: Scope,
}

impl ChildEvents {
    /// Blocks `SIGCHLD` in the calling thread (so it stays pending for the signalfd
    /// instead of being delivered) and opens the signalfd.
    pub fn new(scope: Scope) -> io::Result<Self> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Self { fd, scope })
    }

    /// Consumes the pending notifications (several exits may share one).
    pub fn drain(&self) {
        while let Ok(Some(_)) = self.fd.read_signal() {}
    }

    /// Collects every child that ended: all of them, or those of `own` (see [`Scope`]).
    pub fn reap(&self, own: impl IntoIterator<Item = Pid>) -> Vec<(Pid, ExitStatus)> {
        let mut ended = Vec::new();
        match self.scope {
            Scope::All => loop {
                match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                    Ok(status) => ended.extend(exit_status(status)),
                    Err(Errno::EINTR) => {}
                    Err(e) => {
                        crate::console::line(&format!("error: waitpid: {e}"));
                        break;
                    }
                }
            },
            Scope::Own => {
                for pid in own {
                    if let Ok(status) = waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                        ended.extend(exit_status(status));
                    }
                }
            }
        }
        ended
    }
}

impl AsFd for ChildEvents {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
