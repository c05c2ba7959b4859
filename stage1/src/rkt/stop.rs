//! The `stop` entrypoint (contract §2.4, §9.9): graceful by default — SIGTERM to the `run`
//! process, which stops the apps through the agent (SIGTERM, SIGKILL after a timeout),
//! writes their statuses and powers the VM off; `--force` SIGKILLs it, and the VMM dies
//! with it (PR_SET_PDEATHSIG). Exits 0 once the request is delivered.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::args::StopArgs;
use super::layout::PodLayout;

/// Delivers the stop request.
pub fn stop(args: &StopArgs) -> Result<(), String> {
    let layout = PodLayout::current()?;
    let pid = layout
        .read_pid()
        .map_err(|e| format!("pod {} is not running: {e}", args.uuid))?;
    let pid = Pid::from_raw(
        i32::try_from(pid).map_err(|_| format!("pod {}: PID {pid} out of range", args.uuid))?,
    );
    let signal = if args.force {
        Signal::SIGKILL
    } else {
        Signal::SIGTERM
    };
    kill(pid, signal).map_err(|e| format!("pod {} is not running (PID {pid}: {e})", args.uuid))
}
