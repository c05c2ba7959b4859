//! [`Fs`]: the virtio-fs device backend (device type 26), one per share.
//!
//! Queues: 0 is the high-priority queue (FORGET, BATCH_FORGET), 1 the request queue.
//! Configuration space: the tag (36 bytes, NUL-padded), then `num_request_queues` (u32
//! LE, 1). Features: `VIRTIO_F_VERSION_1`, `VIRTIO_RING_F_INDIRECT_DESC`,
//! `VIRTIO_RING_F_EVENT_IDX`.
//!
//! Flow: a queue notification pops the available chains and hands them to the share's
//! worker thread (at most 128 in flight, `worker::MAX_IN_FLIGHT`; the rest wait in the
//! avail ring and are popped as completions free room). The worker serves them inside its sandbox and
//! writes the notify eventfd ([`VirtioBackend::backend_fd`]); the device then adds the used
//! entries and signals the driver when the queue asks for it. Queue state is touched only
//! here, during a transport call — the only time a [`QueueSet`] exists.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use virtio_queue::QueueT;
use vm_memory::GuestAddressSpace;
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use super::config::{config_space, FsConfig};
use super::error::FsError;
use super::filter::Policy;
use super::worker::{Completion, Request, Worker, WorkerConfig, MAX_IN_FLIGHT};
use crate::devices::virtio::backend::{
    BackendError, QueueSet, SharedMemory, VirtioBackend, VIRTIO_F_VERSION_1,
};

/// The virtio device ID of a file system device.
pub const TYPE_FS: u32 = 26;
/// The high-priority queue.
pub const HIPRIO_QUEUE: usize = 0;
/// The request queues (after the high-priority one).
pub const REQUEST_QUEUES: usize = 1;
/// All queues.
pub const NUM_QUEUES: usize = 1 + REQUEST_QUEUES;
/// The largest size of each queue (what Linux and QEMU's vhost-user-fs allow).
pub const QUEUE_SIZE: u16 = 1024;
/// `VIRTIO_RING_F_INDIRECT_DESC`: a request's buffers in one indirect table, so a 1 MiB
/// request takes one ring entry instead of 258.
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
/// `VIRTIO_RING_F_EVENT_IDX`: the driver and the device tell each other how far to go
/// before the next kick or interrupt.
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;

/// A virtio-fs device serving one share.
#[derive(Debug)]
pub struct Fs {
    share: FsConfig,
    acked_features: u64,
    memory: Option<SharedMemory>,
    notify: EventFd,
    worker: Worker,
    in_flight: usize,
    /// Queues that may still hold chains we left there because of the in-flight limit.
    starved: [bool; NUM_QUEUES],
}

fn ring_error(e: virtio_queue::Error) -> BackendError {
    BackendError::Guest(format!("virtio-fs queue: {e}"))
}

fn backend_io(what: &str) -> impl FnOnce(FsError) -> BackendError + '_ {
    move |e| BackendError::Io {
        what: what.to_owned(),
        source: io::Error::other(e),
    }
}

impl Fs {
    /// Checks the share and starts its worker thread, confined to the share's directory.
    /// Fails with the directory and the reason if the share cannot be served (missing
    /// directory, not a directory, the host's root, or no way to confine the server).
    pub fn new(share: FsConfig) -> Result<Self, FsError> {
        let root = share.validate()?;
        let notify =
            EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(|source| FsError::EventFd {
                what: "creating the virtio-fs notify eventfd",
                source,
            })?;
        let worker = Worker::spawn(
            &WorkerConfig {
                root,
                policy: Policy {
                    read_only: share.read_only,
                    allow_devices: share.allow_devices,
                },
                name: format!("fs-{}", share.tag),
            },
            &notify,
        )?;
        Ok(Self {
            share,
            acked_features: 0,
            memory: None,
            notify,
            worker,
            in_flight: 0,
            starved: [false; NUM_QUEUES],
        })
    }

    /// The share this device serves.
    pub fn share(&self) -> &FsConfig {
        &self.share
    }

    /// The tag the guest mounts the share by.
    pub fn tag(&self) -> &str {
        &self.share.tag
    }

    /// The share's host directory.
    pub fn root(&self) -> &Path {
        &self.share.root
    }

    /// Requests handed to the worker and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Pops what queue `index` holds, up to the in-flight limit, for the worker.
    fn dispatch(&mut self, index: usize, queues: &mut dyn QueueSet) -> Result<(), BackendError> {
        let Some(memory) = &self.memory else {
            return Ok(());
        };
        let memory = memory.memory().into_inner();
        let queue_id = u16::try_from(index).map_err(|_| BackendError::NoSuchQueue(index))?;
        let generation = self.worker.generation();
        let worker = &self.worker;
        let in_flight = &mut self.in_flight;
        let mut limited = false;
        queues.with_queue(index, &mut |queue, mem| {
            // The usual virtio loop: no kicks while draining, and re-enabling them checks
            // for chains that arrived meanwhile. At the in-flight limit notifications stay
            // off: completions bring us back (`starved`) and we drain then.
            loop {
                queue.disable_notification(mem).map_err(ring_error)?;
                while *in_flight < MAX_IN_FLIGHT {
                    let Some(chain) = queue.pop_descriptor_chain(Arc::clone(&memory)) else {
                        break;
                    };
                    worker
                        .submit(Request {
                            queue: queue_id,
                            generation,
                            chain,
                            memory: Arc::clone(&memory),
                        })
                        .map_err(backend_io("handing a request to the virtio-fs worker"))?;
                    *in_flight += 1;
                }
                if *in_flight >= MAX_IN_FLIGHT {
                    limited = true;
                    return Ok(());
                }
                if !queue.enable_notification(mem).map_err(ring_error)? {
                    return Ok(());
                }
            }
        })?;
        self.starved[index] = limited;
        Ok(())
    }

    /// Puts the worker's completions in the used rings; returns which queues got some.
    fn complete(&mut self, queues: &mut dyn QueueSet) -> Result<[bool; NUM_QUEUES], BackendError> {
        let mut used = [false; NUM_QUEUES];
        let generation = self.worker.generation();
        while let Some(completion) = self.worker.try_complete() {
            self.in_flight = self.in_flight.saturating_sub(1);
            let Completion {
                queue: index,
                head,
                len,
                generation: of,
                memory,
            } = completion;
            // The last reference to a memory map may be this one: drop it on this thread
            // (see worker.rs on descriptor ownership).
            drop(memory);
            // A request of an activation the driver has reset since: its queue is gone.
            if of != generation || self.memory.is_none() {
                continue;
            }
            let index = usize::from(index);
            queues.with_queue(index, &mut |queue, mem| {
                queue.add_used(mem, head, len).map_err(ring_error)
            })?;
            if let Some(flag) = used.get_mut(index) {
                *flag = true;
            }
        }
        Ok(used)
    }
}

impl VirtioBackend for Fs {
    fn device_type(&self) -> u32 {
        TYPE_FS
    }

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> u16 {
        QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        // Both ring features are handled by virtio-queue (indirect tables when walking a
        // chain, event indices in enable_notification/needs_notification), as QEMU's
        // virtiofsd offers them too.
        VIRTIO_F_VERSION_1 | VIRTIO_RING_F_INDIRECT_DESC | VIRTIO_RING_F_EVENT_IDX
    }

    fn ack_features(&mut self, features: u64) {
        self.acked_features = features & self.features();
    }

    fn config(&self) -> Vec<u8> {
        let request_queues = u32::try_from(REQUEST_QUEUES).unwrap_or(1);
        config_space(&self.share.tag, request_queues).to_vec()
    }

    fn activate(&mut self, memory: SharedMemory) -> Result<(), BackendError> {
        self.memory = Some(memory);
        Ok(())
    }

    fn reset(&mut self) {
        // Requests still queued for the worker are skipped; the next activation gets a
        // fresh FUSE session. Their completions are dropped as they come back.
        self.worker.new_generation();
        self.memory = None;
        self.acked_features = 0;
        self.starved = [false; NUM_QUEUES];
    }

    fn backend_fd(&self) -> Option<RawFd> {
        Some(self.notify.as_raw_fd())
    }

    fn handle_queue(
        &mut self,
        index: usize,
        queues: &mut dyn QueueSet,
    ) -> Result<(), BackendError> {
        if index >= NUM_QUEUES {
            return Err(BackendError::NoSuchQueue(index));
        }
        self.dispatch(index, queues)
    }

    fn handle_backend_event(&mut self, queues: &mut dyn QueueSet) -> Result<(), BackendError> {
        // Read the counter before draining: a completion sent after the drain comes with
        // a new write, so none is left behind without a wake-up.
        match self.notify.read() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(source) => {
                return Err(BackendError::Io {
                    what: "reading the virtio-fs notify eventfd".to_owned(),
                    source,
                })
            }
        }
        let used = self.complete(queues)?;
        for index in 0..NUM_QUEUES {
            if self.starved[index] {
                self.dispatch(index, queues)?;
            }
        }
        for (index, _) in used.iter().enumerate().filter(|(_, &used)| used) {
            let mut notify = false;
            queues.with_queue(index, &mut |queue, mem| {
                notify = queue.needs_notification(mem).map_err(ring_error)?;
                Ok(())
            })?;
            if notify {
                queues.signal(index)?;
            }
        }
        Ok(())
    }
}
