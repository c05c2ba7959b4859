//! The `kvm` engine: our in-process VMM on `/dev/kvm` (rust-vmm crates, laid out like
//! Firecracker's): `vstate/` wraps KVM, `arch/x86_64/` knows the machine, `builder` puts a
//! VM together, `vcpus` and `event_loop` run it, `exit` decides what each vCPU exit means.
//!
//! The guest's console and boot markers arrive as [`VmEvent`]s like with the `qemu`
//! engine. The VM ends when the guest resets or triple-faults (`reboot=t`), writes the exit
//! port, or KVM cannot go on; then every thread is joined before [`Engine::run`] returns.

pub mod arch;
mod builder;
mod event_loop;
mod exit;
mod running;
mod vcpus;
mod virtio;
pub mod vstate;

use std::path::PathBuf;
use std::time::Instant;

pub use builder::BuildError;
pub use exit::GuestEnd;

use super::mailbox::Message;
use super::{
    ConsoleTail, Engine, EngineError, HostFacts, Mailbox, Outcome, Timeline, VirtioDevice, VmEnd,
    VmEvent, VmSpec,
};
use crate::devices::pseudo::boot_marker::{Marker, MarkerLog};

/// Our VMM on `/dev/kvm`.
#[derive(Debug)]
pub struct KvmEngine {
    kvm_path: PathBuf,
}

impl KvmEngine {
    /// An engine using the KVM device at `kvm_path`.
    pub fn new(kvm_path: PathBuf) -> Self {
        Self { kvm_path }
    }
}

/// Why the kvm engine cannot run on this host when asked for by name: only a KVM device
/// that does not open. (Without hardware virtualization, e.g. under PVM, KVM still runs
/// simple guests such as the test guest.)
pub fn unusable_reason(facts: &HostFacts) -> Option<String> {
    facts.kvm_device.clone().err()
}

/// Why `auto` does not pick the kvm engine: it needs hardware virtualization (a stock
/// Linux guest does not run on PVM) and a usable KVM device.
pub fn auto_declines(facts: &HostFacts) -> Option<String> {
    if !facts.hardware_virtualization {
        return Some("no hardware virtualization (vmx/svm) on this host".to_owned());
    }
    unusable_reason(facts)
}

impl Engine for KvmEngine {
    fn name(&self) -> &'static str {
        "kvm"
    }

    fn run(
        &self,
        spec: &VmSpec,
        devices: Vec<VirtioDevice>,
        mailbox: Mailbox,
        on_event: &mut dyn FnMut(&VmEvent),
    ) -> Result<VmEnd, EngineError> {
        let started = Instant::now();
        let kernel = spec.validate()?;
        let vm =
            builder::build_and_start(&self.kvm_path, spec, &kernel, devices, &mailbox.sender())?;

        let mut run = RunState::default();
        let boot_deadline = started + spec.boot_timeout;
        let outcome = loop {
            let deadline = (!run.guest_started()).then_some(boot_deadline);
            match mailbox.next_until(deadline) {
                None => break Outcome::BootTimeout(spec.boot_timeout),
                Some(Message::Stop(reason)) => break Outcome::Stopped(reason),
                Some(Message::GuestEnded(end)) => break run.outcome(end),
                Some(message) => run.handle(message, on_event),
            }
        };
        vm.stop();
        // Everything the guest wrote before the end is already queued (the vCPU threads
        // sent it before they were joined): take it without waiting.
        while let Some(message) = mailbox.next_until(Some(Instant::now())) {
            run.handle(message, on_event);
        }
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

/// What the run loop has seen so far.
#[derive(Debug, Default)]
struct RunState {
    markers: MarkerLog,
    console: ConsoleTail,
}

impl RunState {
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
            // A second vCPU's view of the same end, or a stop after the end.
            Message::GuestEnded(_)
            | Message::Stop(_)
            | Message::StreamClosed(_)
            | Message::Exited => {}
        }
    }

    /// The outcome of a guest that ended as `end`.
    fn outcome(&self, end: GuestEnd) -> Outcome {
        match end {
            GuestEnd::ExitPort(0) => Outcome::Clean,
            GuestEnd::ExitPort(value) => Outcome::GuestFailed(format!(
                "the guest reported failure on the exit port (value {value:#x})"
            )),
            GuestEnd::Failed(reason) => Outcome::EngineFailed(reason),
            GuestEnd::Reset => match self.markers.verdict() {
                Some(Marker::ShutdownClean) => Outcome::Clean,
                Some(Marker::AgentFailed) => Outcome::AgentFailed,
                // The test guest's success is its exit port; a reset is its last resort
                // when the write did not stop it, which must not pass for success.
                Some(_) => Outcome::GuestFailed(
                    "the test guest reset instead of writing its result to the exit port"
                        .to_owned(),
                ),
                None => Outcome::NoVerdict {
                    agent_started: self.markers.first(Marker::AgentStarted).is_some(),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests;
