//! The transport driven the way a guest driver drives it, over real rings in test memory.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use event_manager::{EventManager, SubscriberOps};
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryAtomic};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::registers::{interrupt, status, Register};
use super::*;
use crate::devices::virtio::backend::{BackendError, GuestMemory, QueueSet};

const DEVICE_TYPE: u32 = 4;
const MAX_SIZE: u16 = 256;
/// Device features offered besides VERSION_1: one in each page, and EVENT_IDX.
const FEATURE_LOW: u64 = 1 << 3;
const FEATURE_HIGH: u64 = 1 << 40;
const OFFERED: u64 = FEATURE_LOW | FEATURE_HIGH | VIRTIO_F_RING_EVENT_IDX;
const ALL_OFFERED: u64 = OFFERED | VIRTIO_F_VERSION_1;

const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;

/// Where tests put queue 0: descriptor table and available ring laid out by the mock
/// driver at `QUEUE_BASE`, used ring at `USED_RING`. (The mock's own used ring overlaps its
/// available ring: `SplitQueueRing::end` adds entries, not bytes.)
const QUEUE_BASE: u64 = 0x1000;
const USED_RING: u64 = 0x3000;
const QUEUE_SIZE: u16 = 16;
const OUT_BUFFER: u64 = 0x8000;
const IN_BUFFER: u64 = 0x9000;
const MEM_SIZE: usize = 0x10_0000;

/// What the backend was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    AckFeatures(u64),
    Activate,
    Reset,
    Queue(usize),
    BackendEvent,
}

/// The test backend's state, shared with the test.
#[derive(Debug, Default)]
struct Shared {
    calls: Vec<Call>,
    config: Vec<u8>,
    fail_activate: bool,
    fail_queue: bool,
    /// Between a successful activation and a reset.
    active: bool,
    /// Calls a transport must never make (queue or backend work while not active).
    violations: usize,
}

/// Records every call; echoes each descriptor chain (device-readable bytes copied into the
/// device-writable buffers) to the used ring, then signals.
struct TestBackend {
    shared: Arc<Mutex<Shared>>,
    num_queues: usize,
    max_size: u16,
    backend_fd: Option<EventFd>,
}

impl TestBackend {
    fn record(&self, call: Call) {
        self.shared.lock().unwrap().calls.push(call);
    }
}

fn guest_error(e: impl std::fmt::Display) -> BackendError {
    BackendError::Guest(e.to_string())
}

/// Serves every available chain of `queue`: returns how many it used.
fn echo(queue: &mut Queue, mem: &GuestMemory) -> Result<usize, BackendError> {
    let mut used = 0;
    while let Some(chain) = queue.pop_descriptor_chain(mem) {
        let head = chain.head_index();
        let descriptors: Vec<SplitDescriptor> = chain.collect();
        let mut data = Vec::new();
        if descriptors.iter().any(|d| d.len() > 0x1_0000) {
            return Err(BackendError::Guest(
                "descriptor too long for the test".into(),
            ));
        }
        for d in descriptors.iter().filter(|d| !d.is_write_only()) {
            let mut buf = vec![0; usize::try_from(d.len()).unwrap()];
            mem.read_slice(&mut buf, d.addr()).map_err(guest_error)?;
            data.extend_from_slice(&buf);
        }
        let mut rest = &data[..];
        let mut written = 0;
        for d in descriptors.iter().filter(|d| d.is_write_only()) {
            let n = rest.len().min(usize::try_from(d.len()).unwrap());
            mem.write_slice(&rest[..n], d.addr()).map_err(guest_error)?;
            rest = &rest[n..];
            written += n;
        }
        queue
            .add_used(mem, head, u32::try_from(written).unwrap())
            .map_err(guest_error)?;
        used += 1;
    }
    Ok(used)
}

impl VirtioBackend for TestBackend {
    fn device_type(&self) -> u32 {
        DEVICE_TYPE
    }

    fn num_queues(&self) -> usize {
        self.num_queues
    }

    fn max_queue_size(&self) -> u16 {
        self.max_size
    }

    fn features(&self) -> u64 {
        OFFERED
    }

    fn ack_features(&mut self, features: u64) {
        self.record(Call::AckFeatures(features));
    }

    fn config(&self) -> Vec<u8> {
        self.shared.lock().unwrap().config.clone()
    }

    fn activate(&mut self, _memory: SharedMemory) -> Result<(), BackendError> {
        self.record(Call::Activate);
        let mut shared = self.shared.lock().unwrap();
        if shared.fail_activate {
            return Err(BackendError::Guest("activation refused by the test".into()));
        }
        shared.active = true;
        Ok(())
    }

    fn reset(&mut self) {
        self.record(Call::Reset);
        self.shared.lock().unwrap().active = false;
    }

    fn backend_fd(&self) -> Option<RawFd> {
        self.backend_fd.as_ref().map(AsRawFd::as_raw_fd)
    }

    fn handle_queue(
        &mut self,
        index: usize,
        queues: &mut dyn QueueSet,
    ) -> Result<(), BackendError> {
        self.record(Call::Queue(index));
        {
            let mut shared = self.shared.lock().unwrap();
            if !shared.active {
                shared.violations += 1;
            }
            if shared.fail_queue {
                return Err(BackendError::Guest("bad request (test)".into()));
            }
        }
        let mut used = 0;
        queues.with_queue(index, &mut |queue: &mut Queue, mem: &GuestMemory| {
            used += echo(queue, mem)?;
            Ok(())
        })?;
        if used > 0 {
            queues.signal(index)?;
        }
        Ok(())
    }

    fn handle_backend_event(&mut self, _queues: &mut dyn QueueSet) -> Result<(), BackendError> {
        self.record(Call::BackendEvent);
        let mut shared = self.shared.lock().unwrap();
        if !shared.active {
            shared.violations += 1;
        }
        if let Some(fd) = &self.backend_fd {
            drain(fd);
        }
        Ok(())
    }
}

/// How to build the backend under test.
struct Options {
    num_queues: usize,
    max_size: u16,
    config: Vec<u8>,
    backend_fd: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            num_queues: 2,
            max_size: MAX_SIZE,
            config: (1..=12).map(|b| b * 0x11).collect(),
            backend_fd: false,
        }
    }
}

fn test_memory() -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
}

/// A transport over a [`TestBackend`], with the guest driver's view of it.
struct Harness {
    transport: Arc<Mutex<MmioTransport>>,
    shared: Arc<Mutex<Shared>>,
    /// The transport's interrupt eventfd, as KVM would see it.
    interrupt: EventFd,
    /// The backend's fd, as its host side would make it readable.
    backend_event: Option<EventFd>,
}

impl Harness {
    fn new(mem: &GuestMemory) -> Self {
        Self::with(mem, Options::default())
    }

    fn with(mem: &GuestMemory, options: Options) -> Self {
        let shared = Arc::new(Mutex::new(Shared {
            config: options.config,
            ..Shared::default()
        }));
        let backend_fd = options
            .backend_fd
            .then(|| EventFd::new(EFD_NONBLOCK).unwrap());
        let backend_event = backend_fd.as_ref().map(|fd| fd.try_clone().unwrap());
        let backend = TestBackend {
            shared: Arc::clone(&shared),
            num_queues: options.num_queues,
            max_size: options.max_size,
            backend_fd,
        };
        let interrupt = EventFd::new(EFD_NONBLOCK).unwrap();
        let transport = MmioTransport::new(
            Box::new(backend),
            GuestMemoryAtomic::new(mem.clone()),
            interrupt.try_clone().unwrap(),
        )
        .unwrap();
        Self {
            transport: Arc::new(Mutex::new(transport)),
            shared,
            interrupt,
            backend_event,
        }
    }

    fn t(&self) -> std::sync::MutexGuard<'_, MmioTransport> {
        self.transport.lock().unwrap()
    }

    fn read(&self, offset: u64) -> u32 {
        let mut data = [0xaa; 4];
        self.t().read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    fn write(&self, offset: u64, value: u32) {
        self.t().write(offset, &value.to_le_bytes());
    }

    fn status(&self) -> u32 {
        self.read(0x070)
    }

    fn set_status(&self, value: u32) {
        self.write(0x070, value);
    }

    fn calls(&self) -> Vec<Call> {
        self.shared.lock().unwrap().calls.clone()
    }

    fn complained(&self, kind: Complaint) -> bool {
        self.t().complaints.has_reported(kind)
    }

    /// Interrupts raised since the last call.
    fn interrupts(&self) -> u64 {
        self.interrupt.read().unwrap_or(0)
    }

    fn write_features(&self, features: u64) {
        self.write(0x024, 0);
        self.write(0x020, feature_page(features, 0));
        self.write(0x024, 1);
        self.write(0x020, feature_page(features, 1));
    }

    /// The test guest's `virtio_dev_init` up to ACKNOWLEDGE | DRIVER.
    fn acknowledge(&self) {
        self.set_status(0);
        assert_eq!(self.status(), 0);
        self.set_status(status::ACKNOWLEDGE);
        self.set_status(status::ACKNOWLEDGE | status::DRIVER);
        assert_eq!(self.status(), status::ACKNOWLEDGE | status::DRIVER);
    }

    /// Reset through FEATURES_OK with `features` accepted; asserts FEATURES_OK stuck.
    fn negotiate(&self, features: u64) {
        self.acknowledge();
        self.write_features(features);
        self.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        assert_eq!(
            self.status(),
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK
        );
    }

    fn setup_queue(&self, index: u32, size: u32, desc: u64, driver: u64, device: u64) {
        self.write(0x030, index);
        assert_eq!(self.read(0x044), 0, "queue {index} already live");
        self.write(0x038, size);
        for (low, address) in [(0x080, desc), (0x090, driver), (0x0a0, device)] {
            self.write(low, feature_page(address, 0));
            self.write(low + 4, feature_page(address, 1));
        }
        self.write(0x044, 1);
    }

    /// Queue 0 over the mock driver's rings.
    fn setup_mock_queue(&self, mock: &MockSplitQueue<'_, GuestMemory>) {
        self.setup_queue(
            0,
            u32::from(QUEUE_SIZE),
            mock.desc_table_addr().0,
            mock.avail_addr().0,
            USED_RING,
        );
        assert_eq!(self.read(0x044), 1);
    }

    fn driver_ok(&self) {
        self.set_status(
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
    }

    /// The whole driver sequence with queue 0 on `mock`.
    fn bring_up(&self, mock: &MockSplitQueue<'_, GuestMemory>) {
        self.negotiate(VIRTIO_F_VERSION_1);
        self.setup_mock_queue(mock);
        self.driver_ok();
        assert_eq!(self.status(), 0x0f);
        assert!(self.t().is_activated());
    }
}

/// A mock driver queue at `QUEUE_BASE` with one chain: 8 readable bytes (0..8 at
/// `OUT_BUFFER`), then 16 writable ones at `IN_BUFFER`.
fn mock_with_chain(mem: &GuestMemory) -> MockSplitQueue<'_, GuestMemory> {
    let mock = MockSplitQueue::create(mem, GuestAddress(QUEUE_BASE), QUEUE_SIZE);
    mem.write_slice(&[1, 2, 3, 4, 5, 6, 7, 8], GuestAddress(OUT_BUFFER))
        .unwrap();
    mem.write_slice(&[0; 16], GuestAddress(IN_BUFFER)).unwrap();
    mem.write_slice(&[0; 0x100], GuestAddress(USED_RING))
        .unwrap();
    let chain = [
        RawDescriptor::from(SplitDescriptor::new(OUT_BUFFER, 8, DESC_F_NEXT, 1)),
        RawDescriptor::from(SplitDescriptor::new(IN_BUFFER, 16, DESC_F_WRITE, 0)),
    ];
    mock.add_desc_chains(&chain, 0).unwrap();
    mock
}

/// used.idx of the used ring at `USED_RING`.
fn used_idx(mem: &GuestMemory) -> u16 {
    mem.read_obj(GuestAddress(USED_RING + 2)).unwrap()
}

/// Used ring entry `n`: (id, len).
fn used_entry(mem: &GuestMemory, n: u64) -> (u32, u32) {
    let at = USED_RING + 4 + 8 * n;
    (
        mem.read_obj(GuestAddress(at)).unwrap(),
        mem.read_obj(GuestAddress(at + 4)).unwrap(),
    )
}

/// Asserts the chain of [`mock_with_chain`] came back echoed.
fn assert_echoed(mem: &GuestMemory) {
    assert_eq!(used_idx(mem), 1);
    assert_eq!(used_entry(mem, 0), (0, 8));
    let mut echoed = [0; 16];
    mem.read_slice(&mut echoed, GuestAddress(IN_BUFFER))
        .unwrap();
    assert_eq!(echoed, [1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
}

/// Runs the event loop until nothing is left to do.
fn settle(manager: &mut EventManager<Arc<Mutex<MmioTransport>>>) {
    for _ in 0..20 {
        if manager.run_with_timeout(10).unwrap() == 0 {
            return;
        }
    }
    panic!("the event loop does not settle");
}

#[test]
fn the_vmm_can_share_it_between_vcpu_threads_and_the_event_loop() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Arc<Mutex<MmioTransport>>>();
}

#[test]
fn identification_registers() {
    let mem = test_memory();
    let h = Harness::new(&mem);
    assert_eq!(h.read(0x000), 0x7472_6976);
    assert_eq!(h.read(0x004), 2);
    assert_eq!(h.read(0x008), DEVICE_TYPE);
    assert_eq!(h.read(0x00c), registers::VENDOR_ID);
    assert_eq!(h.t().device_type(), DEVICE_TYPE);
    // QueueNumMax: the backend's size for its queues, 0 for any other.
    for (queue, max) in [(0, 256), (1, 256), (2, 0), (u32::MAX, 0)] {
        h.write(0x030, queue);
        assert_eq!(h.read(0x034), max, "queue {queue}");
        assert_eq!(h.read(0x044), 0, "queue {queue}");
    }
    assert_eq!(h.status(), 0);
    assert_eq!(h.read(0x060), 0);
    assert_eq!(h.read(0x0fc), 0);
    assert!(!h.t().is_failed());
    assert_eq!(h.t().queue_events().len(), 2);
}

#[test]
fn driver_sequence_activates_the_backend_with_the_accepted_features() {
    let mem = test_memory();
    let h = Harness::new(&mem);
    let mock = mock_with_chain(&mem);

    h.acknowledge();
    // DeviceFeatures, page by page, as the test guest reads them.
    h.write(0x014, 1);
    assert_eq!(h.read(0x010), (1 << 0) | (1 << 8)); // VERSION_1 (32), FEATURE_HIGH (40)
    h.write(0x014, 0);
    assert_eq!(h.read(0x010), (1 << 3) | (1 << 29)); // FEATURE_LOW, EVENT_IDX
    h.write(0x014, 2);
    assert_eq!(h.read(0x010), 0);

    h.write_features(VIRTIO_F_VERSION_1 | FEATURE_LOW | FEATURE_HIGH);
    h.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
    assert_eq!(h.status(), 0x0b);
    h.setup_mock_queue(&mock);
    assert!(
        h.calls().is_empty(),
        "nothing reaches the backend before DRIVER_OK"
    );

    h.driver_ok();
    assert_eq!(h.status(), 0x0f);
    assert_eq!(
        h.calls(),
        [
            Call::AckFeatures(VIRTIO_F_VERSION_1 | FEATURE_LOW | FEATURE_HIGH),
            Call::Activate
        ]
    );
    let t = h.t();
    assert!(t.is_activated());
    assert!(!t.is_failed());
    let queue = &t.queues[0].queue;
    assert!(queue.ready());
    assert_eq!(queue.size(), QUEUE_SIZE);
    assert_eq!(queue.desc_table(), QUEUE_BASE);
    assert_eq!(queue.avail_ring(), mock.avail_addr().0);
    assert_eq!(queue.used_ring(), USED_RING);
    assert!(!queue.event_idx_enabled());
    // Queue 1 was never set up: it stays off.
    assert!(!t.queues[1].queue.ready());
    drop(t);
    assert_eq!(h.interrupts(), 0);
    assert_eq!(h.read(0x060), 0);
}

#[test]
fn event_idx_reaches_the_queues_when_accepted() {
    let mem = test_memory();
    let h = Harness::new(&mem);
    let mock = mock_with_chain(&mem);
    h.negotiate(VIRTIO_F_VERSION_1 | VIRTIO_F_RING_EVENT_IDX);
    h.setup_mock_queue(&mock);
    h.driver_ok();
    assert!(h.t().queues[0].queue.event_idx_enabled());
}

#[test]
fn queue_notify_write_reaches_the_backend_and_interrupts() {
    let mem = test_memory();
    let h = Harness::new(&mem);
    let mock = mock_with_chain(&mem);
    h.bring_up(&mock);

    h.write(0x050, 0);
    assert_eq!(h.calls()[2..], [Call::Queue(0)]);
    assert_echoed(&mem);
    assert_eq!(h.interrupts(), 1);
    assert_eq!(h.read(0x060), interrupt::USED_BUFFER);
    h.write(0x064, interrupt::USED_BUFFER);
    assert_eq!(h.read(0x060), 0);
    assert_eq!(h.interrupts(), 0, "acknowledging does not interrupt");
}

#[test]
fn ioeventfd_notification_is_served_by_the_event_loop() {
    let mem = test_memory();
    let h = Harness::new(&mem);
    let mock = mock_with_chain(&mem);
    let mut manager = EventManager::<Arc<Mutex<MmioTransport>>>::new().unwrap();
    manager.add_subscriber(Arc::clone(&h.transport));
    let kick = h.t().queue_events()[0].try_clone().unwrap();

    // Before DRIVER_OK a notification is read and dropped.
    kick.write(1).unwrap();
    settle(&mut manager);
    assert!(h.calls().is_empty());
    assert!(h.complained(Complaint::Notify));
    assert!(kick.read().is_err(), "the loop drained the eventfd");

    h.bring_up(&mock);
    kick.write(1).unwrap();
    settle(&mut manager);
    assert_eq!(h.calls()[2..], [Call::Queue(0)]);
    assert_echoed(&mem);
    assert_eq!(h.interrupts(), 1);
    assert_eq!(h.read(0x060), interrupt::USED_BUFFER);
    h.write(0x064, interrupt::USED_BUFFER);
    assert_eq!(h.read(0x060), 0);

    // Queue 1 exists but was never made ready: its notifications are ignored.
    h.t().queue_events()[1].write(1).unwrap();
    settle(&mut manager);
    assert_eq!(h.calls().len(), 3);
}

#[test]
fn backend_fd_is_watched_only_while_the_device_runs() {
    let mem = test_memory();
    let h = Harness::with(
        &mem,
        Options {
            backend_fd: true,
            ..Options::default()
        },
    );
    let backend_event = h.backend_event.as_ref().unwrap();
    let mock = mock_with_chain(&mem);
    let mut manager = EventManager::<Arc<Mutex<MmioTransport>>>::new().unwrap();
    manager.add_subscriber(Arc::clone(&h.transport));

    backend_event.write(1).unwrap();
    settle(&mut manager);
    assert!(h.calls().is_empty(), "not watched before activation");

    h.bring_up(&mock);
    settle(&mut manager);
    assert_eq!(h.calls()[2..], [Call::BackendEvent]);
    backend_event.write(1).unwrap();
    settle(&mut manager);
    assert_eq!(h.calls()[2..], [Call::BackendEvent, Call::BackendEvent]);

    h.set_status(0);
    backend_event.write(1).unwrap();
    settle(&mut manager);
    assert_eq!(
        h.calls()[2..],
        [Call::BackendEvent, Call::BackendEvent, Call::Reset]
    );
    assert!(!h.t().backend_fd_registered);

    // A second activation watches it again.
    h.bring_up(&mock);
    settle(&mut manager);
    assert_eq!(h.calls().last(), Some(&Call::BackendEvent));
    assert_eq!(h.shared.lock().unwrap().violations, 0);
}

#[test]
fn config_space_reads_of_every_width_and_past_the_end() {
    let mem = test_memory();
    let h = Harness::new(&mem);
    let read = |offset: u64, width: usize| {
        let mut data = vec![0xaa; width];
        h.t().read(offset, &mut data);
        data
    };
    // The backend's configuration is 0x11, 0x22, ... 0xcc (12 bytes).
    assert_eq!(read(0x100, 1), [0x11]);
    assert_eq!(read(0x10b, 1), [0xcc]);
    assert_eq!(read(0x102, 2), [0x33, 0x44]);
    assert_eq!(read(0x104, 4), [0x55, 0x66, 0x77, 0x88]);
    assert_eq!(
        read(0x100, 8),
        [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]
    );
    // Partly and wholly past the end of the configuration: zeros.
    assert_eq!(read(0x108, 8), [0x99, 0xaa, 0xbb, 0xcc, 0, 0, 0, 0]);
    assert_eq!(read(0x10c, 4), [0; 4]);
    assert_eq!(read(0xff8, 8), [0; 8]);
    assert_eq!(read(0xfff, 1), [0]);
    // Unaligned or odd widths: ignored.
    assert!(!h.complained(Complaint::ConfigAccess));
    assert_eq!(read(0x101, 2), [0; 2]);
    assert_eq!(read(0x102, 4), [0; 4]);
    assert_eq!(read(0x104, 8), [0; 8]);
    assert_eq!(read(0x100, 3), [0; 3]);
    assert_eq!(read(0x100, 16), [0; 16]);
    assert!(h.complained(Complaint::ConfigAccess));
    // Writes: the configuration is read-only.
    h.t().write(0x100, &[0xff]);
    h.t().write(0x104, &[0xff; 4]);
    assert_eq!(
        read(0x100, 8),
        [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]
    );
    assert!(h.complained(Complaint::ConfigWrite));
    assert_eq!(h.shared.lock().unwrap().config.len(), 12);
}

#[test]
fn config_generation_follows_configuration_changes() {
    let mem = test_memory();
    let h = Harness::new(&mem);
    let mock = mock_with_chain(&mem);
    let generation = h.read(0x0fc);
    assert_eq!(h.read(0x0fc), generation, "stable while nothing changes");

    // The backend's configuration changes under the driver: the next read of either the
    // generation or the configuration makes the generation move.
    h.shared.lock().unwrap().config[0] = 0x01;
    assert_eq!(h.read(0x0fc), generation + 1);
    h.shared.lock().unwrap().config[1] = 0x02;
    let mut byte = [0];
    h.t().read(0x101, &mut byte);
    assert_eq!(byte, [0x02]);
    assert_eq!(h.read(0x0fc), generation + 2);

    // Announced by the VMM before DRIVER_OK: no notification yet.
    h.t().config_changed();
    assert_eq!(h.read(0x0fc), generation + 3);
    assert_eq!(h.read(0x060), 0);
    assert_eq!(h.interrupts(), 0);

    h.bring_up(&mock);
    h.t().config_changed();
    assert_eq!(h.read(0x0fc), generation + 4);
    assert_eq!(h.read(0x060), interrupt::CONFIG_CHANGE);
    assert_eq!(h.interrupts(), 1);
    h.write(0x064, interrupt::CONFIG_CHANGE);
    assert_eq!(h.read(0x060), 0);
}

#[test]
fn reset_returns_the_device_to_its_initial_state() {
    let mem = test_memory();
    let h = Harness::new(&mem);
    let mock = mock_with_chain(&mem);

    // A reset before any activation leaves the backend alone.
    h.set_status(0);
    assert!(h.calls().is_empty());

    h.bring_up(&mock);
    h.write(0x050, 0);
    assert_eq!(h.read(0x060), interrupt::USED_BUFFER);
    h.write(0x014, 1);
    h.t().queue_events()[0].write(1).unwrap();

    h.set_status(0);
    assert_eq!(h.calls()[3..], [Call::Reset]);
    assert_eq!(h.status(), 0);
    assert_eq!(h.read(0x060), 0, "InterruptStatus cleared");
    assert_eq!(
        h.read(0x010),
        feature_page(ALL_OFFERED, 0),
        "DeviceFeaturesSel back to 0"
    );
    h.write(0x030, 0);
    assert_eq!(h.read(0x044), 0, "QueueReady cleared");
    {
        let t = h.t();
        assert!(!t.is_activated());
        assert!(!t.is_failed());
        assert!(!t.queues[0].queue.ready());
        assert_eq!(t.driver_features, 0);
        assert!(
            t.queue_events()[0].read().is_err(),
            "pending notification drained"
        );
    }
    // Notifications now go nowhere.
    h.write(0x050, 0);
    assert_eq!(h.calls().len(), 4);

    // The driver starts over, with other features, and the device works again.
    let mock = mock_with_chain(&mem);
    h.interrupts();
    h.negotiate(VIRTIO_F_VERSION_1 | FEATURE_HIGH);
    h.setup_mock_queue(&mock);
    h.driver_ok();
    assert_eq!(
        h.calls()[4..],
        [
            Call::AckFeatures(VIRTIO_F_VERSION_1 | FEATURE_HIGH),
            Call::Activate
        ]
    );
    h.write(0x050, 0);
    assert_echoed(&mem);
    assert_eq!(h.interrupts(), 1);
}

#[test]
fn accesses_of_the_wrong_width_alignment_or_offset_are_ignored() {
    let mem = test_memory();
    let h = Harness::new(&mem);
    let read = |offset: u64, width: usize| {
        let mut data = vec![0xaa; width];
        h.t().read(offset, &mut data);
        data
    };
    // Registers are 32 bits wide: other widths read zeros and write nothing.
    assert_eq!(read(0x000, 1), [0]);
    assert_eq!(read(0x000, 2), [0; 2]);
    assert_eq!(read(0x000, 8), [0; 8]);
    assert!(read(0x000, 0).is_empty());
    h.t().write(0x070, &[1]);
    h.t()
        .write(0x070, &u64::from(status::ACKNOWLEDGE).to_le_bytes());
    assert_eq!(h.status(), 0);
    assert!(h.complained(Complaint::AccessWidth));
    // Unaligned.
    assert_eq!(read(0x002, 4), [0; 4]);
    h.t().write(0x071, &status::ACKNOWLEDGE.to_le_bytes());
    assert_eq!(h.status(), 0);
    assert!(h.complained(Complaint::Unaligned));
    // Unknown offsets: legacy registers, gaps, shared memory and QueueReset, and past the
    // window.
    for offset in [
        0x018,
        0x028,
        0x03c,
        0x040,
        0x048,
        0x0ac,
        0x0b0,
        0x0c0,
        0x0f8,
        0x1000,
        0x1_0000,
        u64::MAX - 3,
    ] {
        assert_eq!(read(offset, 4), [0; 4], "offset {offset:#x}");
        h.write(offset, 0xffff_ffff);
    }
    assert!(h.complained(Complaint::UnknownOffset));
    // Read-only registers keep their values.
    for offset in [0x000, 0x004, 0x008, 0x00c, 0x010, 0x034, 0x060, 0x0fc] {
        h.write(offset, 0x1234_5678);
    }
    assert_eq!(h.read(0x000), 0x7472_6976);
    assert_eq!(h.read(0x004), 2);
    assert_eq!(h.read(0x008), DEVICE_TYPE);
    assert_eq!(h.read(0x034), u32::from(MAX_SIZE));
    assert_eq!(h.read(0x060), 0);
    assert_eq!(h.read(0x0fc), 0);
    assert!(h.complained(Complaint::ReadOnlyWrite));
    // Write-only registers read as zero.
    h.write(0x030, 1);
    for offset in [
        0x014, 0x020, 0x024, 0x030, 0x038, 0x050, 0x064, 0x080, 0x0a4,
    ] {
        assert_eq!(read(offset, 4), [0; 4], "offset {offset:#x}");
    }
    assert!(h.complained(Complaint::WriteOnlyRead));
    assert_eq!(h.status(), 0);
    assert!(h.calls().is_empty());
}

#[test]
fn invalid_queue_sizes_make_driver_ok_fail() {
    for size in [0, 3, 100, 512, 1 << 16, u32::MAX] {
        let mem = test_memory();
        let h = Harness::new(&mem);
        let mock = mock_with_chain(&mem);
        h.negotiate(VIRTIO_F_VERSION_1);
        h.setup_queue(0, size, QUEUE_BASE, mock.avail_addr().0, USED_RING);
        assert!(h.complained(Complaint::QueueNum), "size {size}");
        h.driver_ok();

        assert_eq!(h.status(), 0x0f | status::DEVICE_NEEDS_RESET, "size {size}");
        assert!(h.t().is_failed());
        assert!(!h.t().is_activated());
        assert!(h.calls().is_empty(), "size {size}: backend untouched");
        assert_eq!(h.read(0x060), interrupt::CONFIG_CHANGE);
        assert_eq!(h.interrupts(), 1);
        h.write(0x050, 0);
        assert!(h.calls().is_empty());
        assert_eq!(used_idx(&mem), 0);
    }
}

#[test]
fn queues_outside_guest_memory_make_driver_ok_fail() {
    let end = u64::try_from(MEM_SIZE).unwrap();
    // (descriptor table, available ring, used ring) for a queue of 16.
    let cases = [
        (end - 0x80, 0x2000, USED_RING), // descriptor table crosses the end
        (0x1000, end - 0x10, USED_RING), // available ring crosses the end
        (0x1000, 0x2000, end - 0x40),    // used ring crosses the end
        (1 << 40, 0x2000, USED_RING),    // far beyond, through the High register
        (0x1000, 0x2000, u64::MAX - 3),  // would wrap around
        (0x1008, 0x2000, USED_RING),     // descriptor table not 16-byte aligned
        (0x1000, 0x2001, USED_RING),     // available ring not 2-byte aligned
        (0x1000, 0x2000, 0x3002),        // used ring not 4-byte aligned
        (0x1000, 0, USED_RING),          // available ring at 0: virtio-queue refuses it
    ];
    for (desc, driver, device) in cases {
        let mem = test_memory();
        let h = Harness::new(&mem);
        h.negotiate(VIRTIO_F_VERSION_1);
        h.setup_queue(0, 16, desc, driver, device);
        h.driver_ok();
        let case = format!("{desc:#x} {driver:#x} {device:#x}");
        assert!(h.t().is_failed(), "{case}");
        assert!(!h.t().is_activated(), "{case}");
        assert_eq!(h.status(), 0x0f | status::DEVICE_NEEDS_RESET, "{case}");
        assert!(h.calls().is_empty(), "{case}");
        assert!(h.complained(Complaint::QueueInvalid), "{case}");
        h.write(0x050, 0);
        assert!(h.calls().is_empty(), "{case}");
    }
}

#[test]
fn queues_across_a_hole_in_guest_memory_make_driver_ok_fail() {
    let mem = GuestMemory::from_ranges(&[
        (GuestAddress(0), 0x1_0000),
        (GuestAddress(0x2_0000), 0x1_0000),
    ])
    .unwrap();
    let h = Harness::new(&mem);
    h.negotiate(VIRTIO_F_VERSION_1);
    // The descriptor table starts in the hole and ends in the second region.
    h.setup_queue(0, 16, 0x1_ff80, 0x2000, USED_RING);
    h.driver_ok();
    assert!(h.t().is_failed());
    assert!(h.calls().is_empty());

    // Rings that span two adjacent regions are fine.
    let mem = GuestMemory::from_ranges(&[
        (GuestAddress(0), 0x1_0000),
        (GuestAddress(0x1_0000), 0x1_0000),
    ])
    .unwrap();
    let h = Harness::new(&mem);
    h.negotiate(VIRTIO_F_VERSION_1);
    h.setup_queue(0, 16, 0xff80, 0x2000, USED_RING);
    h.driver_ok();
    assert!(!h.t().is_failed());
    assert!(h.t().is_activated());
}

#[test]
fn features_ok_is_refused_without_version_1() {
    let mem = test_memory();
    let h = Harness::new(&mem);
    h.acknowledge();
    h.write_features(FEATURE_LOW | FEATURE_HIGH);
    h.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
    assert_eq!(
        h.status(),
        status::ACKNOWLEDGE | status::DRIVER,
        "FEATURES_OK reads back clear"
    );
    assert!(h.complained(Complaint::FeaturesRefused));
    // Nor can the driver go on to DRIVER_OK.
    h.driver_ok();
    assert_eq!(h.status(), status::ACKNOWLEDGE | status::DRIVER);
    assert!(h.calls().is_empty());
    // Features are still open: with VERSION_1 it works.
    h.write_features(VIRTIO_F_VERSION_1 | FEATURE_LOW);
    h.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
    assert_eq!(h.status(), 0x0b);
}

#[test]
fn features_are_only_accepted_between_driver_and_features_ok() {
    let mem = test_memory();
    let h = Harness::new(&mem);
    let mock = mock_with_chain(&mem);
    // Before DRIVER: ignored.
    h.set_status(status::ACKNOWLEDGE);
    h.write_features(ALL_OFFERED);
    assert_eq!(h.t().driver_features, 0);
    assert!(h.complained(Complaint::FeaturesWindow));
    h.set_status(status::ACKNOWLEDGE | status::DRIVER);
    // Not offered: dropped; page 2 and up: nothing to accept.
    h.write_features(u64::MAX);
    h.write(0x024, 2);
    h.write(0x020, u32::MAX);
    assert_eq!(h.t().driver_features, ALL_OFFERED);
    assert!(h.complained(Complaint::FeaturesNotOffered));
    h.write_features(VIRTIO_F_VERSION_1 | FEATURE_HIGH);
    h.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
    // After FEATURES_OK: frozen.
    h.write_features(ALL_OFFERED);
    h.write(0x024, 0);
    h.write(0x020, 0);
    h.setup_mock_queue(&mock);
    h.driver_ok();
    assert_eq!(
        h.calls(),
        [
            Call::AckFeatures(VIRTIO_F_VERSION_1 | FEATURE_HIGH),
            Call::Activate
        ]
    );
    // And after DRIVER_OK.
    h.write_features(ALL_OFFERED);
    assert_eq!(h.t().driver_features, VIRTIO_F_VERSION_1 | FEATURE_HIGH);
}

#[test]
fn status_bits_are_added_in_order_and_cleared_only_by_reset() {
    let mem = test_memory();
    let h = Harness::new(&mem);
    h.set_status(status::DRIVER);
    assert_eq!(h.status(), 0, "DRIVER before ACKNOWLEDGE");
    h.set_status(status::ACKNOWLEDGE);
    assert_eq!(h.status(), 1);
    h.set_status(status::ACKNOWLEDGE | status::FEATURES_OK);
    assert_eq!(h.status(), 1, "FEATURES_OK before DRIVER");
    h.set_status(status::ACKNOWLEDGE | status::DRIVER_OK);
    assert_eq!(h.status(), 1, "DRIVER_OK before FEATURES_OK");
    h.set_status(status::ACKNOWLEDGE | status::DRIVER);
    assert_eq!(h.status(), 3);
    h.set_status(status::ACKNOWLEDGE);
    assert_eq!(h.status(), 3, "bits are not cleared");
    h.set_status(0x13);
    assert_eq!(h.status(), 3, "reserved bit");
    h.set_status(status::ACKNOWLEDGE | status::DRIVER | status::DEVICE_NEEDS_RESET);
    assert_eq!(h.status(), 3, "the driver cannot set DEVICE_NEEDS_RESET");
    assert!(!h.t().is_failed());
    assert!(h.complained(Complaint::StatusTransition));
    // FAILED: at any time; then only a reset helps.
    h.set_status(3 | status::FAILED);
    assert_eq!(h.status(), 0x83);
    h.write_features(VIRTIO_F_VERSION_1);
    h.set_status(0x8b);
    assert_eq!(h.status(), 0x83);
    assert_eq!(h.t().driver_features, 0);
    assert!(
        !h.t().is_failed(),
        "FAILED is the driver's, not a device error"
    );
    h.set_status(0);
    assert_eq!(h.status(), 0);
    // Several steps in one write are fine when each comes with the one before it.
    h.set_status(status::ACKNOWLEDGE | status::DRIVER);
    assert_eq!(h.status(), 3);
    h.write_features(VIRTIO_F_VERSION_1);
    h.set_status(0);
    h.set_status(status::ACKNOWLEDGE | status::DRIVER);
    assert_eq!(
        h.t().driver_features,
        0,
        "the reset dropped accepted features"
    );
    assert!(h.calls().is_empty());
}

#[test]
fn queue_registers_change_only_during_setup_and_while_not_ready() {
    let mem = test_memory();
    let h = Harness::new(&mem);
    let mock = mock_with_chain(&mem);
    h.acknowledge();
    h.write_features(VIRTIO_F_VERSION_1);
    // Before FEATURES_OK: ignored.
    h.write(0x030, 0);
    h.write(0x038, 4);
    h.write(0x080, 0xdead_0000);
    h.write(0x044, 1);
    assert_eq!(h.read(0x044), 0);
    assert!(h.complained(Complaint::QueueSetupWindow));
    h.set_status(0x0b);
    h.setup_mock_queue(&mock);
    // While ready: ignored.
    h.write(0x038, 4);
    h.write(0x080, 0xdead_0000);
    h.write(0x0a4, 1);
    // A queue that does not exist.
    h.write(0x030, 7);
    h.write(0x038, 4);
    h.write(0x044, 1);
    assert_eq!(h.read(0x044), 0);
    assert_eq!(h.read(0x034), 0);
    assert!(h.complained(Complaint::NoSuchQueue));
    h.driver_ok();
    assert!(h.t().is_activated());
    {
        let t = h.t();
        let queue = &t.queues[0].queue;
        assert_eq!(queue.size(), QUEUE_SIZE);
        assert_eq!(queue.desc_table(), QUEUE_BASE);
        assert_eq!(queue.used_ring(), USED_RING);
    }
    // After DRIVER_OK, queue 1 cannot be enabled.
    h.write(0x030, 1);
    h.write(0x044, 1);
    assert_eq!(h.read(0x044), 0);
    h.write(0x050, 1);
    assert_eq!(h.calls().len(), 2);
    h.write(0x050, 0);
    assert_echoed(&mem);
}

#[test]
fn queue_ready_zero_stops_a_live_queue() {
    let mem = test_memory();
    let h = Harness::new(&mem);
    let mock = mock_with_chain(&mem);
    h.bring_up(&mock);
    h.write(0x030, 0);
    h.write(0x044, 0);
    assert_eq!(h.read(0x044), 0);
    h.write(0x050, 0);
    h.t().queue_events()[0].write(1).unwrap();
    let mut manager = EventManager::<Arc<Mutex<MmioTransport>>>::new().unwrap();
    manager.add_subscriber(Arc::clone(&h.transport));
    settle(&mut manager);
    assert_eq!(h.calls().len(), 2, "no queue work after QueueReady = 0");
    assert_eq!(used_idx(&mem), 0);
    assert_eq!(h.interrupts(), 0);
    // It cannot be restarted without a reset (no VIRTIO_F_RING_RESET).
    h.write(0x044, 1);
    assert_eq!(h.read(0x044), 0);
}

#[test]
fn notifications_that_cannot_be_served_are_ignored() {
    let mem = test_memory();
    let h = Harness::new(&mem);
    let mock = mock_with_chain(&mem);
    h.negotiate(VIRTIO_F_VERSION_1);
    h.setup_mock_queue(&mock);
    h.write(0x050, 0);
    assert!(h.calls().is_empty(), "before DRIVER_OK");
    h.driver_ok();
    for queue in [1, 2, 0xffff, u32::MAX] {
        h.write(0x050, queue);
    }
    assert_eq!(h.calls().len(), 2);
    assert!(h.complained(Complaint::Notify));
    assert!(!h.t().is_failed());
    assert_eq!(used_idx(&mem), 0);
    h.write(0x050, 0);
    assert_echoed(&mem);
}

#[test]
fn a_backend_error_makes_the_device_need_a_reset() {
    let mem = test_memory();
    let h = Harness::new(&mem);
    let mock = mock_with_chain(&mem);
    h.bring_up(&mock);
    h.shared.lock().unwrap().fail_queue = true;
    h.write(0x050, 0);
    assert_eq!(h.calls()[2..], [Call::Queue(0)]);
    assert!(h.t().is_failed());
    assert_eq!(h.status(), 0x0f | status::DEVICE_NEEDS_RESET);
    assert_eq!(h.read(0x060), interrupt::CONFIG_CHANGE);
    assert_eq!(h.interrupts(), 1);
    assert!(h.complained(Complaint::Device));
    // Nothing more reaches the backend until the reset.
    h.write(0x050, 0);
    assert_eq!(h.calls().len(), 3);
    // A read-modify-write of the status keeps DEVICE_NEEDS_RESET and changes nothing.
    h.set_status(h.status());
    assert_eq!(h.status(), 0x0f | status::DEVICE_NEEDS_RESET);
    h.set_status(0);
    assert_eq!(h.calls()[3..], [Call::Reset]);
    assert!(!h.t().is_failed());
    h.shared.lock().unwrap().fail_queue = false;
    let mock = mock_with_chain(&mem);
    h.bring_up(&mock);
    h.write(0x050, 0);
    assert_echoed(&mem);
}

#[test]
fn an_activation_error_makes_the_device_need_a_reset() {
    let mem = test_memory();
    let h = Harness::new(&mem);
    let mock = mock_with_chain(&mem);
    h.shared.lock().unwrap().fail_activate = true;
    h.negotiate(VIRTIO_F_VERSION_1);
    h.setup_mock_queue(&mock);
    h.driver_ok();
    assert_eq!(
        h.calls(),
        [Call::AckFeatures(VIRTIO_F_VERSION_1), Call::Activate]
    );
    assert!(h.t().is_failed());
    assert!(!h.t().is_activated());
    assert_eq!(h.status(), 0x0f | status::DEVICE_NEEDS_RESET);
    assert_eq!(h.read(0x060), interrupt::CONFIG_CHANGE);
    h.write(0x050, 0);
    assert_eq!(h.calls().len(), 2);
    h.set_status(0);
    assert_eq!(
        h.calls()[2..],
        [Call::Reset],
        "the backend cleans up after a failed activation"
    );
    assert_eq!(h.shared.lock().unwrap().violations, 0);
}

#[test]
fn new_refuses_backends_it_cannot_serve() {
    let mem = test_memory();
    let build = |num_queues: usize, max_size: u16| {
        let backend = TestBackend {
            shared: Arc::default(),
            num_queues,
            max_size,
            backend_fd: None,
        };
        MmioTransport::new(
            Box::new(backend),
            GuestMemoryAtomic::new(mem.clone()),
            EventFd::new(EFD_NONBLOCK).unwrap(),
        )
    };
    for size in [0, 3, 0xffff] {
        assert!(matches!(build(1, size), Err(TransportError::InvalidQueueSize(s)) if s == size));
    }
    assert!(matches!(
        build(MAX_QUEUES + 1, 16),
        Err(TransportError::TooManyQueues(n)) if n == MAX_QUEUES + 1
    ));
    assert!(build(1, 32768).is_ok());
    assert!(build(MAX_QUEUES, 1).is_ok());
    assert!(build(0, 0).is_ok(), "no queues: nothing to size");
}

/// xorshift64: deterministic garbage.
struct Garbage(u64);

impl Garbage {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(u64::try_from(len).unwrap())).unwrap()
    }

    fn u32(&mut self) -> u32 {
        feature_page(self.next(), 0)
    }
}

/// Register writes a driver makes, with values it would plausibly use: mixed with garbage,
/// they walk the device through its states (activations with good and bad queues, resets,
/// failures) in random order.
const PLAUSIBLE_WRITES: &[(u64, &[u32])] = &[
    (0x070, &[0x01, 0x03, 0x0b, 0x0f]),
    (0x024, &[0, 1]),
    (0x020, &[0, 1, 1 << 3, 1 << 29]),
    (0x030, &[0, 1]),
    (0x038, &[8, 16, 16, 256, 3, 512]),
    (0x080, &[0x1000, 0x1000, 0x8_0000]),
    (0x084, &[0]),
    (0x090, &[0x1100, 0x1100, 0x2000]),
    (0x094, &[0]),
    (0x0a0, &[0x3000, 0x3000, 0xf_fff0]),
    (0x0a4, &[0]),
    (0x044, &[1]),
    (0x050, &[0, 0, 1]),
    (0x064, &[1, 2, 3]),
];

#[test]
fn garbage_from_the_guest_never_panics_nor_reaches_an_inactive_backend() {
    let mem = test_memory();
    let h = Harness::with(
        &mem,
        Options {
            backend_fd: true,
            ..Options::default()
        },
    );
    let mut manager = EventManager::<Arc<Mutex<MmioTransport>>>::new().unwrap();
    manager.add_subscriber(Arc::clone(&h.transport));
    let mut g = Garbage(0x9e37_79b9_7f4a_7c15);
    // Garbage rings and descriptors at 0x2000.., a well-formed chain at QUEUE_BASE.
    for at in (0x2000..0x4000).step_by(8) {
        mem.write_obj(g.next(), GuestAddress(at)).unwrap();
    }
    let _mock = mock_with_chain(&mem);
    let registers: Vec<u64> = (0..0x100)
        .step_by(4)
        .filter(|&o| Register::at(o).is_some())
        .collect();
    let widths = [0, 1, 2, 3, 4, 4, 4, 4, 8, 16];
    for round in 0..100_000 {
        if g.below(300) == 0 {
            // The driver starts over, gives up, or stops a queue.
            match g.below(4) {
                0 => h.write(0x070, 0x8b),
                1 => h.write(0x044, 0),
                _ => h.write(0x070, 0),
            }
        } else if g.below(4) != 0 {
            let (offset, values) = PLAUSIBLE_WRITES[g.index(PLAUSIBLE_WRITES.len())];
            h.write(offset, values[g.index(values.len())]);
        } else {
            let offset = match g.below(8) {
                0 => g.below(0x1100),
                1 => g.next(),
                _ => registers[g.index(registers.len())],
            };
            let value = match g.below(3) {
                0 => g.u32(),
                1 => 1 << g.below(32),
                _ => u32::try_from(g.below(0x20)).unwrap(),
            };
            let mut data = vec![0; widths[g.index(widths.len())]];
            for (byte, v) in data.iter_mut().zip(value.to_le_bytes().iter().cycle()) {
                *byte = *v;
            }
            if g.below(2) == 0 {
                h.t().write(offset, &data);
            } else {
                h.t().read(offset, &mut data);
            }
        }
        // Now and then the backend fails, and the eventfds fire.
        {
            let mut shared = h.shared.lock().unwrap();
            shared.fail_queue = g.below(20) == 0;
            shared.fail_activate = g.below(20) == 0;
        }
        if round % 17 == 0 {
            h.t().queue_events()[g.index(2)].write(1).unwrap();
            h.backend_event.as_ref().unwrap().write(1).unwrap();
            manager.run_with_timeout(0).unwrap();
        }
        let t = h.t();
        assert!(!t.activated || t.status & status::DRIVER_OK != 0);
        assert_eq!(
            t.status & !(DRIVER_STATUS_BITS | status::DEVICE_NEEDS_RESET),
            0
        );
        assert_eq!(
            t.interrupt_status & !(interrupt::USED_BUFFER | interrupt::CONFIG_CHANGE),
            0
        );
    }
    settle(&mut manager);
    assert_eq!(h.shared.lock().unwrap().violations, 0);
    // The walk went deep: the backend worked, and every kind of trouble but the event
    // loop's and the interrupt's own came up.
    let calls = h.calls();
    let count = |call: Call| calls.iter().filter(|&c| *c == call).count();
    eprintln!(
        "{} activations, {} queue 0 and {} backend events, {} resets",
        count(Call::Activate),
        count(Call::Queue(0)),
        count(Call::BackendEvent),
        count(Call::Reset)
    );
    assert!(count(Call::Activate) >= 20);
    assert!(count(Call::Queue(0)) >= 20);
    assert!(count(Call::BackendEvent) >= 20);
    let t = h.t();
    let not_seen = [Complaint::EventLoop, Complaint::Interrupt];
    assert_eq!(
        t.complaints.reported | not_seen.iter().map(|c| c.bit()).sum::<u32>(),
        (Complaint::Interrupt.bit() << 1) - 1,
        "{:#x}",
        t.complaints.reported
    );
}
