//! One virtqueue as the transport holds it: the registers the driver writes during setup,
//! and the live [`Queue`] built from them at DRIVER_OK; and the [`QueueSet`] the backend
//! reaches its queues through.

use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestAddressSpace, GuestMemory as _};
use vmm_sys_util::eventfd::EventFd;

use super::registers::interrupt;
use crate::devices::virtio::backend::{BackendError, GuestMemory, QueueSet, SharedMemory};

/// A queue's registers and its live state.
#[derive(Debug)]
pub(super) struct QueueSlot {
    /// QueueNumMax.
    max_size: u16,
    /// QueueNum as the driver wrote it, checked at DRIVER_OK.
    pub(super) size: u32,
    /// QueueDesc{Low,High}.
    pub(super) desc: u64,
    /// QueueDriver{Low,High}: the available ring.
    pub(super) driver: u64,
    /// QueueDevice{Low,High}: the used ring.
    pub(super) device: u64,
    /// QueueReady as the driver sees it.
    pub(super) ready: bool,
    /// The live queue: ready only between a successful DRIVER_OK and a reset (or the
    /// driver writing QueueReady = 0).
    pub(super) queue: Queue,
}

impl QueueSlot {
    /// A queue in its reset state. `max_size` must be valid for [`Queue::new`].
    pub(super) fn new(max_size: u16) -> Result<Self, virtio_queue::Error> {
        Ok(Self {
            max_size,
            size: u32::from(max_size),
            desc: 0,
            driver: 0,
            device: 0,
            ready: false,
            queue: Queue::new(max_size)?,
        })
    }

    /// QueueNumMax.
    pub(super) fn max_size(&self) -> u16 {
        self.max_size
    }

    /// Whether the device may use the live queue: it was made live at DRIVER_OK and the
    /// driver has not stopped it since.
    pub(super) fn is_live(&self) -> bool {
        self.queue.ready()
    }

    /// QueueReady = 0: the device stops using the queue.
    pub(super) fn stop(&mut self) {
        self.ready = false;
        self.queue.set_ready(false);
    }

    /// Back to the reset state (virtio 1.2 §4.2.2.1: QueueReady reads 0 after a reset).
    pub(super) fn reset(&mut self) {
        self.size = u32::from(self.max_size);
        self.desc = 0;
        self.driver = 0;
        self.device = 0;
        self.ready = false;
        self.queue.reset();
    }

    /// Builds the live queue from the registers at DRIVER_OK, or says why the driver's
    /// setup cannot be used: a bad size, misaligned rings, or rings that are not entirely
    /// inside guest memory.
    pub(super) fn activate(&mut self, mem: &GuestMemory, event_idx: bool) -> Result<(), String> {
        let size = u16::try_from(self.size)
            .ok()
            .filter(|&s| s != 0 && s <= self.max_size && s.is_power_of_two())
            .ok_or_else(|| {
                format!(
                    "size {} is not a power of two between 1 and {}",
                    self.size, self.max_size
                )
            })?;
        let n = u64::from(size);
        // Split virtqueue areas (virtio 1.2 §2.7): alignment and size of each.
        let areas = [
            // 16-byte descriptors
            ("descriptor table", self.desc, 16, 16 * n),
            // flags, idx, ring[n], used_event
            ("available ring", self.driver, 2, 6 + 2 * n),
            // flags, idx, ring[n] of (id, len), avail_event
            ("used ring", self.device, 4, 6 + 8 * n),
        ];
        for (name, addr, align, len) in areas {
            if !addr.is_multiple_of(align) {
                return Err(format!("{name} at {addr:#x} is not {align}-byte aligned"));
            }
            let fits =
                usize::try_from(len).is_ok_and(|len| mem.check_range(GuestAddress(addr), len));
            if !fits {
                return Err(format!(
                    "{name} at {addr:#x} ({len:#x} bytes) is not inside guest memory"
                ));
            }
        }
        // virtio-queue takes an available ring at address 0 for a queue that was never set
        // up and refuses to use it: say so now rather than leave the queue silently dead.
        if self.driver == 0 {
            return Err("an available ring at guest address 0 is not supported".to_owned());
        }

        let queue = &mut self.queue;
        queue.reset();
        queue
            .try_set_size(size)
            .and_then(|()| queue.try_set_desc_table_address(GuestAddress(self.desc)))
            .and_then(|()| queue.try_set_avail_ring_address(GuestAddress(self.driver)))
            .and_then(|()| queue.try_set_used_ring_address(GuestAddress(self.device)))
            .map_err(|e| format!("rejected by virtio-queue: {e}"))?;
        queue.set_event_idx(event_idx);
        queue.set_ready(true);
        if !queue.is_valid(mem) {
            queue.reset();
            return Err("rejected by virtio-queue as not fitting in guest memory".to_owned());
        }
        Ok(())
    }
}

/// The queues of one transport, lent to its backend for one call.
pub(super) struct TransportQueues<'a> {
    pub(super) slots: &'a mut [QueueSlot],
    pub(super) memory: &'a SharedMemory,
    pub(super) interrupt: &'a EventFd,
    pub(super) interrupt_status: &'a mut u32,
}

impl QueueSet for TransportQueues<'_> {
    fn len(&self) -> usize {
        self.slots.len()
    }

    fn with_queue(
        &mut self,
        index: usize,
        f: &mut dyn FnMut(&mut Queue, &GuestMemory) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let slot = self
            .slots
            .get_mut(index)
            .ok_or(BackendError::NoSuchQueue(index))?;
        // The device must not touch a queue whose QueueReady is 0 (virtio 1.2 §4.2.2.1):
        // one the driver never set up or stopped. To the backend it is a queue with nothing
        // in it.
        if !slot.is_live() {
            return Ok(());
        }
        let memory = self.memory.memory();
        f(&mut slot.queue, &memory)
    }

    fn signal(&mut self, index: usize) -> Result<(), BackendError> {
        if index >= self.slots.len() {
            return Err(BackendError::NoSuchQueue(index));
        }
        *self.interrupt_status |= interrupt::USED_BUFFER;
        self.interrupt.write(1).map_err(|source| BackendError::Io {
            what: "raising the used-buffer interrupt".to_owned(),
            source,
        })
    }
}
