//! The `qemu` engine: `qemu-system-x86_64 -M microvm` as a child of the stage1 process,
//! TCG where the host has no hardware virtualization. Device backends (later) are served
//! to it over vhost-user from this process.

mod args;
mod process;
mod streams;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use args::Accel;
use args::{QemuArgs, VhostUserDevice};
use process::QemuProcess;
use streams::StreamSocket;

use super::mailbox::{Message, Stream};
use super::{
    ConsoleTail, Engine, EngineError, HostFacts, Mailbox, Outcome, Timeline, VirtioDevice, VmEnd,
    VmEvent, VmSpec,
};
use crate::devices::pseudo::boot_marker::{Marker, MarkerLog};
use crate::devices::virtio::backend::VirtioBackend;
use crate::devices::virtio::vhost_user::VhostUserServer;

/// Environment variable naming the QEMU binary (default: `qemu-system-x86_64` in `$PATH`).
pub const QEMU_ENV: &str = "STAGE1_KVM_QEMU";
const QEMU_DEFAULT: &str = "qemu-system-x86_64";

/// How long to wait for the console and marker streams to drain once QEMU exited.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// QEMU microvm as an engine.
#[derive(Debug)]
pub struct QemuEngine {
    binary: PathBuf,
    accel: Accel,
}

impl QemuEngine {
    /// Finds QEMU (`$STAGE1_KVM_QEMU` or `qemu-system-x86_64` in `$PATH`) and picks KVM
    /// acceleration when the host has hardware virtualization, TCG otherwise.
    pub fn locate(facts: &HostFacts) -> Result<Self, EngineError> {
        let name = std::env::var(QEMU_ENV).unwrap_or_else(|_| QEMU_DEFAULT.to_owned());
        let binary = crate::host::find_executable(&name).ok_or_else(|| {
            EngineError::Unavailable(format!(
                "engine qemu: {name} not found (install qemu-system-x86 or set {QEMU_ENV})"
            ))
        })?;
        let accel = if facts.hardware_virtualization && facts.kvm_device.is_ok() {
            Accel::Kvm
        } else {
            Accel::Tcg
        };
        Ok(Self { binary, accel })
    }

    /// The accelerator QEMU will use.
    pub fn accel(&self) -> Accel {
        self.accel
    }
}

impl Engine for QemuEngine {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn run(
        &self,
        spec: &VmSpec,
        devices: Vec<VirtioDevice>,
        mailbox: Mailbox,
        on_event: &mut dyn FnMut(&VmEvent),
    ) -> Result<VmEnd, EngineError> {
        let started = Instant::now();
        spec.validate()?;
        // Our backends listen before QEMU starts: it connects to each while it sets up
        // its devices, and keeps them until it exits.
        let mut servers = Vec::with_capacity(devices.len());
        let mut qemu_devices = Vec::with_capacity(devices.len());
        for device in devices {
            let qemu_device = qemu_device_for(device.backend.as_ref())?;
            let socket = spec.run_dir.join(format!("{}.vhost", device.name));
            let mut server = VhostUserServer::listen(&device.name, &socket, device.backend)
                .map_err(|e| EngineError::Unavailable(e.to_string()))?;
            server
                .start()
                .map_err(|e| EngineError::Unavailable(e.to_string()))?;
            qemu_devices.push(VhostUserDevice {
                id: device.name,
                socket,
                device: qemu_device,
            });
            servers.push(server);
        }
        let bind = |name: &str| {
            let path = spec.run_dir.join(name);
            StreamSocket::bind(path.clone())
                .map_err(EngineError::io(format!("listening on {}", path.display())))
        };
        let mut console = bind("console.sock")?;
        let mut markers = bind("markers.sock")?;
        let cmdline = spec.cmdline();
        let argv = QemuArgs {
            kernel: &spec.kernel,
            initramfs: spec.initramfs.as_deref(),
            cmdline: &cmdline,
            vcpus: spec.vcpus,
            mem_mib: spec.mem_mib,
            accel: self.accel,
            console_socket: console.path().to_owned(),
            marker_socket: markers.path().to_owned(),
            devices: qemu_devices,
        }
        .to_argv();

        let abandon = Arc::new(AtomicBool::new(false));
        console.forward(Stream::Console, mailbox.sender(), Arc::clone(&abandon));
        markers.forward(Stream::Markers, mailbox.sender(), Arc::clone(&abandon));
        let mut qemu = QemuProcess::spawn(&self.binary, argv, mailbox.sender()).map_err(
            EngineError::io(format!("starting {}", self.binary.display())),
        )?;

        let mut run = RunState::new();
        let boot_deadline = started + spec.boot_timeout;
        let outcome = loop {
            let deadline = (!run.guest_started()).then_some(boot_deadline);
            match mailbox.next_until(deadline) {
                None => {
                    qemu.kill();
                    break Some(Outcome::BootTimeout(spec.boot_timeout));
                }
                Some(Message::Stop(reason)) => {
                    qemu.kill();
                    break Some(Outcome::Stopped(reason));
                }
                Some(Message::Exited) => break None,
                Some(message) => run.handle(message, on_event),
            }
        };
        let (status, stderr) = qemu.reap();
        drop(servers);
        abandon.store(true, Ordering::Relaxed);
        // What the guest wrote just before the end is still in flight: drain it.
        let drain_deadline = Instant::now() + DRAIN_TIMEOUT;
        while run.console_open || run.markers_open {
            match mailbox.next_until(Some(drain_deadline)) {
                None => break,
                Some(message) => run.handle(message, on_event),
            }
        }
        let outcome = outcome.unwrap_or_else(|| {
            if status.success() {
                run.verdict()
            } else {
                let detail = stderr.lines().last().unwrap_or("no message");
                Outcome::EngineFailed(format!("QEMU failed ({status}): {detail}"))
            }
        });
        Ok(VmEnd {
            outcome,
            timeline: Timeline {
                started,
                markers: run.markers,
                ended: Instant::now(),
            },
            console_tail: run.console.into_vec(),
        })
    }
}

/// Virtio device IDs (virtio 1.x §5).
const VIRTIO_ID_VSOCK: u32 = 19;
const VIRTIO_ID_FS: u32 = 26;

/// QEMU's vhost-user device for a backend.
fn qemu_device_for(backend: &dyn VirtioBackend) -> Result<String, EngineError> {
    match backend.device_type() {
        VIRTIO_ID_VSOCK => Ok("vhost-user-vsock-device".to_owned()),
        VIRTIO_ID_FS => {
            // QEMU wants the tag as a property; it is the first 36 bytes of the config.
            let config = backend.config();
            let tag = config.get(..36).unwrap_or(&config);
            let tag = String::from_utf8_lossy(tag)
                .trim_end_matches('\0')
                .to_owned();
            Ok(format!("vhost-user-fs-device,tag={tag}"))
        }
        other => Err(EngineError::Unavailable(format!(
            "engine qemu: no vhost-user device for virtio device type {other}"
        ))),
    }
}

/// What the run loop has seen so far.
struct RunState {
    markers: MarkerLog,
    console: ConsoleTail,
    console_open: bool,
    markers_open: bool,
}

impl RunState {
    fn new() -> Self {
        Self {
            markers: MarkerLog::default(),
            console: ConsoleTail::default(),
            console_open: true,
            markers_open: true,
        }
    }

    fn guest_started(&self) -> bool {
        !self.markers.entries().is_empty()
    }

    fn handle(&mut self, message: Message, on_event: &mut dyn FnMut(&VmEvent)) {
        match message {
            Message::Console(line) => {
                self.console.push(&line);
                on_event(&VmEvent::Console(line));
            }
            Message::Marker(byte, at) => {
                let marker = Marker::from(byte);
                self.markers.record(marker, at);
                on_event(&VmEvent::Marker(marker, at));
            }
            Message::StreamClosed(Stream::Console) => self.console_open = false,
            Message::StreamClosed(Stream::Markers) => self.markers_open = false,
            Message::Exited | Message::Stop(_) | Message::GuestEnded(_) => {}
        }
    }

    fn verdict(&self) -> Outcome {
        match self.markers.verdict() {
            Some(Marker::ShutdownClean | Marker::TestGuestDone) => Outcome::Clean,
            Some(_) => Outcome::AgentFailed,
            None => Outcome::NoVerdict {
                agent_started: self.markers.first(Marker::AgentStarted).is_some(),
            },
        }
    }
}
