//! A VM that is running: its threads and what they share. Stopping it (or dropping it)
//! stops the vCPUs first, then the event loop, and passes on the console's last line;
//! guest memory goes last, after every thread that could touch it has been joined.

use std::sync::Arc;

use super::event_loop::EventLoopThread;
use super::vcpus::VcpuThreads;
use super::vstate::vm::Vm;
use crate::devices::legacy::serial::SerialDevice;
use crate::devices::virtio::backend::SharedMemory;

/// The running VM. Field order is drop order.
#[derive(Debug)]
pub struct RunningVm {
    pub(super) vcpus: VcpuThreads,
    pub(super) events: EventLoopThread,
    pub(super) serial: Arc<SerialDevice>,
    /// Kept open until the vCPUs are gone.
    pub(super) _vm: Vm,
    /// Kept mapped until the vCPUs are gone (KVM's memory slots point into it).
    pub(super) _memory: SharedMemory,
}

impl RunningVm {
    /// Stops every thread and waits for it; a console line the guest left unterminated is
    /// passed on. Nothing of the VM runs after this returns.
    pub fn stop(mut self) {
        self.vcpus.stop_and_join();
        self.events.stop_and_join();
        self.serial.finish();
    }
}
