//! Running an engine on a thread of its own while the caller talks to the guest agent:
//! boot markers and the VM's end reach the caller as its own events; the console goes to
//! stderr with `--debug`. The thread lives as long as the VM, which matters for the qemu
//! engine (QEMU's death signal follows the thread that spawned it).

use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

use vmm::devices::pseudo::boot_marker::Marker;
use vmm::engine::{Engine, EngineError, Mailbox, VirtioDevice, VmEnd, VmEvent, VmSpec};

/// The caller's events for what the VM thread reports.
pub trait VmEvents: Send + 'static {
    /// A boot marker arrived.
    fn marker(marker: Marker) -> Self;
    /// The VM is gone (its end is the thread's result).
    fn ended() -> Self;
}

/// Starts `engine` with `spec` and `devices` on the "vm" thread; `observe` sees every
/// event first (e.g. to timestamp phases).
pub fn spawn<E: VmEvents>(
    engine: Box<dyn Engine>,
    spec: VmSpec,
    devices: Vec<VirtioDevice>,
    mailbox: Mailbox,
    events: Sender<E>,
    debug: bool,
    mut observe: impl FnMut(&VmEvent) + Send + 'static,
) -> Result<JoinHandle<Result<VmEnd, EngineError>>, String> {
    std::thread::Builder::new()
        .name("vm".to_owned())
        .spawn(move || {
            let mut on_event = |event: &VmEvent| {
                observe(event);
                match event {
                    VmEvent::Console(line) if debug => eprintln!("{line}"),
                    VmEvent::Console(_) => {}
                    VmEvent::Marker(marker, _) => {
                        let _ = events.send(E::marker(*marker));
                    }
                }
            };
            let end = engine.run(&spec, devices, mailbox, &mut on_event);
            let _ = events.send(E::ended());
            end
        })
        .map_err(|e| format!("starting the VM thread: {e}"))
}
