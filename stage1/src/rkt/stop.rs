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
    // The pid file outlives the pod: never signal whoever has that PID now.
    if !is_run_process(pid, &args.uuid) {
        return Err(format!(
            "pod {} is not running (PID {pid} of its pid file is not its run process)",
            args.uuid
        ));
    }
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

/// Whether `pid` is the pod's `run` process: stage0 exec'd it with the pod's UUID as its
/// last argument (contract §2.1), and it keeps that command line (a zombie has none).
fn is_run_process(pid: u32, uuid: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| last_arg_is(&cmdline, uuid))
}

fn last_arg_is(cmdline: &[u8], uuid: &str) -> bool {
    cmdline
        .split(|&b| b == 0)
        .rfind(|arg| !arg.is_empty())
        .is_some_and(|last| last == uuid.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_run_process_of_the_pod_is_signalled() {
        let uuid = "8a6b6a4c-0000-4000-8000-000000000001";
        assert!(last_arg_is(
            format!("/pods/run/x/stage1/rootfs/init\0--net=none\0{uuid}\0").as_bytes(),
            uuid
        ));
        assert!(!last_arg_is(b"/bin/sleep\x0030\0", uuid));
        assert!(!last_arg_is(
            format!("init\0{uuid}\0--extra\0").as_bytes(),
            uuid
        ));
        assert!(!last_arg_is(b"", uuid));
        // This test process is no pod's run process.
        assert!(!is_run_process(std::process::id(), uuid));
        assert!(!is_run_process(u32::MAX, uuid));
    }
}
