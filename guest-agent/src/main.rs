//! The stage1-kvm guest agent: PID 1 of the pod's VM.
//!
//! It sets up the guest's basic file systems and tells the host how far boot got through
//! boot markers. Then, if the kernel command line says `stage1_kvm.agent=serve` (see
//! [`mode`]), it serves the host over vsock ([`serve`]: the control connection, apps,
//! exec sessions) until the host shuts the VM down; otherwise it powers off at once (the
//! boot-only check and benchmark). Every way it can end reaches the host: a clean
//! power-off is announced with [`marker::Marker::ShutdownClean`], any failure or panic
//! with [`marker::Marker::AgentFailed`] before the VM resets, so the host never mistakes
//! a broken guest for a successful one.

mod console;
mod hostname;
mod marker;
mod mode;
mod mounts;
mod power;
mod reaper;
mod serve;
mod shares;
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
    // Read once: the mode, the hostname and the shares all come from it.
    let cmdline = std::fs::read_to_string("/proc/cmdline")
        .map_err(|e| format!("reading /proc/cmdline: {e}"))?;
    match mode::from_cmdline(&cmdline)? {
        mode::Mode::BootCheck => {
            reaper::reap_exited();
            Ok(())
        }
        mode::Mode::Serve => serve_host(&cmdline),
    }
}

/// Serves the host on vsock until it shuts the VM down (`Ok`) or the pod fails (`Err`).
fn serve_host(cmdline: &str) -> Result<(), String> {
    // The pod's setup named on the kernel command line: hostname, then the shares.
    hostname::apply(cmdline)?;
    for share in shares::from_cmdline(cmdline)? {
        shares::mount_share(&share)?;
    }
    let port = protocol::AGENT_VSOCK_PORT;
    let listener = serve::VsockListener::bind(port)
        .map_err(|e| format!("cannot listen on vsock port {port}: {e}"))?;
    console::line(&format!("serving the host on vsock port {port}"));
    match serve::run(listener, serve::Config::guest()) {
        Ok(serve::Ending::Shutdown) => {
            nix::unistd::sync();
            Ok(())
        }
        Ok(serve::Ending::ControlLost(reason)) => Err(reason),
        Err(e) => Err(format!("the event loop failed: {e}")),
    }
}
