//! A guest's virtio-fs driver and FUSE client over mock queues in real guest memory, for
//! this module's tests and for benchmarks (compiled with the `testing` feature).
//!
//! [`TestQueues`] lays out split virtqueues in guest memory (with `virtio-queue`'s
//! [`MockSplitQueue`]), posts descriptor chains, reads the used rings and implements
//! [`QueueSet`], so the device is driven exactly as a transport drives it. [`FsDriver`]
//! puts a FUSE client on top: it builds real requests (header, argument structs from
//! fuse-backend-rs's ABI, names), posts them, waits on the device's `backend_fd` like an
//! event loop, and decodes the replies, checking that each reply's header is consistent
//! with the used length and the request.
//!
//! Memory layout: ring `q` at `q * 64 KiB` (descriptor table, avail ring 4 KiB further,
//! used ring 4 KiB after that); buffers from 1 MiB, allocated in order and recycled once no
//! chain is posted.

use std::collections::HashMap;
use std::mem::size_of;
use std::num::Wrapping;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use fuse_backend_rs::abi::fuse_abi::{
    AttrOut, CreateIn, EntryOut, FallocateIn, ForgetIn, GetxattrIn, GetxattrOut, InHeader, InitIn,
    InitOut, Kstatfs, LinkIn, MkdirIn, MknodIn, Opcode, OpenIn, OpenOut, OutHeader, ReadIn,
    ReleaseIn, Rename2In, RenameIn, SetattrIn, SetxattrIn, WriteIn, WriteOut, KERNEL_MINOR_VERSION,
    KERNEL_VERSION,
};
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestAddressSpace, GuestMemoryAtomic};

use super::config::FsConfig;
use super::device::{Fs, HIPRIO_QUEUE, NUM_QUEUES};
use super::error::FsError;
use crate::devices::virtio::backend::{
    BackendError, GuestMemory, QueueSet, SharedMemory, VirtioBackend,
};

/// Guest memory size.
pub const MEM_SIZE: u64 = 64 << 20;
/// The request queue the driver uses.
pub const REQUEST_QUEUE: usize = 1;
/// Size of the driver's queues.
pub const DRIVER_QUEUE_SIZE: u16 = 512;
/// Where buffers start.
pub const BUFFERS: u64 = 1 << 20;
/// How long a request may take before the driver gives up (a test failure).
pub const TIMEOUT: Duration = Duration::from_secs(20);

const RING_STRIDE: u64 = 0x1_0000;
const VRING_DESC_F_NEXT: u16 = 1;
const VRING_DESC_F_WRITE: u16 = 2;
const VRING_DESC_F_INDIRECT: u16 = 4;

/// One descriptor as the driver posts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    /// Guest physical address of the buffer.
    pub addr: u64,
    /// Its length.
    pub len: u32,
    /// Device-writable.
    pub writable: bool,
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
    mem: SharedMemory,
    rings: Vec<Ring>,
    signals: Vec<usize>,
    next_buffer: u64,
}

fn len32(len: usize) -> u32 {
    u32::try_from(len).expect("length fits in u32")
}

impl TestQueues {
    /// `count` queues of `size` descriptors (at most 1024) in fresh guest memory.
    pub fn new(count: usize, size: u16) -> Self {
        let bytes = usize::try_from(MEM_SIZE).expect("memory size");
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), bytes)]).expect("guest memory");
        let mut rings = Vec::with_capacity(count);
        for q in 0..count {
            let base = u64::try_from(q).expect("queue index") * RING_STRIDE;
            let mock = MockSplitQueue::create(&mem, GuestAddress(base), size);
            let mut queue: Queue = mock.create_queue().expect("creating a queue");
            // virtio-queue 0.17's mock places the used ring as if the avail ring's size
            // were counted in bytes per entry of one; past 64 entries the two overlap.
            // Give the used ring room of its own, 4 KiB after the avail ring.
            let used = GuestAddress(mock.avail_addr().0 + 0x1000);
            queue.try_set_used_ring_address(used).expect("used ring");
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
        Self {
            mem: GuestMemoryAtomic::new(mem),
            rings,
            signals: vec![0; count],
            next_buffer: BUFFERS,
        }
    }

    /// The guest memory as a backend's `activate` takes it.
    pub fn shared_memory(&self) -> SharedMemory {
        self.mem.clone()
    }

    /// Writes `bytes` at `addr`.
    pub fn write(&self, addr: u64, bytes: &[u8]) {
        self.mem
            .memory()
            .write_slice(bytes, GuestAddress(addr))
            .expect("writing guest memory");
    }

    /// Reads `len` bytes at `addr`.
    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        self.mem
            .memory()
            .read_slice(&mut out, GuestAddress(addr))
            .expect("reading guest memory");
        out
    }

    /// Makes all buffers free again if no chain is posted on any queue.
    pub fn recycle(&mut self) {
        if self.rings.iter().all(|r| r.chains.is_empty()) {
            self.next_buffer = BUFFERS;
        }
    }

    /// A buffer of `len` bytes (8-byte aligned), free until [`Self::recycle`].
    pub fn alloc(&mut self, len: usize) -> u64 {
        let addr = self.next_buffer;
        let len = u64::try_from(len).expect("buffer length").max(1);
        self.next_buffer = (addr + len + 7) & !7;
        assert!(self.next_buffer <= MEM_SIZE, "test guest memory exhausted");
        addr
    }

    /// How often the device signalled queue `q`.
    pub fn signals(&self, q: usize) -> usize {
        self.signals[q]
    }

    /// The device-side queue `q`.
    pub fn queue_mut(&mut self, q: usize) -> &mut Queue {
        &mut self.rings[q].queue
    }

    /// Writes `descs` as a chain in the table at `table`, at `indices`.
    fn write_chain(&self, table: u64, indices: &[u16], descs: &[Desc]) {
        let mem = self.mem.memory();
        for (i, d) in descs.iter().enumerate() {
            let mut flags = if d.writable { VRING_DESC_F_WRITE } else { 0 };
            let next = indices.get(i + 1).copied().unwrap_or(0);
            if i + 1 < descs.len() {
                flags |= VRING_DESC_F_NEXT;
            }
            let raw = RawDescriptor::from(SplitDescriptor::new(d.addr, d.len, flags, next));
            let at = table + u64::from(indices[i]) * 16;
            mem.write_obj(raw, GuestAddress(at)).expect("descriptor");
        }
    }

    /// Posts a chain of descriptors on queue `q`; returns its head index, or `None` if too
    /// few descriptors are free.
    pub fn post(&mut self, q: usize, descs: &[Desc]) -> Option<u16> {
        let n = descs.len();
        let ring = &mut self.rings[q];
        if n == 0 || ring.free.len() < n {
            return None;
        }
        let at = ring.free.len() - n;
        let mut indices = ring.free.split_off(at);
        indices.reverse();
        let table = ring.desc_table.0;
        self.write_chain(table, &indices, descs);
        Some(self.make_available(q, indices, descs.to_vec()))
    }

    /// Posts `descs` in an indirect table: one ring descriptor for the whole chain.
    pub fn post_indirect(&mut self, q: usize, descs: &[Desc]) -> Option<u16> {
        if descs.is_empty() || self.rings[q].free.is_empty() {
            return None;
        }
        let table = self.alloc(descs.len() * 16);
        let table_indices: Vec<u16> = (0..descs.len())
            .map(|i| u16::try_from(i).expect("indirect table size"))
            .collect();
        self.write_chain(table, &table_indices, descs);
        let index = self.rings[q].free.pop().expect("a free descriptor");
        let raw = RawDescriptor::from(SplitDescriptor::new(
            table,
            len32(descs.len() * 16),
            VRING_DESC_F_INDIRECT,
            0,
        ));
        let at = self.rings[q].desc_table.0 + u64::from(index) * 16;
        self.mem
            .memory()
            .write_obj(raw, GuestAddress(at))
            .expect("descriptor");
        Some(self.make_available(q, vec![index], descs.to_vec()))
    }

    /// Puts the chain whose descriptors are `indices` (head first) in the avail ring;
    /// returns its head.
    fn make_available(&mut self, q: usize, indices: Vec<u16>, descs: Vec<Desc>) -> u16 {
        let mem = self.mem.memory();
        let ring = &mut self.rings[q];
        let head = indices[0];
        let size = u64::from(ring.queue.size());
        let slot = ring.avail.0 + 4 + u64::from(ring.avail_idx.0) % size * 2;
        mem.write_obj(head, GuestAddress(slot))
            .expect("avail entry");
        ring.avail_idx += 1;
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        mem.write_obj(ring.avail_idx.0, GuestAddress(ring.avail.0 + 2))
            .expect("avail idx");
        ring.chains.insert(head, (indices, descs));
        head
    }

    /// Makes the device-side queue `q` use event indices (as the transport does once the
    /// driver accepted `VIRTIO_RING_F_EVENT_IDX`).
    pub fn set_event_idx(&mut self, q: usize, enabled: bool) {
        self.rings[q].queue.set_event_idx(enabled);
    }

    /// The used ring's flags (`VRING_USED_F_NO_NOTIFY` = 1: the device wants no kicks).
    pub fn used_flags(&self, q: usize) -> u16 {
        let ring = &self.rings[q];
        self.mem.memory().read_obj(ring.used).expect("used flags")
    }

    /// `avail_event`: the avail index at which the device wants the next kick.
    pub fn avail_event(&self, q: usize) -> u16 {
        let ring = &self.rings[q];
        let at = ring.used.0 + 4 + 8 * u64::from(ring.queue.size());
        self.mem
            .memory()
            .read_obj(GuestAddress(at))
            .expect("avail event")
    }

    /// Sets `used_event`: the used index after which the driver wants an interrupt.
    pub fn set_used_event(&self, q: usize, value: u16) {
        let ring = &self.rings[q];
        let at = ring.avail.0 + 4 + 2 * u64::from(ring.queue.size());
        self.mem
            .memory()
            .write_obj(value, GuestAddress(at))
            .expect("used event");
    }

    /// The used entries of queue `q` since the last call: (head, used length, the chain).
    pub fn take_used(&mut self, q: usize) -> Vec<(u16, u32, Vec<Desc>)> {
        let mem = self.mem.memory();
        let ring = &mut self.rings[q];
        let used_idx: u16 = mem
            .read_obj(GuestAddress(ring.used.0 + 2))
            .expect("used idx");
        let size = u64::from(ring.queue.size());
        let mut out = Vec::new();
        while ring.used_seen.0 != used_idx {
            let at = ring.used.0 + 4 + u64::from(ring.used_seen.0) % size * 8;
            let id: u32 = mem.read_obj(GuestAddress(at)).expect("used id");
            let len: u32 = mem.read_obj(GuestAddress(at + 4)).expect("used len");
            ring.used_seen += 1;
            let head = u16::try_from(id).expect("used id is a descriptor index");
            let (mut indices, descs) = ring
                .chains
                .remove(&head)
                .unwrap_or_else(|| panic!("queue {q}: the device used chain {head}, not posted"));
            indices.reverse();
            ring.free.extend(indices);
            out.push((head, len, descs));
        }
        out
    }

    /// Chains posted on queue `q` and not used yet.
    pub fn posted(&self, q: usize) -> usize {
        self.rings[q].chains.len()
    }
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
        let mem = self.mem.memory();
        f(&mut ring.queue, &mem)
    }

    fn signal(&mut self, index: usize) -> Result<(), BackendError> {
        *self
            .signals
            .get_mut(index)
            .ok_or(BackendError::NoSuchQueue(index))? += 1;
        Ok(())
    }
}

/// A FUSE reply as the driver received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The used length the device reported.
    pub used_len: u32,
    /// The errno (positive), 0 for success.
    pub errno: i32,
    /// What follows the reply header.
    pub data: Vec<u8>,
}

impl Reply {
    /// The payload as `T`, or the errno.
    pub fn into<T: ByteValued>(self) -> Result<T, i32> {
        if self.errno != 0 {
            return Err(self.errno);
        }
        T::from_slice(self.data.get(..size_of::<T>()).unwrap_or_else(|| {
            panic!(
                "reply of {} bytes is shorter than {}",
                self.data.len(),
                std::any::type_name::<T>()
            )
        }))
        .copied()
        .ok_or(libc::EPROTO)
    }

    /// `Ok(())` or the errno.
    pub fn status(self) -> Result<(), i32> {
        match self.errno {
            0 => Ok(()),
            e => Err(e),
        }
    }

    /// The payload bytes, or the errno.
    pub fn bytes(self) -> Result<Vec<u8>, i32> {
        match self.errno {
            0 => Ok(self.data),
            e => Err(e),
        }
    }
}

/// A directory entry from READDIR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The name.
    pub name: Vec<u8>,
    /// The node id the device reported.
    pub ino: u64,
    /// The offset of the next entry.
    pub off: u64,
}

/// FUSE_INIT_EXT: a second flags word follows (not sent by this driver).
const INIT_EXT: u32 = 1 << 30;

/// The reply buffer size for requests without bulk data.
pub const REPLY_LEN: u32 = 4096;

fn cstr(name: &[u8]) -> Vec<u8> {
    let mut v = name.to_vec();
    v.push(0);
    v
}

/// A guest's virtio-fs driver and FUSE client, driving an [`Fs`] device.
#[derive(Debug)]
pub struct FsDriver {
    /// The device under test.
    pub dev: Fs,
    /// Its queues.
    pub queues: TestQueues,
    unique: u64,
    /// Open flags by file handle: READ and WRITE carry them, as Linux sends them.
    open_flags: HashMap<u64, u32>,
    /// Post requests in indirect descriptor tables.
    pub indirect: bool,
    /// The guest user and group requests are made as.
    pub creds: (u32, u32),
}

impl FsDriver {
    /// Creates the device for `share` and activates it.
    pub fn new(share: FsConfig) -> Result<Self, FsError> {
        let mut dev = Fs::new(share)?;
        let queues = TestQueues::new(NUM_QUEUES, DRIVER_QUEUE_SIZE);
        dev.ack_features(dev.features());
        dev.activate(queues.shared_memory())
            .expect("activating the device");
        Ok(Self {
            dev,
            queues,
            unique: 0,
            open_flags: HashMap::new(),
            indirect: false,
            creds: (0, 0),
        })
    }

    /// Creates the device and sends FUSE_INIT.
    pub fn mounted(share: FsConfig) -> Result<Self, FsError> {
        let mut driver = Self::new(share)?;
        driver.init().expect("FUSE_INIT");
        Ok(driver)
    }

    /// Posts a request made of `parts` (after a header built here) with a reply buffer of
    /// `reply_len` bytes (none if 0); returns the chain head and the request's unique.
    pub fn post_request(
        &mut self,
        queue: usize,
        opcode: u32,
        nodeid: u64,
        parts: &[&[u8]],
        reply_len: u32,
    ) -> (u16, u64) {
        self.unique += 1;
        let body: usize = parts.iter().map(|p| p.len()).sum();
        let header = InHeader {
            len: len32(size_of::<InHeader>() + body),
            opcode,
            unique: self.unique,
            nodeid,
            uid: self.creds.0,
            gid: self.creds.1,
            pid: 1,
            padding: 0,
        };
        let mut bytes = header.as_slice().to_vec();
        for part in parts {
            bytes.extend_from_slice(part);
        }
        let head = self.post_raw(queue, &bytes, reply_len);
        (head, self.unique)
    }

    /// Posts `request` verbatim (one readable descriptor) and a reply buffer.
    pub fn post_raw(&mut self, queue: usize, request: &[u8], reply_len: u32) -> u16 {
        self.queues.recycle();
        let addr = self.queues.alloc(request.len());
        self.queues.write(addr, request);
        let mut descs = vec![Desc {
            addr,
            len: len32(request.len()),
            writable: false,
        }];
        if reply_len > 0 {
            let reply = self
                .queues
                .alloc(usize::try_from(reply_len).expect("reply length"));
            descs.push(Desc {
                addr: reply,
                len: reply_len,
                writable: true,
            });
        }
        if self.indirect {
            self.queues.post_indirect(queue, &descs)
        } else {
            self.queues.post(queue, &descs)
        }
        .expect("free descriptors")
    }

    /// Notifies queue `queue`, as the transport does on a driver kick.
    pub fn kick(&mut self, queue: usize) {
        self.dev
            .handle_queue(queue, &mut self.queues)
            .expect("handle_queue");
    }

    /// Waits until the device's `backend_fd` is readable and handles the event.
    pub fn wait_event(&mut self, timeout: Duration) -> bool {
        let fd = self.dev.backend_fd().expect("backend fd");
        // SAFETY: the device owns `fd` and outlives this borrow.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
        let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(millis)).expect("poll");
        if ready == 0 {
            return false;
        }
        self.dev
            .handle_backend_event(&mut self.queues)
            .expect("handle_backend_event");
        true
    }

    /// Waits until chain `head` of `queue` is used; returns its used length and buffers.
    pub fn wait_used(&mut self, queue: usize, head: u16) -> (u32, Vec<Desc>) {
        let deadline = Instant::now() + TIMEOUT;
        let mut done = Vec::new();
        loop {
            done.extend(self.queues.take_used(queue));
            if let Some(at) = done.iter().position(|(h, _, _)| *h == head) {
                let (_, len, descs) = done.swap_remove(at);
                assert!(done.is_empty(), "unexpected completions: {done:?}");
                return (len, descs);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no completion for chain {head} within {TIMEOUT:?}"
            );
            self.wait_event(left);
        }
    }

    /// Decodes the reply in `descs` (the chain's writable part) for request `unique`.
    pub fn decode(&self, used_len: u32, descs: &[Desc], unique: u64) -> Reply {
        let mut bytes = Vec::new();
        for d in descs.iter().filter(|d| d.writable) {
            bytes.extend(
                self.queues
                    .read(d.addr, usize::try_from(d.len).expect("len")),
            );
        }
        let used = usize::try_from(used_len).expect("used len");
        assert!(used <= bytes.len(), "used length {used} beyond the buffers");
        bytes.truncate(used);
        assert!(
            used >= size_of::<OutHeader>(),
            "reply of {used} bytes has no header"
        );
        let header = OutHeader::from_slice(&bytes[..size_of::<OutHeader>()])
            .copied()
            .expect("reply header");
        assert_eq!(header.len, used_len, "reply header length vs used length");
        assert_eq!(header.unique, unique, "reply for another request");
        assert!(header.error <= 0, "positive error {}", header.error);
        Reply {
            used_len,
            errno: -header.error,
            data: bytes[size_of::<OutHeader>()..].to_vec(),
        }
    }

    /// Sends a request on the request queue and returns its reply.
    pub fn call(&mut self, opcode: Opcode, nodeid: u64, parts: &[&[u8]], reply_len: u32) -> Reply {
        self.call_op(opcode as u32, nodeid, parts, reply_len)
    }

    /// [`Self::call`] with a raw opcode number.
    pub fn call_op(&mut self, opcode: u32, nodeid: u64, parts: &[&[u8]], reply_len: u32) -> Reply {
        let (head, unique) = self.post_request(REQUEST_QUEUE, opcode, nodeid, parts, reply_len);
        self.kick(REQUEST_QUEUE);
        let (len, descs) = self.wait_used(REQUEST_QUEUE, head);
        self.decode(len, &descs, unique)
    }

    /// Sends `request` verbatim and returns the used length and the reply bytes.
    pub fn call_raw(&mut self, request: &[u8], reply_len: u32) -> (u32, Vec<u8>) {
        let head = self.post_raw(REQUEST_QUEUE, request, reply_len);
        self.kick(REQUEST_QUEUE);
        let (len, descs) = self.wait_used(REQUEST_QUEUE, head);
        let bytes = descs
            .iter()
            .filter(|d| d.writable)
            .flat_map(|d| {
                self.queues
                    .read(d.addr, usize::try_from(d.len).expect("len"))
            })
            .take(usize::try_from(len).expect("len"))
            .collect();
        (len, bytes)
    }

    /// FUSE_INIT (7.33) offering every feature of the first flags word, as a recent Linux
    /// offers most of them.
    pub fn init(&mut self) -> Result<InitOut, i32> {
        let init = InitIn {
            major: KERNEL_VERSION,
            minor: KERNEL_MINOR_VERSION,
            max_readahead: 0x2_0000,
            flags: !INIT_EXT,
        };
        self.call(Opcode::Init, 0, &[init.as_slice()], REPLY_LEN)
            .into()
    }

    /// FUSE_LOOKUP.
    pub fn lookup(&mut self, parent: u64, name: impl AsRef<[u8]>) -> Result<EntryOut, i32> {
        let name = cstr(name.as_ref());
        self.call(Opcode::Lookup, parent, &[&name], REPLY_LEN)
            .into()
    }

    /// FUSE_FORGET on the high-priority queue (no reply).
    pub fn forget(&mut self, node: u64, nlookup: u64) {
        let arg = ForgetIn { nlookup };
        let (head, _) = self.post_request(
            HIPRIO_QUEUE,
            Opcode::Forget as u32,
            node,
            &[arg.as_slice()],
            0,
        );
        self.kick(HIPRIO_QUEUE);
        let (len, _) = self.wait_used(HIPRIO_QUEUE, head);
        assert_eq!(len, 0, "FORGET got a reply");
    }

    /// FUSE_GETATTR.
    pub fn getattr(&mut self, node: u64) -> Result<AttrOut, i32> {
        let arg = [0u8; 16];
        self.call(Opcode::Getattr, node, &[&arg], REPLY_LEN).into()
    }

    /// FUSE_SETATTR.
    pub fn setattr(&mut self, node: u64, attr: SetattrIn) -> Result<AttrOut, i32> {
        self.call(Opcode::Setattr, node, &[attr.as_slice()], REPLY_LEN)
            .into()
    }

    /// FUSE_OPEN; returns the file handle.
    pub fn open(&mut self, node: u64, flags: i32) -> Result<u64, i32> {
        let arg = OpenIn {
            flags: flags.cast_unsigned(),
            fuse_flags: 0,
        };
        let fh = self
            .call(Opcode::Open, node, &[arg.as_slice()], REPLY_LEN)
            .into::<OpenOut>()?
            .fh;
        self.open_flags.insert(fh, arg.flags);
        Ok(fh)
    }

    /// FUSE_OPENDIR; returns the directory handle.
    pub fn opendir(&mut self, node: u64) -> Result<u64, i32> {
        let arg = OpenIn {
            flags: libc::O_RDONLY.cast_unsigned(),
            fuse_flags: 0,
        };
        self.call(Opcode::Opendir, node, &[arg.as_slice()], REPLY_LEN)
            .into::<OpenOut>()
            .map(|o| o.fh)
    }

    /// FUSE_READ of `size` bytes at `offset` (with a reply buffer just big enough).
    pub fn read(&mut self, node: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, i32> {
        let arg = ReadIn {
            fh,
            offset,
            size,
            flags: self.open_flags.get(&fh).copied().unwrap_or(0),
            ..ReadIn::default()
        };
        let reply = len32(size_of::<OutHeader>()) + size;
        self.call(Opcode::Read, node, &[arg.as_slice()], reply)
            .bytes()
    }

    /// FUSE_WRITE of `data` at `offset`; returns the bytes written.
    pub fn write(&mut self, node: u64, fh: u64, offset: u64, data: &[u8]) -> Result<u32, i32> {
        let arg = WriteIn {
            fh,
            offset,
            size: len32(data.len()),
            flags: self.open_flags.get(&fh).copied().unwrap_or(0),
            ..WriteIn::default()
        };
        self.call(Opcode::Write, node, &[arg.as_slice(), data], REPLY_LEN)
            .into::<WriteOut>()
            .map(|o| o.size)
    }

    /// FUSE_RELEASE.
    pub fn release(&mut self, node: u64, fh: u64) -> Result<(), i32> {
        self.open_flags.remove(&fh);
        let arg = ReleaseIn {
            fh,
            ..ReleaseIn::default()
        };
        self.call(Opcode::Release, node, &[arg.as_slice()], REPLY_LEN)
            .status()
    }

    /// FUSE_CREATE; returns the entry and the file handle.
    pub fn create(
        &mut self,
        parent: u64,
        name: impl AsRef<[u8]>,
        flags: i32,
        mode: u32,
    ) -> Result<(EntryOut, u64), i32> {
        let arg = CreateIn {
            flags: flags.cast_unsigned(),
            mode,
            umask: 0,
            fuse_flags: 0,
        };
        let name = cstr(name.as_ref());
        let reply = self.call(Opcode::Create, parent, &[arg.as_slice(), &name], REPLY_LEN);
        let data = reply.bytes()?;
        let entry = EntryOut::from_slice(&data[..size_of::<EntryOut>()])
            .copied()
            .expect("entry");
        let open = OpenOut::from_slice(&data[size_of::<EntryOut>()..][..size_of::<OpenOut>()])
            .copied()
            .expect("open");
        self.open_flags.insert(open.fh, arg.flags);
        Ok((entry, open.fh))
    }

    /// FUSE_MKDIR.
    pub fn mkdir(
        &mut self,
        parent: u64,
        name: impl AsRef<[u8]>,
        mode: u32,
    ) -> Result<EntryOut, i32> {
        let arg = MkdirIn { mode, umask: 0 };
        let name = cstr(name.as_ref());
        self.call(Opcode::Mkdir, parent, &[arg.as_slice(), &name], REPLY_LEN)
            .into()
    }

    /// FUSE_MKNOD.
    pub fn mknod(
        &mut self,
        parent: u64,
        name: impl AsRef<[u8]>,
        mode: u32,
        rdev: u32,
    ) -> Result<EntryOut, i32> {
        let arg = MknodIn {
            mode,
            rdev,
            umask: 0,
            padding: 0,
        };
        let name = cstr(name.as_ref());
        self.call(Opcode::Mknod, parent, &[arg.as_slice(), &name], REPLY_LEN)
            .into()
    }

    /// FUSE_SYMLINK: `name` in `parent`, pointing to `target`.
    pub fn symlink(
        &mut self,
        parent: u64,
        name: impl AsRef<[u8]>,
        target: impl AsRef<[u8]>,
    ) -> Result<EntryOut, i32> {
        let (name, target) = (cstr(name.as_ref()), cstr(target.as_ref()));
        self.call(Opcode::Symlink, parent, &[&name, &target], REPLY_LEN)
            .into()
    }

    /// FUSE_READLINK.
    pub fn readlink(&mut self, node: u64) -> Result<Vec<u8>, i32> {
        self.call(Opcode::Readlink, node, &[], REPLY_LEN).bytes()
    }

    /// FUSE_LINK: a new name `newname` in `newparent` for `node`.
    pub fn link(
        &mut self,
        node: u64,
        newparent: u64,
        newname: impl AsRef<[u8]>,
    ) -> Result<EntryOut, i32> {
        let arg = LinkIn { oldnodeid: node };
        let name = cstr(newname.as_ref());
        self.call(Opcode::Link, newparent, &[arg.as_slice(), &name], REPLY_LEN)
            .into()
    }

    /// FUSE_RENAME.
    pub fn rename(
        &mut self,
        olddir: u64,
        oldname: impl AsRef<[u8]>,
        newdir: u64,
        newname: impl AsRef<[u8]>,
    ) -> Result<(), i32> {
        let arg = RenameIn { newdir };
        let (old, new) = (cstr(oldname.as_ref()), cstr(newname.as_ref()));
        self.call(
            Opcode::Rename,
            olddir,
            &[arg.as_slice(), &old, &new],
            REPLY_LEN,
        )
        .status()
    }

    /// FUSE_RENAME2 with `flags`.
    pub fn rename2(
        &mut self,
        olddir: u64,
        oldname: impl AsRef<[u8]>,
        newdir: u64,
        newname: impl AsRef<[u8]>,
        flags: u32,
    ) -> Result<(), i32> {
        let arg = Rename2In {
            newdir,
            flags,
            padding: 0,
        };
        let (old, new) = (cstr(oldname.as_ref()), cstr(newname.as_ref()));
        self.call(
            Opcode::Rename2,
            olddir,
            &[arg.as_slice(), &old, &new],
            REPLY_LEN,
        )
        .status()
    }

    /// FUSE_UNLINK.
    pub fn unlink(&mut self, parent: u64, name: impl AsRef<[u8]>) -> Result<(), i32> {
        let name = cstr(name.as_ref());
        self.call(Opcode::Unlink, parent, &[&name], REPLY_LEN)
            .status()
    }

    /// FUSE_RMDIR.
    pub fn rmdir(&mut self, parent: u64, name: impl AsRef<[u8]>) -> Result<(), i32> {
        let name = cstr(name.as_ref());
        self.call(Opcode::Rmdir, parent, &[&name], REPLY_LEN)
            .status()
    }

    /// FUSE_SETXATTR.
    pub fn setxattr(&mut self, node: u64, name: &str, value: &[u8]) -> Result<(), i32> {
        let arg = SetxattrIn {
            size: len32(value.len()),
            flags: 0,
        };
        let name = cstr(name.as_bytes());
        self.call(
            Opcode::Setxattr,
            node,
            &[arg.as_slice(), &name, value],
            REPLY_LEN,
        )
        .status()
    }

    /// FUSE_GETXATTR with a buffer of `size` bytes (0: ask for the size).
    pub fn getxattr(&mut self, node: u64, name: &str, size: u32) -> Result<Vec<u8>, i32> {
        let arg = GetxattrIn { size, padding: 0 };
        let name = cstr(name.as_bytes());
        let reply_len = REPLY_LEN.max(size.saturating_add(64).min(1 << 20));
        let reply = self.call(Opcode::Getxattr, node, &[arg.as_slice(), &name], reply_len);
        if size == 0 {
            reply
                .into::<GetxattrOut>()
                .map(|o| o.size.to_le_bytes().to_vec())
        } else {
            reply.bytes()
        }
    }

    /// FUSE_REMOVEXATTR.
    pub fn removexattr(&mut self, node: u64, name: &str) -> Result<(), i32> {
        let name = cstr(name.as_bytes());
        self.call(Opcode::Removexattr, node, &[&name], REPLY_LEN)
            .status()
    }

    /// FUSE_FALLOCATE.
    pub fn fallocate(&mut self, node: u64, fh: u64, offset: u64, length: u64) -> Result<(), i32> {
        let arg = FallocateIn {
            fh,
            offset,
            length,
            mode: 0,
            padding: 0,
        };
        self.call(Opcode::Fallocate, node, &[arg.as_slice()], REPLY_LEN)
            .status()
    }

    /// FUSE_ACCESS.
    pub fn access(&mut self, node: u64, mask: i32) -> Result<(), i32> {
        let arg = [mask.cast_unsigned().to_le_bytes(), [0; 4]].concat();
        self.call(Opcode::Access, node, &[&arg], REPLY_LEN).status()
    }

    /// FUSE_STATFS.
    pub fn statfs(&mut self, node: u64) -> Result<Kstatfs, i32> {
        self.call(Opcode::Statfs, node, &[], REPLY_LEN).into()
    }

    /// FUSE_READDIR from `offset`; the entries in one reply buffer.
    pub fn readdir(&mut self, node: u64, fh: u64, offset: u64) -> Result<Vec<DirEntry>, i32> {
        let arg = ReadIn {
            fh,
            offset,
            size: REPLY_LEN - len32(size_of::<OutHeader>()),
            ..ReadIn::default()
        };
        let data = self
            .call(Opcode::Readdir, node, &[arg.as_slice()], REPLY_LEN)
            .bytes()?;
        let mut entries = Vec::new();
        let mut at = 0;
        while at + 24 <= data.len() {
            let field = |i: usize| {
                u64::from_le_bytes(data[at + i..at + i + 8].try_into().expect("8 bytes"))
            };
            let (ino, off) = (field(0), field(8));
            let namelen = u32::from_le_bytes(data[at + 16..at + 20].try_into().expect("4 bytes"));
            let namelen = usize::try_from(namelen).expect("name length");
            let name = data[at + 24..at + 24 + namelen].to_vec();
            entries.push(DirEntry { name, ino, off });
            at += (24 + namelen + 7) & !7;
        }
        Ok(entries)
    }

    /// Looks up every component of `path` (relative to the root).
    pub fn walk(&mut self, path: &str) -> Result<EntryOut, i32> {
        let mut node = fuse_backend_rs::abi::fuse_abi::ROOT_ID;
        let mut entry = None;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let e = self.lookup(node, part)?;
            node = e.nodeid;
            entry = Some(e);
        }
        entry.ok_or(libc::EINVAL)
    }

    /// Opens, reads whole and releases the file at `path`.
    pub fn read_file(&mut self, path: &str) -> Result<Vec<u8>, i32> {
        let node = self.walk(path)?.nodeid;
        let fh = self.open(node, libc::O_RDONLY)?;
        let mut out = Vec::new();
        loop {
            let offset = u64::try_from(out.len()).expect("offset");
            let chunk = self.read(node, fh, offset, 64 << 10)?;
            if chunk.is_empty() {
                break;
            }
            out.extend(chunk);
        }
        self.release(node, fh)?;
        Ok(out)
    }
}

/// The process's resident set size, in bytes (from `/proc/self/statm`).
pub fn rss_bytes() -> std::io::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| std::io::Error::other("unexpected /proc/self/statm"))?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Ok(pages * u64::try_from(page).unwrap_or(4096))
}
