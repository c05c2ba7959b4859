//! `stage1-kvm vm`: boots the kernel and guest agent with an engine and reports how it
//! went, with the boot-phase timings. The developer's way to exercise an engine alone.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use vmm::devices::pseudo::boot_marker::Marker;
use vmm::engine::{self, EngineChoice, HostFacts, VmEnd, VmEvent, VmSpec};

use crate::fail;

/// Prefix of the guest agent's console lines.
const AGENT_PREFIX: &str = "stage1-kvm-agent: ";

#[derive(Debug, clap::Args)]
pub struct VmArgs {
    /// Engine: auto, kvm or qemu.
    #[arg(long, default_value = "auto", env = "STAGE1_KVM_ENGINE")]
    engine: String,
    /// Uncompressed kernel (vmlinux) with a PVH entry point, or the test guest's ELF.
    #[arg(long)]
    kernel: PathBuf,
    /// Initramfs whose /init is the guest agent (none for the test guest).
    #[arg(long)]
    initramfs: Option<PathBuf>,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u8,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    mem: u32,
    /// Show the kernel's console messages (no `quiet`).
    #[arg(long)]
    debug: bool,
    /// Seconds the guest may take to reach the agent.
    #[arg(long, default_value_t = 30.0)]
    boot_timeout: f64,
    /// The KVM device.
    #[arg(long, default_value = vmm::host::DEFAULT_KVM_PATH)]
    kvm_device: PathBuf,
    /// Extra kernel command line arguments.
    #[arg(long = "append", value_name = "ARG")]
    append: Vec<String>,
}

pub fn run(args: &VmArgs) -> ExitCode {
    match boot(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

fn boot(args: &VmArgs) -> Result<(), String> {
    let choice: EngineChoice = args.engine.parse()?;
    if !(args.boot_timeout.is_finite() && args.boot_timeout > 0.0) {
        return Err(format!(
            "--boot-timeout {}: must be a positive number of seconds",
            args.boot_timeout
        ));
    }
    let facts = HostFacts::probe(&args.kvm_device);
    let selection =
        engine::select(choice, &facts, args.kvm_device.clone()).map_err(|e| e.to_string())?;
    if let Some(notice) = &selection.notice {
        eprintln!("stage1-kvm: {notice}");
    }
    let run_dir = tempfile::Builder::new()
        .prefix("stage1-kvm-vm.")
        .tempdir()
        .map_err(|e| {
            format!(
                "creating a run directory in {}: {e}",
                std::env::temp_dir().display()
            )
        })?;
    let spec = VmSpec {
        kernel: args.kernel.clone(),
        initramfs: args.initramfs.clone(),
        extra_cmdline: args.append.clone(),
        vcpus: args.cpus,
        mem_mib: args.mem,
        debug: args.debug,
        boot_timeout: Duration::from_secs_f64(args.boot_timeout),
        run_dir: run_dir.path().to_owned(),
    };

    let (stop, mailbox) = engine::mailbox();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| format!("installing signal handlers: {e}"))?;
    let signal_handle = signals.handle();
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            let name = if signal == signal_hook::consts::SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            stop.stop(&format!("received {name}"));
        }
    });

    let mut ready_line = None;
    let debug = args.debug;
    let mut on_event = |event: &VmEvent| {
        if let VmEvent::Console(line) = event {
            if let Some(agent) = line.strip_prefix(AGENT_PREFIX) {
                if agent.starts_with("ready ") {
                    ready_line = Some(agent.to_owned());
                }
                println!("{line}");
            } else if debug {
                eprintln!("{line}");
            }
        }
    };
    let end = selection
        .engine
        .run(&spec, Vec::new(), mailbox, &mut on_event);
    signal_handle.close();
    let end = end.map_err(|e| e.to_string())?;
    if let Some(failure) = end.failure() {
        return Err(failure);
    }
    println!(
        "{}",
        timings(selection.engine.name(), &spec, &end, ready_line.as_deref())
    );
    Ok(())
}

/// The boot-phase split: engine start → agent start (of which the kernel, by the guest's
/// clock), → agent ready, → VM gone.
fn timings(engine: &str, spec: &VmSpec, end: &VmEnd, ready_line: Option<&str>) -> String {
    let t = &end.timeline;
    let ms = |at: Option<Instant>| {
        at.map_or("?".to_owned(), |at| {
            format!("{:.1}", (at - t.started).as_secs_f64() * 1000.0)
        })
    };
    let kernel = ready_line
        .and_then(|l| field(l, "boot_ms"))
        .and_then(|boot| {
            let agent = field(ready_line?, "agent_ms")?;
            Some(boot.saturating_sub(agent))
        });
    format!(
        "boot: engine {engine}, {} vCPU, {} MiB: start→agent {} ms (kernel {} ms by the guest clock), →ready {} ms, →gone {} ms",
        spec.vcpus,
        spec.mem_mib,
        ms(t.markers.first(Marker::AgentStarted)),
        kernel.map_or("?".to_owned(), |k| k.to_string()),
        ms(t.markers.first(Marker::AgentReady)),
        ms(Some(t.ended)),
    )
}

/// The numeric value of `key=N` in an agent line.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numeric_fields_of_the_ready_line() {
        let line = "ready boot_ms=412 agent_ms=15 rss_kib=820";
        assert_eq!(field(line, "boot_ms"), Some(412));
        assert_eq!(field(line, "agent_ms"), Some(15));
        assert_eq!(field(line, "rss_kib"), Some(820));
        assert_eq!(field(line, "boot"), None);
        assert_eq!(field("ready boot_ms=x", "boot_ms"), None);
    }
}
