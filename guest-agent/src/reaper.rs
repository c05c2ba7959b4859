//! Reaping: as PID 1 the agent inherits every orphan and must collect its exit status.

use nix::errno::Errno;
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Collects every child that has already exited; returns how many.
pub fn reap_exited() -> usize {
    let mut reaped = 0;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return reaped,
            Ok(_) => reaped += 1,
        }
    }
}

/// Whether any child (running or exited) is left.
pub fn has_children() -> bool {
    // waitid with WNOWAIT peeks without collecting; ECHILD means no child at all.
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    !matches!(waitid(Id::All, flags), Err(Errno::ECHILD))
}

/// Waits for every child to exit (used after SIGKILL to all).
pub fn reap_all_blocking() {
    while !matches!(waitpid(Pid::from_raw(-1), None), Err(Errno::ECHILD)) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn reaps_exited_children_and_sees_when_none_are_left() {
        let _turn = crate::test_support::children();
        // Spawned children are ours; Child is dropped without wait, as orphans would be.
        for _ in 0..3 {
            drop(Command::new("true").spawn().unwrap());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(has_children());
        let mut total = 0;
        while has_children() {
            total += reap_exited();
        }
        assert_eq!(total, 3);
        assert!(!has_children());
    }
}
