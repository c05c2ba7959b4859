//! Virtio devices on the `kvm` engine's MMIO bus: each backend behind its own
//! [`MmioTransport`] in a 4 KiB window of the MMIO hole, with a GSI of its own. Queue
//! notifications are ioeventfds (a QueueNotify write never leaves the kernel), interrupts
//! are irqfds, and the transport's events are served by the event loop. The guest finds the
//! devices on its command line (`virtio_mmio.device=4K@<base>:<gsi>`).

use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::EventFd;

use super::arch::x86_64::layout::virtio_mmio_slot;
use super::event_loop::EventLoop;
use super::exit::IoBuses;
use super::vstate::vm::Vm;
use super::vstate::VstateError;
use crate::devices::bus::{BusDevice, BusError};
use crate::devices::virtio::backend::SharedMemory;
use crate::devices::virtio::transport::mmio::registers::{QUEUE_NOTIFY_OFFSET, WINDOW_SIZE};
use crate::devices::virtio::transport::{MmioTransport, TransportError};
use crate::engine::VirtioDevice;

/// The transport on the MMIO bus: accesses in its window, with the offset into it.
impl BusDevice for Mutex<MmioTransport> {
    fn read(&self, offset: u64, data: &mut [u8]) {
        self.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .read(offset, data);
    }

    fn write(&self, offset: u64, data: &[u8]) {
        self.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .write(offset, data);
    }
}

/// Where a device was placed, for the kernel command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioSlot {
    /// Start of its MMIO window.
    pub base: u64,
    /// Its interrupt.
    pub gsi: u32,
}

/// Why a device could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum VirtioError {
    /// More devices than windows or interrupt lines.
    #[error("virtio device {name}: no room for more than {max} virtio-mmio devices")]
    TooMany {
        /// The device.
        name: String,
        /// How many fit.
        max: usize,
    },
    /// Its interrupt eventfd could not be created.
    #[error("virtio device {name}: creating its interrupt eventfd: {source}")]
    Eventfd {
        /// The device.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// The transport refused the backend.
    #[error("virtio device {name}: {source}")]
    Transport {
        /// The device.
        name: String,
        /// Why.
        source: TransportError,
    },
    /// KVM refused the irqfd or an ioeventfd.
    #[error("virtio device {name}: {source}")]
    Kvm {
        /// The device.
        name: String,
        /// Why.
        source: VstateError,
    },
    /// Its window is taken.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// How many devices fit (windows and GSIs).
pub fn max_devices() -> usize {
    (0..).take_while(|i| virtio_mmio_slot(*i).is_some()).count()
}

/// Places every device: window and GSI in order, irqfd, ioeventfds, bus, event loop.
pub fn attach_devices(
    vm: &Vm,
    memory: &SharedMemory,
    devices: Vec<VirtioDevice>,
    io: &mut IoBuses,
    events: &mut EventLoop,
) -> Result<Vec<VirtioSlot>, VirtioError> {
    let mut slots = Vec::with_capacity(devices.len());
    for (index, device) in devices.into_iter().enumerate() {
        let name = device.name;
        let Some((base, gsi)) = virtio_mmio_slot(index) else {
            return Err(VirtioError::TooMany {
                name,
                max: max_devices(),
            });
        };
        let kvm_error = |source| VirtioError::Kvm {
            name: name.clone(),
            source,
        };
        let interrupt =
            EventFd::new(libc::EFD_NONBLOCK).map_err(|source| VirtioError::Eventfd {
                name: name.clone(),
                source,
            })?;
        vm.register_irqfd(&interrupt, gsi).map_err(kvm_error)?;
        let mut transport =
            MmioTransport::new(device.backend, memory.clone(), interrupt).map_err(|source| {
                VirtioError::Transport {
                    name: name.clone(),
                    source,
                }
            })?;
        transport.set_label(format!("{name}@{base:#x}"));
        for (queue, event) in transport.queue_events().iter().enumerate() {
            // MAX_QUEUES (1024) bounds the index.
            let queue = u32::try_from(queue).unwrap_or(u32::MAX);
            vm.register_mmio_ioevent(event, base + QUEUE_NOTIFY_OFFSET, queue)
                .map_err(kvm_error)?;
        }
        let transport = Arc::new(Mutex::new(transport));
        io.mmio
            .insert(&name, transport.clone(), base, WINDOW_SIZE)?;
        events.add(transport);
        slots.push(VirtioSlot { base, gsi });
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nineteen_devices_fit_below_the_ioapic_pins() {
        assert_eq!(max_devices(), 19);
        assert_eq!(
            WINDOW_SIZE,
            crate::engine::kvm::arch::x86_64::layout::VIRTIO_MMIO_WINDOW
        );
    }
}
