//! `minirkt stop [--force] UUID…` (rkt `rkt/stop.go`, `stage0/stop.go`, contract §2.4).

use super::{warn, Globals};
use crate::error::{Error, Result};
use crate::exec::{self, ChildStdout};
use crate::pod::Pod;
use crate::prepare::stage1_rootfs;
use crate::state::State;

/// Runs the stop entrypoint for each pod (fork+wait, cwd `$pod`); does not wait for the
/// pod to exit. Returns the exit code (254 if any pod failed).
pub fn stop(g: &Globals, force: bool, uuids: &[String]) -> Result<u8> {
    let pods = g.pods()?;
    let mut errors = 0;
    for u in uuids {
        let pod = match pods.resolve_uuid(u).and_then(|u| Pod::load(&pods, &u)) {
            Ok(p) => p,
            Err(e) => {
                warn("stop", format!("cannot get pod: {e}"));
                errors += 1;
                continue;
            }
        };
        if pod.state().is_after_run() {
            println!("pod {:?} is already stopped", pod.uuid);
            continue;
        }
        if pod.state() != State::Running {
            warn("stop", format!("pod {:?} is not running", pod.uuid));
            errors += 1;
            continue;
        }
        match stop_pod(&pod, force) {
            Ok(()) => println!("{:?}", pod.uuid),
            Err(e) => {
                warn("stop", format!("error stopping {:?}: {e}", pod.uuid));
                errors += 1;
            }
        }
    }
    if errors > 0 {
        warn("stop", format!("failed to stop {errors} pod(s)"));
        return Ok(crate::error::EXIT_FAILURE);
    }
    Ok(0)
}

fn stop_pod(pod: &Pod, force: bool) -> Result<()> {
    let dir = pod.path();
    let manifest = exec::stage1_manifest(&dir)?;
    let ep = exec::entrypoint(&manifest, exec::STOP_ENTRYPOINT)
        .map_err(|e| Error::Other(format!("rkt stop not implemented for pod's stage1: {e}")))?;
    let argv = exec::stop_argv(
        &exec::join_rootfs(&stage1_rootfs(&dir), &ep),
        force,
        &pod.uuid,
    );
    let status = exec::run_child(&argv, &dir, ChildStdout::Inherit)?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Other(format!("{} {status}", argv[0])))
    }
}
