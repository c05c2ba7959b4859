//! The one interface every virtio device backend implements, whichever engine serves it.
//!
//! A backend is an event-driven state machine. Its transport — our virtio-mmio transport
//! in the `kvm` engine, the vhost-user adapter in the `qemu` engine — negotiates features,
//! sets up the queues and guest memory, then calls:
//! - [`VirtioBackend::handle_queue`] when the driver notifies a queue (an ioeventfd or a
//!   vhost-user kick eventfd), and
//! - [`VirtioBackend::handle_backend_event`] when the backend's own host-side fd
//!   ([`VirtioBackend::backend_fd`], e.g. the vsock muxer's epoll fd) is readable.
//!
//! In both calls the backend reaches its queues through a [`QueueSet`], and signals the
//! driver through it (an irqfd, or the vhost-user call eventfd). Notifications and
//! interrupts are eventfds either way, so the backend never knows which engine runs.

use std::os::fd::RawFd;

use virtio_queue::Queue;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

/// Guest memory as every backend sees it.
pub type GuestMemory = GuestMemoryMmap<()>;
/// Guest memory shared between the transport and the backend's threads; replaced
/// atomically when the memory map changes (vhost-user `SET_MEM_TABLE`).
pub type SharedMemory = GuestMemoryAtomic<GuestMemory>;

/// `VIRTIO_F_VERSION_1`: every device we offer is a modern (virtio 1.x) device.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Errors of a backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The guest gave the device something it cannot use (bad descriptor, length,
    /// address). The transport logs it and marks the device as needing reset.
    #[error("invalid request from the guest: {0}")]
    Guest(String),
    /// A host-side operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The queue index is not one of this device's.
    #[error("queue {0} does not exist")]
    NoSuchQueue(usize),
}

/// A device's queues as its transport holds them.
pub trait QueueSet {
    /// How many queues there are.
    fn len(&self) -> usize;

    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `f` with queue `index` and the guest memory it lives in.
    fn with_queue(
        &mut self,
        index: usize,
        f: &mut dyn FnMut(&mut Queue, &GuestMemory) -> Result<(), BackendError>,
    ) -> Result<(), BackendError>;

    /// Signals the driver that queue `index` has new used buffers (the backend decides
    /// whether that is needed, e.g. with `Queue::needs_notification`).
    fn signal(&mut self, index: usize) -> Result<(), BackendError>;
}

/// A virtio device backend.
pub trait VirtioBackend: Send {
    /// The virtio device ID (e.g. 19 for vsock, 26 for fs).
    fn device_type(&self) -> u32;

    /// How many queues the device has.
    fn num_queues(&self) -> usize;

    /// The largest size of each queue.
    fn max_queue_size(&self) -> u16;

    /// Feature bits the device offers; always includes [`VIRTIO_F_VERSION_1`].
    fn features(&self) -> u64;

    /// The features the driver accepted (a subset of [`Self::features`]).
    fn ack_features(&mut self, features: u64);

    /// The device-specific configuration space.
    fn config(&self) -> Vec<u8>;

    /// The driver set DRIVER_OK: queues are set up in `memory`.
    fn activate(&mut self, memory: SharedMemory) -> Result<(), BackendError>;

    /// The driver reset the device: drop all state from the activation.
    fn reset(&mut self);

    /// An fd that is readable when the backend has host-side work (one stable fd for
    /// the backend's lifetime, e.g. an epoll fd over its sockets), if it has any.
    fn backend_fd(&self) -> Option<RawFd> {
        None
    }

    /// The driver notified queue `index`.
    fn handle_queue(&mut self, index: usize, queues: &mut dyn QueueSet)
        -> Result<(), BackendError>;

    /// [`Self::backend_fd`] is readable.
    fn handle_backend_event(&mut self, _queues: &mut dyn QueueSet) -> Result<(), BackendError> {
        Ok(())
    }
}
