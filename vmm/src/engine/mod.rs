//! Engines: what runs a guest. Both boot the same PVH kernel and initramfs and report the
//! same events (console lines, boot markers) and the same [`VmEnd`].
//!
//! - `kvm`: our in-process VMM on `/dev/kvm` (hosts with hardware virtualization).
//! - `qemu`: `qemu-system-x86_64 -M microvm` as a child of this process.
//!
//! [`select`] implements `STAGE1_KVM_ENGINE=auto|kvm|qemu` (DESIGN.md, "Two engines").

pub mod kvm;
mod mailbox;
pub mod qemu;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

pub use mailbox::{mailbox, Mailbox, StopHandle};

use crate::boot::{check_initramfs, kernel_image::KernelError, PvhKernel};
use crate::devices::pseudo::boot_marker::{Marker, MarkerLog};
use crate::devices::virtio::backend::VirtioBackend;

/// vCPU counts an engine accepts.
pub const VCPU_RANGE: std::ops::RangeInclusive<u8> = 1..=32;
/// Smallest guest memory in MiB: kernel, initramfs and the agent need about 40.
pub const MIN_MEM_MIB: u32 = 64;
/// Largest guest memory in MiB (further bounded by the host's memory).
pub const MAX_MEM_MIB: u32 = 256 * 1024;

/// How many console lines are kept to explain a failure.
const CONSOLE_TAIL_LINES: usize = 20;

/// Everything an engine needs to boot a guest.
#[derive(Clone, Debug)]
pub struct VmSpec {
    /// Uncompressed kernel with a PVH entry note.
    pub kernel: PathBuf,
    /// The initramfs (newc cpio), if the guest has one (the test guest does not).
    pub initramfs: Option<PathBuf>,
    /// Kernel command line arguments after the engine's own.
    pub extra_cmdline: Vec<String>,
    /// Number of vCPUs.
    pub vcpus: u8,
    /// Guest memory in MiB.
    pub mem_mib: u32,
    /// Kernel console messages instead of `quiet`.
    pub debug: bool,
    /// How long the guest may take to write its first boot marker.
    pub boot_timeout: Duration,
    /// A directory of ours for the engine's sockets; it must exist.
    pub run_dir: PathBuf,
}

/// A problem that stops an engine from booting the guest at all.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The kernel cannot be booted.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The initramfs cannot be used.
    #[error("{0}")]
    Initramfs(String),
    /// A size is out of range.
    #[error("{0}")]
    OutOfRange(String),
    /// The engine cannot run on this host (binary or device missing).
    #[error("{0}")]
    Unavailable(String),
    /// Our VMM could not build the VM.
    #[error(transparent)]
    Kvm(#[from] kvm::BuildError),
    /// Starting the engine failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl EngineError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

impl VmSpec {
    /// The checks every engine makes before starting: boot files and sizes.
    pub fn validate(&self) -> Result<PvhKernel, EngineError> {
        if !VCPU_RANGE.contains(&self.vcpus) {
            return Err(EngineError::OutOfRange(format!(
                "{} vCPUs requested; between {} and {} are supported",
                self.vcpus,
                VCPU_RANGE.start(),
                VCPU_RANGE.end()
            )));
        }
        let host_mib = crate::host::total_memory_mib().unwrap_or(u64::from(MAX_MEM_MIB));
        let max = u64::from(MAX_MEM_MIB).min(host_mib);
        if self.mem_mib < MIN_MEM_MIB || u64::from(self.mem_mib) > max {
            return Err(EngineError::OutOfRange(format!(
                "{} MiB of guest memory requested; between {MIN_MEM_MIB} and {max} MiB are supported on this host",
                self.mem_mib
            )));
        }
        let kernel = PvhKernel::check(&self.kernel)?;
        if let Some(initramfs) = &self.initramfs {
            check_initramfs(initramfs).map_err(EngineError::Initramfs)?;
        }
        Ok(kernel)
    }

    /// The kernel command line: ours, then the caller's.
    pub fn cmdline(&self) -> String {
        // reboot=t: the agent's "power off" is a reboot by triple fault, which every engine
        // turns into the end of the VM. panic=-1: a kernel panic resets at once instead of
        // hanging, so a crashed guest ends and is reported.
        let mut args = vec!["console=ttyS0", "reboot=t", "panic=-1"];
        if !self.debug {
            args.push("quiet");
        }
        let mut cmdline = args.join(" ");
        for extra in &self.extra_cmdline {
            cmdline.push(' ');
            cmdline.push_str(extra);
        }
        cmdline
    }
}

/// A virtio device for the guest: its backend, and a name for its socket and logs.
pub struct VirtioDevice {
    /// Short name, unique in the VM (e.g. `vsock`, `fs0`).
    pub name: String,
    /// The device's backend.
    pub backend: Box<dyn VirtioBackend>,
}

impl std::fmt::Debug for VirtioDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioDevice")
            .field("name", &self.name)
            .field("device_type", &self.backend.device_type())
            .finish()
    }
}

/// What an engine reports while the guest runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmEvent {
    /// A line the guest printed on its serial console.
    Console(String),
    /// A boot marker and when it arrived.
    Marker(Marker, Instant),
}

/// How the guest ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The guest reported a clean end before it reset.
    Clean,
    /// The agent reported a failure (its reason is on the console).
    AgentFailed,
    /// The guest reset or stopped without a verdict; `agent_started` tells whether the
    /// agent ever ran (if not, the kernel failed).
    NoVerdict {
        /// Whether the agent's first marker arrived.
        agent_started: bool,
    },
    /// The guest did not write its first marker within the boot timeout.
    BootTimeout(Duration),
    /// The VM was stopped on request.
    Stopped(String),
    /// The engine itself failed (e.g. QEMU exited with an error, or KVM could not run
    /// the guest).
    EngineFailed(String),
    /// A guest without an agent (the test guest) reported failure or ended without
    /// reporting, as described.
    GuestFailed(String),
}

/// Times of a run, for the boot-phase split.
#[derive(Clone, Debug)]
pub struct Timeline {
    /// When the engine started (before spawning or creating anything).
    pub started: Instant,
    /// Every marker with its arrival time.
    pub markers: MarkerLog,
    /// When the VM was seen gone.
    pub ended: Instant,
}

/// The end of a VM.
#[derive(Clone, Debug)]
pub struct VmEnd {
    /// How it ended.
    pub outcome: Outcome,
    /// When things happened.
    pub timeline: Timeline,
    /// The last console lines, to explain a failure.
    pub console_tail: Vec<String>,
}

impl VmEnd {
    /// One line saying why the run failed, or `None` if it was clean.
    pub fn failure(&self) -> Option<String> {
        let last_line = || {
            self.console_tail
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| format!(" (last console line: {:?})", l.trim()))
                .unwrap_or_default()
        };
        match &self.outcome {
            Outcome::Clean => None,
            Outcome::AgentFailed => Some(format!("the guest agent failed{}", last_line())),
            Outcome::NoVerdict {
                agent_started: true,
            } => Some(format!(
                "the guest agent stopped without reporting (guest crash or reset){}",
                last_line()
            )),
            Outcome::NoVerdict {
                agent_started: false,
            } => Some(format!(
                "the guest ended before the agent started (kernel failure?){}",
                last_line()
            )),
            Outcome::BootTimeout(t) => Some(format!(
                "the guest did not reach the agent within {} s{}",
                t.as_secs_f32(),
                last_line()
            )),
            Outcome::Stopped(reason) => Some(format!("the VM was stopped: {reason}")),
            Outcome::EngineFailed(reason) => Some(reason.clone()),
            Outcome::GuestFailed(reason) => Some(format!("{reason}{}", last_line())),
        }
    }
}

/// Something that runs a guest.
pub trait Engine: std::fmt::Debug + Send {
    /// The engine's name (`kvm` or `qemu`).
    fn name(&self) -> &'static str;

    /// Boots the guest described by `spec` with `devices` and runs it to its end, calling `on_event` for
    /// console lines and markers as they happen. Stop requests arrive through the
    /// [`StopHandle`]s of `mailbox`. Returns an error only if the guest could not be
    /// started; every end of a started guest is a [`VmEnd`].
    fn run(
        &self,
        spec: &VmSpec,
        devices: Vec<VirtioDevice>,
        mailbox: Mailbox,
        on_event: &mut dyn FnMut(&VmEvent),
    ) -> Result<VmEnd, EngineError>;
}

/// The engine choice of `STAGE1_KVM_ENGINE` / `--engine`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    /// `kvm` when the host has hardware virtualization and a usable `/dev/kvm`, else `qemu`.
    Auto,
    /// Our VMM, strictly.
    Kvm,
    /// QEMU microvm, strictly.
    Qemu,
}

impl FromStr for EngineChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "kvm" => Ok(Self::Kvm),
            "qemu" => Ok(Self::Qemu),
            other => Err(format!(
                "unknown engine {other:?}: expected auto, kvm or qemu"
            )),
        }
    }
}

/// What [`select`] needs to know about the host.
#[derive(Clone, Debug)]
pub struct HostFacts {
    /// `vmx`/`svm` present.
    pub hardware_virtualization: bool,
    /// `/dev/kvm` opens read-write, or why not.
    pub kvm_device: Result<(), String>,
}

impl HostFacts {
    /// Reads the facts off this host.
    pub fn probe(kvm_path: &std::path::Path) -> Self {
        Self {
            hardware_virtualization: crate::host::has_hardware_virtualization(),
            kvm_device: crate::host::check_kvm_device(kvm_path),
        }
    }
}

/// Which engine runs, and the one-line notice to print when `auto` fell back.
#[derive(Debug)]
pub struct Selection {
    /// The engine to run.
    pub engine: Box<dyn Engine>,
    /// Why `auto` did not pick `kvm`, if it did not.
    pub notice: Option<String>,
}

/// Chooses the engine for `choice` on a host described by `facts`.
pub fn select(
    choice: EngineChoice,
    facts: &HostFacts,
    kvm_path: PathBuf,
) -> Result<Selection, EngineError> {
    match choice {
        EngineChoice::Kvm => match kvm::unusable_reason(facts) {
            Some(reason) => Err(EngineError::Unavailable(format!("engine kvm: {reason}"))),
            None => Ok(Selection {
                engine: Box::new(kvm::KvmEngine::new(kvm_path)),
                notice: None,
            }),
        },
        EngineChoice::Qemu => Ok(Selection {
            engine: Box::new(qemu::QemuEngine::locate(facts)?),
            notice: None,
        }),
        EngineChoice::Auto => match kvm::auto_declines(facts) {
            None => Ok(Selection {
                engine: Box::new(kvm::KvmEngine::new(kvm_path)),
                notice: None,
            }),
            Some(reason) => Ok(Selection {
                engine: Box::new(qemu::QemuEngine::locate(facts)?),
                notice: Some(format!("engine auto: using qemu ({reason})")),
            }),
        },
    }
}

/// Keeps the last [`CONSOLE_TAIL_LINES`] console lines.
#[derive(Debug, Default)]
pub(crate) struct ConsoleTail(std::collections::VecDeque<String>);

impl ConsoleTail {
    pub(crate) fn push(&mut self, line: &str) {
        if self.0.len() == CONSOLE_TAIL_LINES {
            self.0.pop_front();
        }
        self.0.push_back(line.to_owned());
    }

    pub(crate) fn into_vec(self) -> Vec<String> {
        self.0.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &std::path::Path) -> VmSpec {
        let kernel = dir.join("vmlinux");
        std::fs::write(
            &kernel,
            crate::boot::kernel_image::tests::pvh_elf(0x100_0000),
        )
        .unwrap();
        let initramfs = dir.join("initramfs");
        std::fs::write(&initramfs, b"070701").unwrap();
        VmSpec {
            kernel,
            initramfs: Some(initramfs),
            extra_cmdline: vec!["foo=bar".into()],
            vcpus: 1,
            mem_mib: 128,
            debug: false,
            boot_timeout: Duration::from_secs(5),
            run_dir: dir.to_owned(),
        }
    }

    #[test]
    fn validate_accepts_a_good_spec_and_rejects_sizes_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let good = spec(dir.path());
        assert_eq!(good.validate().unwrap().pvh_entry, 0x100_0000);
        for (vcpus, mem) in [(0, 128), (33, 128), (1, 63), (1, MAX_MEM_MIB + 1)] {
            let bad = VmSpec {
                vcpus,
                mem_mib: mem,
                ..good.clone()
            };
            assert!(
                matches!(bad.validate(), Err(EngineError::OutOfRange(_))),
                "{vcpus} {mem}"
            );
        }
    }

    #[test]
    fn validate_rejects_missing_boot_files() {
        let dir = tempfile::tempdir().unwrap();
        let good = spec(dir.path());
        let no_kernel = VmSpec {
            kernel: dir.path().join("nope"),
            ..good.clone()
        };
        assert!(matches!(
            no_kernel.validate(),
            Err(EngineError::Kernel(KernelError::Io { .. }))
        ));
        let no_initramfs = VmSpec {
            initramfs: Some(dir.path().join("nope")),
            ..good.clone()
        };
        assert!(matches!(
            no_initramfs.validate(),
            Err(EngineError::Initramfs(_))
        ));
        let without_initramfs = VmSpec {
            initramfs: None,
            ..good
        };
        assert!(
            without_initramfs.validate().is_ok(),
            "an initramfs is optional"
        );
    }

    #[test]
    fn cmdline_is_quiet_unless_debugging_and_keeps_extras_last() {
        let dir = tempfile::tempdir().unwrap();
        let quiet = spec(dir.path());
        assert_eq!(
            quiet.cmdline(),
            "console=ttyS0 reboot=t panic=-1 quiet foo=bar"
        );
        let debug = VmSpec {
            debug: true,
            ..quiet
        };
        assert_eq!(debug.cmdline(), "console=ttyS0 reboot=t panic=-1 foo=bar");
    }

    #[test]
    fn engine_choice_parses_the_three_names_only() {
        assert_eq!("auto".parse(), Ok(EngineChoice::Auto));
        assert_eq!("kvm".parse(), Ok(EngineChoice::Kvm));
        assert_eq!("qemu".parse(), Ok(EngineChoice::Qemu));
        assert!("firecracker"
            .parse::<EngineChoice>()
            .unwrap_err()
            .contains("unknown engine"));
    }

    #[test]
    fn failures_name_the_last_console_line() {
        let now = Instant::now();
        let end = |outcome| VmEnd {
            outcome,
            timeline: Timeline {
                started: now,
                markers: MarkerLog::default(),
                ended: now,
            },
            console_tail: vec!["Kernel panic - not syncing: VFS".into(), "  ".into()],
        };
        assert_eq!(end(Outcome::Clean).failure(), None);
        let text = end(Outcome::NoVerdict {
            agent_started: false,
        })
        .failure()
        .unwrap();
        assert!(
            text.contains("before the agent started") && text.contains("Kernel panic"),
            "{text}"
        );
        let text = end(Outcome::BootTimeout(Duration::from_secs(3)))
            .failure()
            .unwrap();
        assert!(text.contains("within 3 s"), "{text}");
    }

    #[test]
    fn console_tail_keeps_the_last_lines() {
        let mut tail = ConsoleTail::default();
        for i in 0..30 {
            tail.push(&i.to_string());
        }
        let lines = tail.into_vec();
        assert_eq!(lines.len(), CONSOLE_TAIL_LINES);
        assert_eq!(lines.first().map(String::as_str), Some("10"));
        assert_eq!(lines.last().map(String::as_str), Some("29"));
    }

    fn facts(hardware_virtualization: bool, kvm_device: Result<(), String>) -> HostFacts {
        HostFacts {
            hardware_virtualization,
            kvm_device,
        }
    }

    #[test]
    fn kvm_is_chosen_explicitly_whenever_the_device_opens() {
        let kvm = PathBuf::from("/dev/kvm");
        for hw in [true, false] {
            let chosen = select(EngineChoice::Kvm, &facts(hw, Ok(())), kvm.clone()).unwrap();
            assert_eq!(chosen.engine.name(), "kvm");
            assert!(chosen.notice.is_none());
        }
        let missing = Err("cannot open /nonexistent read-write: No such file".to_owned());
        let err = select(EngineChoice::Kvm, &facts(true, missing), kvm).unwrap_err();
        assert_eq!(
            err.to_string(),
            "engine kvm: cannot open /nonexistent read-write: No such file"
        );
    }

    /// The fallback needs `qemu-system-x86_64` in `$PATH` (installed by `make deps`).
    #[test]
    fn auto_picks_kvm_only_with_hardware_virtualization_and_a_usable_device() {
        let kvm = PathBuf::from("/dev/kvm");
        let chosen = select(EngineChoice::Auto, &facts(true, Ok(())), kvm.clone()).unwrap();
        assert_eq!((chosen.engine.name(), chosen.notice), ("kvm", None));
        let pvm = select(EngineChoice::Auto, &facts(false, Ok(())), kvm.clone()).unwrap();
        assert_eq!(pvm.engine.name(), "qemu");
        assert_eq!(
            pvm.notice.as_deref(),
            Some("engine auto: using qemu (no hardware virtualization (vmx/svm) on this host)")
        );
        let no_device = Err("cannot open /dev/kvm read-write: Permission denied".to_owned());
        let chosen = select(EngineChoice::Auto, &facts(true, no_device), kvm).unwrap();
        assert_eq!(chosen.engine.name(), "qemu");
        assert!(chosen.notice.unwrap().contains("Permission denied"));
    }
}
