//! The stage1-kvm guest agent: PID 1 of the pod's VM.
//!
//! It sets up the guest's basic file systems, tells the host how far boot got through
//! boot markers, and powers the VM off. Later stages of the agent (control connection,
//! apps, exec sessions) plug into [`serve`]. Every way it can end reaches the host: a
//! clean power-off is announced with [`marker::Marker::ShutdownClean`], any failure or
//! panic with [`marker::Marker::AgentFailed`] before the VM resets, so the host never
//! mistakes a broken guest for a successful one.

mod console;
mod marker;
mod mounts;
mod power;
mod reaper;
#[cfg(test)]
mod test_support;

use std::process::ExitCode;
use std::time::Duration;

use marker::Marker;

/// Time given to processes between SIGTERM and SIGKILL when the agent powers off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    marker::init();
    marker::write(Marker::AgentStarted);
    let started_ms = console::boot_clock_ms();
    power::install_panic_hook();

    if std::process::id() != 1 {
        eprintln!(
            "stage1-kvm-agent: must run as PID 1 (the VM's init), not PID {}",
            std::process::id()
        );
        return ExitCode::from(254);
    }

    match run(started_ms) {
        Ok(()) => power::off(power::Verdict::Clean, SHUTDOWN_GRACE),
        Err(message) => {
            console::line(&format!("error: {message}"));
            power::off(power::Verdict::Failed, SHUTDOWN_GRACE)
        }
    }
}

fn run(started_ms: u64) -> Result<(), String> {
    mounts::mount_all().map_err(|e| e.to_string())?;
    marker::write(Marker::AgentReady);
    console::line(&format!(
        "ready boot_ms={} agent_ms={} cpus={} rss_kib={}",
        console::boot_clock_ms(),
        console::boot_clock_ms().saturating_sub(started_ms),
        std::thread::available_parallelism().map_or(0, usize::from),
        console::own_rss_kib().unwrap_or(0),
    ));
    serve()
}

/// The agent's work once the guest is up. Until the control connection exists there is
/// nothing to serve: the VM powers off right after reporting ready.
fn serve() -> Result<(), String> {
    reaper::reap_exited();
    Ok(())
}
