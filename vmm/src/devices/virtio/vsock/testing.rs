//! A virtio driver over mock queues in real guest memory, for tests and benchmarks
//! (compiled for this crate's tests and with the `testing` feature).
//!
//! [`TestQueues`] plays the guest's driver: it lays out split virtqueues with
//! `virtio-queue`'s [`MockSplitQueue`], posts descriptor chains, reads the used rings, and
//! implements [`QueueSet`] so a backend can be driven exactly as a transport would drive it.
//! It is device-agnostic except for the vsock helpers ([`TestQueues::send`],
//! [`TestQueues::give_rx`], [`TestQueues::recv`]); the transport adapters' tests can use
//! [`TestQueues::post`] / [`TestQueues::take_used`] for any device.
//!
//! Memory layout: ring `q` at `q * 64 KiB` (descriptor table, avail ring, used ring at
//! +8 KiB); from 1 MiB, one buffer slot of [`SLOT_SIZE`]
//! per descriptor of every queue (descriptor `i` of queue `q` always uses the same slot);
//! from [`SCRATCH`] to [`MEM_SIZE`], free space for hand-made buffers.

use std::collections::HashMap;
use std::num::Wrapping;
use std::os::fd::RawFd;

use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryAtomic};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::packet::{Header, Op, HEADER_LEN, HEADER_SIZE, MAX_PAYLOAD};
#[cfg(doc)]
use super::QUEUE_SIZE;
use super::{Vsock, GUEST_CID, NUM_QUEUES, RX_QUEUE, TX_QUEUE};
use crate::devices::virtio::backend::{
    BackendError, GuestMemory, QueueSet, SharedMemory, VirtioBackend,
};

/// Guest memory size.
pub const MEM_SIZE: u64 = 64 << 20;
const MEM_BYTES: usize = 64 << 20;
/// Size of each descriptor's buffer slot (a header and a full payload fit).
pub const SLOT_SIZE: u64 = 0x11000;
/// Start of the area tests may use for hand-made buffers.
pub const SCRATCH: u64 = 0x380_0000;

const RING_STRIDE: u64 = 0x1_0000;
/// The used ring's offset in a ring's area: past a 256-entry descriptor table (4 KiB) and
/// avail ring (518 bytes).
const USED_OFFSET: u64 = 0x2000;
const SLOTS_BASE: u64 = 0x10_0000;
const VRING_DESC_F_NEXT: u16 = 1;
const VRING_DESC_F_WRITE: u16 = 2;

/// One descriptor as the driver posts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    /// Guest physical address of the buffer.
    pub addr: u64,
    /// Its length.
    pub len: u32,
    /// Device-writable (RX) rather than device-readable (TX).
    pub writable: bool,
}

/// A packet the device put in an RX buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RxPacket {
    /// The used length the device reported.
    pub used_len: u32,
    /// The header (all zero if `used_len` is shorter than a header).
    pub header: Header,
    /// The payload.
    pub data: Vec<u8>,
}

#[derive(Debug)]
struct Ring {
    queue: Queue,
    desc_table: GuestAddress,
    avail: GuestAddress,
    used: GuestAddress,
    free: Vec<u16>,
    /// Posted chains by head: their descriptor indices and buffers.
    chains: HashMap<u16, (Vec<u16>, Vec<Desc>)>,
    avail_idx: Wrapping<u16>,
    used_seen: Wrapping<u16>,
}

/// The driver side of a device's queues, and the [`QueueSet`] the device is given.
#[derive(Debug)]
pub struct TestQueues {
    mem: GuestMemory,
    rings: Vec<Ring>,
    signals: Vec<usize>,
}

/// Size of the test queues: what a Linux guest under the kvm engine picks; the 1024 of
/// [`QUEUE_SIZE`] (QEMU's) would not fit the slots in test memory.
pub const TEST_QUEUE_SIZE: u16 = 256;

impl Default for TestQueues {
    fn default() -> Self {
        Self::new(NUM_QUEUES, TEST_QUEUE_SIZE)
    }
}

impl TestQueues {
    /// `count` queues of `size` descriptors in fresh guest memory.
    pub fn new(count: usize, size: u16) -> Self {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), MEM_BYTES)])
            .expect("mapping guest memory");
        let mut rings = Vec::with_capacity(count);
        for q in 0..count {
            let base = q as u64 * RING_STRIDE;
            let mock = MockSplitQueue::create(&mem, GuestAddress(base), size);
            let mut queue: Queue = mock.create_queue().expect("creating a queue");
            // virtio-queue 0.17's mock puts the used ring where the avail ring's entries
            // from about size/2 on live (it measures the avail ring in entries, not
            // bytes); past 64 entries the device's used entries then overwrite the
            // driver's avail entries. Give the used ring room of its own.
            let used = GuestAddress(base + USED_OFFSET);
            queue
                .try_set_used_ring_address(used)
                .expect("used ring address");
            rings.push(Ring {
                queue,
                desc_table: mock.desc_table_addr(),
                avail: mock.avail_addr(),
                used,
                free: (0..size).rev().collect(),
                chains: HashMap::new(),
                avail_idx: Wrapping(0),
                used_seen: Wrapping(0),
            });
        }
        TestQueues {
            mem,
            rings,
            signals: vec![0; count],
        }
    }

    /// The guest memory.
    pub fn memory(&self) -> &GuestMemory {
        &self.mem
    }

    /// The guest memory as a backend's `activate` takes it.
    pub fn shared_memory(&self) -> SharedMemory {
        GuestMemoryAtomic::new(self.mem.clone())
    }

    /// The device-side queue `q` (e.g. to inspect or corrupt its state).
    pub fn queue_mut(&mut self, q: usize) -> &mut Queue {
        &mut self.rings[q].queue
    }

    /// How often the device signalled queue `q`.
    pub fn signals(&self, q: usize) -> usize {
        self.signals[q]
    }

    /// Descriptors of queue `q` not in a posted chain.
    pub fn free_descriptors(&self, q: usize) -> usize {
        self.rings[q].free.len()
    }

    /// The buffer slot of descriptor `index` of queue `q`.
    pub fn slot(&self, q: usize, index: u16) -> u64 {
        let n = q as u64 * u64::from(TEST_QUEUE_SIZE) + u64::from(index);
        SLOTS_BASE + n * SLOT_SIZE
    }

    /// Posts a chain of hand-made descriptors on queue `q`; returns its head index, or
    /// `None` if too few descriptors are free.
    pub fn post(&mut self, q: usize, descs: &[Desc]) -> Option<u16> {
        self.post_with(q, descs.len(), |_| descs.to_vec())
    }

    /// Posts a chain of `n` descriptors whose buffers `make` chooses from their indices.
    fn post_with(
        &mut self,
        q: usize,
        n: usize,
        make: impl FnOnce(&[u16]) -> Vec<Desc>,
    ) -> Option<u16> {
        let ring = &mut self.rings[q];
        if n == 0 || ring.free.len() < n {
            return None;
        }
        let at = ring.free.len() - n;
        let mut indices = ring.free.split_off(at);
        indices.reverse();
        let descs = make(&indices);
        assert_eq!(descs.len(), n);
        for (i, d) in descs.iter().enumerate() {
            let mut flags = if d.writable { VRING_DESC_F_WRITE } else { 0 };
            let next = indices.get(i + 1).copied().unwrap_or(0);
            if i + 1 < n {
                flags |= VRING_DESC_F_NEXT;
            }
            let raw = RawDescriptor::from(SplitDescriptor::new(d.addr, d.len, flags, next));
            let at = ring.desc_table.0 + u64::from(indices[i]) * 16;
            self.mem
                .write_obj(raw, GuestAddress(at))
                .expect("descriptor");
        }
        let head = indices[0];
        let size = u64::from(ring.queue.size());
        let slot = ring.avail.0 + 4 + u64::from(ring.avail_idx.0) % size * 2;
        self.mem.write_obj(head, GuestAddress(slot)).expect("avail");
        ring.avail_idx += 1;
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        self.mem
            .write_obj(ring.avail_idx.0, GuestAddress(ring.avail.0 + 2))
            .expect("avail idx");
        ring.chains.insert(head, (indices, descs));
        Some(head)
    }

    /// The used entries of queue `q` since the last call: (head, used length, the chain).
    fn used_chains(&mut self, q: usize) -> Vec<(u16, u32, Vec<Desc>)> {
        let ring = &mut self.rings[q];
        let used_idx: u16 = self
            .mem
            .read_obj(GuestAddress(ring.used.0 + 2))
            .expect("used idx");
        let size = u64::from(ring.queue.size());
        let mut out = Vec::new();
        while ring.used_seen.0 != used_idx {
            let at = ring.used.0 + 4 + u64::from(ring.used_seen.0) % size * 8;
            let id: u32 = self.mem.read_obj(GuestAddress(at)).expect("used id");
            let len: u32 = self.mem.read_obj(GuestAddress(at + 4)).expect("used len");
            ring.used_seen += 1;
            let head = u16::try_from(id).expect("used id fits a descriptor index");
            let Some((mut indices, descs)) = ring.chains.remove(&head) else {
                panic!("queue {q}: the device used chain {head}, which is not posted (seen {}, idx {used_idx}, posted {:?})", ring.used_seen, ring.chains.keys().collect::<Vec<_>>());
            };
            indices.reverse();
            ring.free.extend(indices);
            out.push((head, len, descs));
        }
        out
    }

    /// The used entries of queue `q` since the last call: (head, used length).
    pub fn take_used(&mut self, q: usize) -> Vec<(u16, u32)> {
        self.used_chains(q)
            .into_iter()
            .map(|(head, len, _)| (head, len))
            .collect()
    }

    /// Sends a packet on TX: header and payload in two descriptors (one if no payload).
    pub fn send(&mut self, header: &Header, payload: &[u8]) -> Option<u16> {
        let n = if payload.is_empty() { 1 } else { 2 };
        let slots: Vec<u64> = self.next_slots(TX_QUEUE, n)?;
        self.mem
            .write_slice(&header.to_bytes(), GuestAddress(slots[0]))
            .expect("header");
        let mut descs = vec![Desc {
            addr: slots[0],
            len: HEADER_LEN,
            writable: false,
        }];
        if n == 2 {
            self.mem
                .write_slice(payload, GuestAddress(slots[1]))
                .expect("payload");
            descs.push(Desc {
                addr: slots[1],
                len: len32(payload.len()),
                writable: false,
            });
        }
        self.post(TX_QUEUE, &descs)
    }

    /// Sends a packet on TX with its payload spread over `pieces` descriptors after the
    /// header's (Linux sends large packets as scatter-gather lists).
    pub fn send_scattered(
        &mut self,
        header: &Header,
        payload: &[u8],
        pieces: usize,
    ) -> Option<u16> {
        let chunk = payload.len().div_ceil(pieces).max(1);
        let parts: Vec<&[u8]> = payload.chunks(chunk).collect();
        let slots: Vec<u64> = self.next_slots(TX_QUEUE, 1 + parts.len())?;
        self.mem
            .write_slice(&header.to_bytes(), GuestAddress(slots[0]))
            .expect("header");
        let mut descs = vec![Desc {
            addr: slots[0],
            len: HEADER_LEN,
            writable: false,
        }];
        for (part, slot) in parts.iter().zip(&slots[1..]) {
            self.mem
                .write_slice(part, GuestAddress(*slot))
                .expect("payload");
            descs.push(Desc {
                addr: *slot,
                len: len32(part.len()),
                writable: false,
            });
        }
        self.post(TX_QUEUE, &descs)
    }

    /// Sends a packet on TX with header and payload in one descriptor (Linux >= 6.2).
    pub fn send_single(&mut self, header: &Header, payload: &[u8]) -> Option<u16> {
        let slot = *self.next_slots(TX_QUEUE, 1)?.first()?;
        self.mem
            .write_slice(&header.to_bytes(), GuestAddress(slot))
            .expect("header");
        self.mem
            .write_slice(payload, GuestAddress(slot + HEADER_SIZE as u64))
            .expect("payload");
        self.post(
            TX_QUEUE,
            &[Desc {
                addr: slot,
                len: len32(HEADER_SIZE + payload.len()),
                writable: false,
            }],
        )
    }

    /// Posts up to `n` RX buffers (a header descriptor and a 64 KiB payload descriptor
    /// each); returns how many were posted.
    pub fn give_rx(&mut self, n: usize) -> usize {
        let mut posted = 0;
        while posted < n {
            let Some(slots) = self.next_slots(RX_QUEUE, 2) else {
                break;
            };
            let descs = [
                Desc {
                    addr: slots[0],
                    len: HEADER_LEN,
                    writable: true,
                },
                Desc {
                    addr: slots[1],
                    len: MAX_PAYLOAD,
                    writable: true,
                },
            ];
            if self.post(RX_QUEUE, &descs).is_none() {
                break;
            }
            posted += 1;
        }
        posted
    }

    /// The packets the device put in RX buffers since the last call.
    pub fn recv(&mut self) -> Vec<RxPacket> {
        self.used_chains(RX_QUEUE)
            .into_iter()
            .map(|(_, used_len, descs)| self.decode(used_len, &descs))
            .collect()
    }

    fn decode(&self, used_len: u32, descs: &[Desc]) -> RxPacket {
        let mut packet = RxPacket {
            used_len,
            header: Header::default(),
            data: Vec::new(),
        };
        let Some(first) = descs.first() else {
            return packet;
        };
        if (used_len as usize) < HEADER_SIZE {
            return packet;
        }
        let mut bytes = [0u8; HEADER_SIZE];
        self.mem
            .read_slice(&mut bytes, GuestAddress(first.addr))
            .expect("header");
        packet.header = Header::from_bytes(&bytes);
        let data_at = match descs.get(1) {
            Some(d) => d.addr,
            None => first.addr + HEADER_SIZE as u64,
        };
        let len = (used_len as usize - HEADER_SIZE).min(packet.header.len as usize);
        packet.data = vec![0; len];
        self.mem
            .read_slice(&mut packet.data, GuestAddress(data_at))
            .expect("payload");
        packet
    }

    /// The slots of the next `n` descriptors [`Self::post`] will use on queue `q`.
    fn next_slots(&self, q: usize, n: usize) -> Option<Vec<u64>> {
        let free = &self.rings[q].free;
        if free.len() < n {
            return None;
        }
        Some(
            free.iter()
                .rev()
                .take(n)
                .map(|&i| self.slot(q, i))
                .collect(),
        )
    }
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).expect("buffer length fits u32")
}

impl QueueSet for TestQueues {
    fn len(&self) -> usize {
        self.rings.len()
    }

    fn with_queue(
        &mut self,
        index: usize,
        f: &mut dyn FnMut(&mut Queue, &GuestMemory) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let ring = self
            .rings
            .get_mut(index)
            .ok_or(BackendError::NoSuchQueue(index))?;
        f(&mut ring.queue, &self.mem)
    }

    fn signal(&mut self, index: usize) -> Result<(), BackendError> {
        let count = self
            .signals
            .get_mut(index)
            .ok_or(BackendError::NoSuchQueue(index))?;
        *count += 1;
        Ok(())
    }
}

/// Waits for a backend's fd to become readable.
#[derive(Debug)]
pub struct Poller {
    epoll: Epoll,
}

impl Poller {
    /// Polls `fd` (a backend's [`backend_fd`](crate::devices::virtio::backend::VirtioBackend::backend_fd)).
    pub fn new(fd: RawFd) -> std::io::Result<Self> {
        let epoll = Epoll::new()?;
        epoll.ctl(ControlOperation::Add, fd, EpollEvent::new(EventSet::IN, 0))?;
        Ok(Poller { epoll })
    }

    /// Waits up to `timeout_ms` (-1: forever); true if the fd is readable.
    pub fn wait(&self, timeout_ms: i32) -> bool {
        let mut events = [EpollEvent::default(); 1];
        matches!(self.epoll.wait(timeout_ms, &mut events), Ok(n) if n > 0)
    }
}

/// A [`Vsock`] device on [`TestQueues`] with a socket in a temporary directory: the
/// pieces a benchmark or an adapter test needs to play the guest.
#[derive(Debug)]
pub struct Harness {
    /// The device, activated.
    pub dev: Vsock,
    /// The driver side of its queues.
    pub queues: TestQueues,
    /// Waits on the device's backend fd.
    pub poller: Poller,
    dir: tempfile::TempDir,
}

impl Harness {
    /// An activated device for guest CID [`GUEST_CID`], its hybrid socket at
    /// `<tempdir>/vsock.sock`.
    pub fn new() -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut dev =
            Vsock::new(GUEST_CID, dir.path().join("vsock.sock")).map_err(std::io::Error::other)?;
        let queues = TestQueues::default();
        dev.activate(queues.shared_memory())
            .map_err(std::io::Error::other)?;
        let fd = dev
            .backend_fd()
            .ok_or_else(|| std::io::Error::other("vsock has no backend fd"))?;
        let poller = Poller::new(fd)?;
        Ok(Harness {
            dev,
            queues,
            poller,
            dir,
        })
    }

    /// The directory holding the device's socket.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Waits up to `timeout_ms` for host-side events and handles them; true if there were.
    pub fn pump(&mut self, timeout_ms: i32) -> Result<bool, BackendError> {
        if !self.poller.wait(timeout_ms) {
            return Ok(false);
        }
        self.dev.handle_backend_event(&mut self.queues)?;
        Ok(true)
    }

    /// Lets the device handle the driver's notification of queue `q`.
    pub fn kick(&mut self, q: usize) -> Result<(), BackendError> {
        self.dev.handle_queue(q, &mut self.queues)
    }

    /// Connects the in-process handle to guest `port` and accepts as the guest with a
    /// receive buffer of `guest_buf` bytes. Returns the host stream and the packet header
    /// of the device's REQUEST (its `src_port` is the host port, `buf_alloc` the device's
    /// buffer).
    pub fn connect_from_host(
        &mut self,
        port: u32,
        guest_buf: u32,
    ) -> std::io::Result<(std::os::unix::net::UnixStream, Header)> {
        let handle = self.dev.handle();
        let waiter = std::thread::spawn(move || handle.connect(port));
        self.queues.give_rx(1);
        self.kick(RX_QUEUE).map_err(std::io::Error::other)?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let request = loop {
            if let Some(p) = self.queues.recv().into_iter().next() {
                break p.header;
            }
            if std::time::Instant::now() > deadline {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            self.pump(50).map_err(std::io::Error::other)?;
        };
        let response = Header {
            src_cid: GUEST_CID,
            dst_cid: request.src_cid,
            src_port: port,
            dst_port: request.src_port,
            type_: request.type_,
            op: Op::Response as u16,
            buf_alloc: guest_buf,
            ..Header::default()
        };
        self.queues
            .send(&response, &[])
            .ok_or_else(|| std::io::Error::other("no TX descriptors"))?;
        self.kick(TX_QUEUE).map_err(std::io::Error::other)?;
        self.queues.take_used(TX_QUEUE);
        let stream = waiter
            .join()
            .map_err(|_| std::io::Error::other("connect thread panicked"))??;
        Ok((stream, request))
    }
}
