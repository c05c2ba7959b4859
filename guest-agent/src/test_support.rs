//! What the crate's tests share: the tests that have children take turns.
//!
//! Children and `SIGCHLD` are process-wide, and `cargo test` runs tests on parallel
//! threads of one process: a `waitpid(-1)` in one test would collect another test's
//! child, and one test's signalfd would consume the `SIGCHLD` meant for another. So
//! every test that starts processes holds [`children`] while it runs, and `SIGCHLD` is
//! blocked in every thread (the mask is set in the main thread before the test harness
//! starts any other), so that it stays pending for whichever signalfd is open instead of
//! being delivered to and dropped by a thread that does not wait for it.

use std::sync::{Mutex, MutexGuard};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

static CHILDREN: Mutex<()> = Mutex::new(());

/// Takes the turn for tests that start processes (a panic in another test does not
/// poison it for the rest).
pub fn children() -> MutexGuard<'static, ()> {
    CHILDREN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

extern "C" fn block_sigchld() {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None);
}

/// Runs [`block_sigchld`] in the main thread before `main`, like a C constructor, so
/// every thread the test harness creates inherits the mask.
#[used]
#[link_section = ".init_array"]
static BLOCK_SIGCHLD: extern "C" fn() = block_sigchld;
