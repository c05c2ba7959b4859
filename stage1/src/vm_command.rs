//! `stage1-kvm vm`: boots the kernel and guest agent (or the freestanding test guest) with
//! an engine and reports how it went: the guest's own lines, each boot marker as it
//! arrives, and the boot-phase timings. The developer's way to exercise an engine alone,
//! with the vsock and virtio-fs devices asked for (`--vsock-socket`, `--share`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use vmm::devices::pseudo::boot_marker::Marker;
use vmm::engine::{self, EngineChoice, HostFacts, VirtioDevice, VmEnd, VmEvent, VmSpec};

use crate::fail;
use crate::guest_session::{self, Work};

/// Prefix of the guest agent's console lines.
const AGENT_PREFIX: &str = "stage1-kvm-agent: ";
/// Prefix of the test guest's console lines.
const TEST_GUEST_PREFIX: &str = "test-guest: ";

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
    /// Serve exec sessions (`stage1-kvm exec`) on the vsock socket until SIGINT/SIGTERM.
    #[arg(long, conflicts_with = "command")]
    serve: bool,
    /// The VM's vsock Unix socket (default: in the run directory); guest connections to
    /// host port P reach a listener at `<socket>_P`. Without a command or --serve, the VM
    /// gets a vsock device only when this is given.
    #[arg(long)]
    vsock_socket: Option<PathBuf>,
    /// Share a host directory with the guest over virtio-fs, mounted at /mnt/TAG
    /// (read-only with `:ro`) by the agent when it serves (a command or --serve);
    /// repeatable.
    #[arg(long = "share", value_name = "TAG=HOSTDIR[:ro]")]
    shares: Vec<String>,
    /// Give the command a pseudo-terminal.
    #[arg(long, requires = "command")]
    tty: bool,
    /// A command to run in the guest; its exit code becomes ours.
    #[arg(last = true)]
    command: Vec<String>,
}

pub fn run(args: &VmArgs) -> ExitCode {
    match boot(args) {
        Ok(code) => ExitCode::from(code),
        Err(message) => fail(&message),
    }
}

fn boot(args: &VmArgs) -> Result<u8, String> {
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
    let mut spec = VmSpec {
        kernel: args.kernel.clone(),
        initramfs: args.initramfs.clone(),
        extra_cmdline: args.append.clone(),
        vcpus: args.cpus,
        mem_mib: args.mem,
        debug: args.debug,
        boot_timeout: Duration::from_secs_f64(args.boot_timeout),
        run_dir: run_dir.path().to_owned(),
    };

    let shares = args
        .shares
        .iter()
        .map(|s| guest_session::Share::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    guest_session::check_tags(&shares)?;
    if args.serve || !args.command.is_empty() {
        let work = if args.serve {
            Work::Serve
        } else {
            Work::Command {
                argv: args.command.clone(),
                tty: args.tty,
            }
        };
        let socket = args
            .vsock_socket
            .clone()
            .unwrap_or_else(|| run_dir.path().join("vsock.sock"));
        return guest_session::run(selection.engine, spec, socket, shares, work, args.debug);
    }

    // Plain boot: the devices asked for, driven by whatever the guest is (the test guest
    // moves data through them; the agent only boots).
    let mut devices = Vec::new();
    if let Some(socket) = &args.vsock_socket {
        devices.push(VirtioDevice {
            name: "vsock".to_owned(),
            backend: Box::new(guest_session::vsock_device(socket)?),
        });
    }
    devices.extend(guest_session::share_devices(&shares, &mut spec)?);

    let (stop, mailbox) = engine::mailbox();
    let signals = crate::signals::on_terminate(move |name| {
        stop.stop(&format!("received {name}"));
    })?;

    let mut ready_line = None;
    let debug = args.debug;
    let run_started = Instant::now();
    let mut on_event = |event: &VmEvent| match event {
        VmEvent::Console(line) => {
            if let Some(agent) = line.strip_prefix(AGENT_PREFIX) {
                if agent.starts_with("ready ") {
                    ready_line = Some(agent.to_owned());
                }
                println!("{line}");
            } else if line.starts_with(TEST_GUEST_PREFIX) {
                println!("{line}");
            } else if debug {
                eprintln!("{line}");
            }
        }
        // As it arrives, so that whoever reads our output can time it too.
        VmEvent::Marker(marker, at) => println!(
            "marker {:#04x} {} +{:.1} ms",
            marker.value(),
            marker.name(),
            at.saturating_duration_since(run_started).as_secs_f64() * 1000.0
        ),
    };
    let end = selection.engine.run(&spec, devices, mailbox, &mut on_event);
    signals.close();
    let end = end.map_err(|e| e.to_string())?;
    if let Some(failure) = end.failure() {
        return Err(failure);
    }
    println!(
        "{}",
        timings(selection.engine.name(), &spec, &end, ready_line.as_deref())
    );
    Ok(0)
}

/// The boot-phase split: engine start → agent start (of which the kernel, by the guest's
/// clock), → agent ready, → VM gone; for the test guest: engine start → its entry, → its
/// devices probed, → done, → VM gone.
fn timings(engine: &str, spec: &VmSpec, end: &VmEnd, ready_line: Option<&str>) -> String {
    let t = &end.timeline;
    let ms = |at: Option<Instant>| {
        at.map_or("?".to_owned(), |at| {
            format!("{:.1}", (at - t.started).as_secs_f64() * 1000.0)
        })
    };
    if t.markers.first(Marker::TestGuestStarted).is_some() {
        return format!(
            "boot: engine {engine}, {} vCPU, {} MiB: start→guest {} ms, →probed {} ms, →done {} ms, →gone {} ms",
            spec.vcpus,
            spec.mem_mib,
            ms(t.markers.first(Marker::TestGuestStarted)),
            ms(t.markers.first(Marker::TestGuestProbed)),
            ms(t.markers.first(Marker::TestGuestDone)),
            ms(Some(t.ended)),
        );
    }
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

    fn end(markers: &[(Marker, u64)]) -> VmEnd {
        let started = Instant::now();
        let mut log = vmm::devices::pseudo::boot_marker::MarkerLog::default();
        for (marker, ms) in markers {
            log.record(*marker, started + Duration::from_millis(*ms));
        }
        VmEnd {
            outcome: vmm::engine::Outcome::Clean,
            timeline: vmm::engine::Timeline {
                started,
                markers: log,
                ended: started + Duration::from_millis(50),
            },
            console_tail: Vec::new(),
        }
    }

    fn spec() -> VmSpec {
        VmSpec {
            kernel: "k".into(),
            initramfs: None,
            extra_cmdline: Vec::new(),
            vcpus: 2,
            mem_mib: 64,
            debug: false,
            boot_timeout: Duration::from_secs(1),
            run_dir: "/tmp".into(),
        }
    }

    #[test]
    fn test_guest_timings_follow_its_markers() {
        let line = timings(
            "kvm",
            &spec(),
            &end(&[
                (Marker::TestGuestStarted, 2),
                (Marker::TestGuestProbed, 3),
                (Marker::TestGuestDone, 4),
            ]),
            None,
        );
        assert_eq!(
            line,
            "boot: engine kvm, 2 vCPU, 64 MiB: start→guest 2.0 ms, →probed 3.0 ms, →done 4.0 ms, →gone 50.0 ms"
        );
        let agent = timings(
            "qemu",
            &spec(),
            &end(&[(Marker::AgentStarted, 10), (Marker::AgentReady, 20)]),
            Some("ready boot_ms=15 agent_ms=5"),
        );
        assert_eq!(
            agent,
            "boot: engine qemu, 2 vCPU, 64 MiB: start→agent 10.0 ms (kernel 10 ms by the guest clock), →ready 20.0 ms, →gone 50.0 ms"
        );
    }

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
