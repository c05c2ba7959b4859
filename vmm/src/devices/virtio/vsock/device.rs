//! [`Vsock`]: the virtio-vsock device backend (device type 19).
//!
//! The device moves packets between the virtqueues and the [`Muxer`]; everything about
//! connections lives there. It is driven from one thread, the transport's event loop:
//! - `handle_queue(TX)`: the driver queued packets — hand each to the muxer, then fill RX
//!   (answers such as RESPONSE, RST or CREDIT_UPDATE are usually owed now);
//! - `handle_queue(RX)`: the driver added RX buffers — fill them;
//! - `handle_backend_event`: the muxer's epoll fd ([`VirtioBackend::backend_fd`]) is
//!   readable — let the muxer handle its host sockets, then fill RX.
//!
//! The driver is signalled only when used buffers were added and
//! `Queue::needs_notification` says so.

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use virtio_queue::{Queue, QueueOwnedT, QueueT};

use super::muxer::{Muxer, MuxerError};
use super::packet::{self, RxBuffer};
use super::report::{report, Event};
use super::{VsockHandle, EVT_QUEUE, NUM_QUEUES, QUEUE_SIZE, RX_QUEUE, TX_QUEUE};
use crate::devices::virtio::backend::{
    BackendError, GuestMemory, QueueSet, SharedMemory, VirtioBackend, VIRTIO_F_VERSION_1,
};

/// virtio device ID of vsock.
pub const VIRTIO_ID_VSOCK: u32 = 19;

/// Errors creating a [`Vsock`].
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// CIDs 0-2 and 0xffffffff are reserved, and the upper 32 bits must be zero.
    #[error("guest CID {0} is reserved or out of range (3..=0xfffffffe)")]
    InvalidCid(u64),
    /// The muxer could not be set up.
    #[error(transparent)]
    Muxer(#[from] MuxerError),
}

/// The virtio-vsock device backend.
#[derive(Debug)]
pub struct Vsock {
    guest_cid: u64,
    muxer: Muxer,
    pub(super) acked_features: u64,
    active: bool,
}

impl Vsock {
    /// A vsock device for a guest with CID `guest_cid` (normally [`super::GUEST_CID`]).
    ///
    /// Host processes reach guest ports through a Unix socket bound at `uds_path` (the
    /// hybrid `CONNECT <port>\n` protocol); guest connections to host port `P` go to a
    /// listener at `<uds_path>_P`. The socket file is removed when the device is dropped.
    /// The stage1 process itself connects through [`Self::handle`].
    pub fn new(guest_cid: u64, uds_path: impl Into<PathBuf>) -> Result<Self, VsockError> {
        if !(3..0xffff_ffff).contains(&guest_cid) {
            return Err(VsockError::InvalidCid(guest_cid));
        }
        let muxer = Muxer::new(guest_cid, &uds_path.into())?;
        Ok(Vsock {
            guest_cid,
            muxer,
            acked_features: 0,
            active: false,
        })
    }

    /// A handle for connecting to guest ports from this process.
    pub fn handle(&self) -> VsockHandle {
        self.muxer.handle()
    }

    /// The hybrid socket's path.
    pub fn uds_path(&self) -> &Path {
        self.muxer.path()
    }

    /// The guest's CID.
    pub fn guest_cid(&self) -> u64 {
        self.guest_cid
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.muxer.connection_count()
    }

    /// Lowers the connection limit (tests).
    #[cfg(test)]
    pub(super) fn set_max_connections(&mut self, max: usize) {
        self.muxer.set_max_connections(max);
    }

    /// Hands every packet the driver queued on TX to the muxer.
    fn process_tx(&mut self, queues: &mut dyn QueueSet) -> Result<(), BackendError> {
        let guest_cid = self.guest_cid;
        let muxer = &mut self.muxer;
        let mut notify = false;
        queues.with_queue(TX_QUEUE, &mut |queue: &mut Queue, mem: &GuestMemory| {
            let mut used = false;
            while let Some(chain) = queue.pop_descriptor_chain(mem) {
                let head = chain.head_index();
                match packet::parse_tx(mem, chain, guest_cid) {
                    Ok(pkt) => muxer.send_pkt(&pkt),
                    Err(rejected) => muxer.reject(&rejected),
                }
                queue
                    .add_used(mem, head, 0)
                    .map_err(|e| BackendError::Guest(format!("vsock TX used ring: {e}")))?;
                used = true;
            }
            notify = used && needs_notification(queue, mem)?;
            Ok(())
        })?;
        if notify {
            queues.signal(TX_QUEUE)?;
        }
        Ok(())
    }

    /// Fills RX buffers while the muxer owes the guest packets.
    fn process_rx(&mut self, queues: &mut dyn QueueSet) -> Result<(), BackendError> {
        if !self.muxer.has_pending_rx() {
            return Ok(());
        }
        let muxer = &mut self.muxer;
        let mut notify = false;
        queues.with_queue(RX_QUEUE, &mut |queue: &mut Queue, mem: &GuestMemory| {
            let mut used = false;
            while muxer.has_pending_rx() {
                let Some(mut chain) = queue.pop_descriptor_chain(mem) else {
                    break;
                };
                let head = chain.head_index();
                let len = match RxBuffer::parse(mem, &mut chain) {
                    Ok(mut buf) => match muxer.fill_rx(&mut buf) {
                        Some(len) => len,
                        None => {
                            // Nothing could be sent after all: give the buffer back.
                            queue.go_to_previous_position();
                            break;
                        }
                    },
                    Err(e) => {
                        report!(Event::MalformedRx, "returned a guest RX buffer unused: {e}");
                        0
                    }
                };
                queue
                    .add_used(mem, head, len)
                    .map_err(|e| BackendError::Guest(format!("vsock RX used ring: {e}")))?;
                used = true;
            }
            notify = used && needs_notification(queue, mem)?;
            Ok(())
        })?;
        if notify {
            queues.signal(RX_QUEUE)?;
        }
        Ok(())
    }
}

fn needs_notification(queue: &mut Queue, mem: &GuestMemory) -> Result<bool, BackendError> {
    queue
        .needs_notification(mem)
        .map_err(|e| BackendError::Guest(format!("vsock queue notification: {e}")))
}

impl VirtioBackend for Vsock {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_VSOCK
    }

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> u16 {
        QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn ack_features(&mut self, features: u64) {
        self.acked_features = features & self.features();
    }

    fn config(&self) -> Vec<u8> {
        // struct virtio_vsock_config { le64 guest_cid; }
        self.guest_cid.to_le_bytes().to_vec()
    }

    fn activate(&mut self, _memory: SharedMemory) -> Result<(), BackendError> {
        // Guest memory comes with each queue access (QueueSet::with_queue), so a memory map
        // change needs nothing here.
        self.active = true;
        Ok(())
    }

    fn reset(&mut self) {
        self.active = false;
        self.acked_features = 0;
        self.muxer.reset();
    }

    fn backend_fd(&self) -> Option<RawFd> {
        Some(self.muxer.fd())
    }

    fn handle_queue(
        &mut self,
        index: usize,
        queues: &mut dyn QueueSet,
    ) -> Result<(), BackendError> {
        if index >= NUM_QUEUES {
            return Err(BackendError::NoSuchQueue(index));
        }
        if !self.active {
            return Ok(());
        }
        match index {
            TX_QUEUE => {
                self.process_tx(queues)?;
                self.process_rx(queues)
            }
            RX_QUEUE => self.process_rx(queues),
            EVT_QUEUE => Ok(()),
            _ => Err(BackendError::NoSuchQueue(index)),
        }
    }

    fn handle_backend_event(&mut self, queues: &mut dyn QueueSet) -> Result<(), BackendError> {
        self.muxer.process_events();
        if self.active {
            self.process_rx(queues)?;
        }
        Ok(())
    }
}
