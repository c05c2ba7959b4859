//! The virtio-mmio transport, modern register layout (version 2) only: virtio 1.2 §4.2.
//!
//! One [`MmioTransport`] serves one [`VirtioBackend`] in a 0x1000-byte window of guest
//! physical address space ([`registers::WINDOW_SIZE`]): control registers, then the device
//! configuration at 0x100.
//!
//! # How the `kvm` engine wires it up
//!
//! - **MMIO bus**: vCPU threads forward every access inside the window to
//!   [`MmioTransport::read`] / [`MmioTransport::write`] with the offset from the window base.
//! - **Notifications**: one [`EventFd`] per queue, [`MmioTransport::queue_events`]`[i]`; the
//!   VMM registers each with `KVM_IOEVENTFD` at window base + [`registers::QUEUE_NOTIFY_OFFSET`],
//!   length 4, datamatch `i`, so a notification never leaves the kernel. A QueueNotify
//!   write that still reaches [`MmioTransport::write`] (no ioeventfd, or an index that
//!   matched none) is served too: the backend runs on the vCPU thread.
//! - **Interrupt**: the `interrupt` [`EventFd`] given to [`MmioTransport::new`], registered by
//!   the VMM as an irqfd for the device's GSI. The transport writes it after setting a bit of
//!   InterruptStatus (used buffers, configuration change); the driver reads and acknowledges
//!   InterruptStatus, so an edge-triggered GSI is enough.
//! - **Event loop**: the VMM adds `Arc<Mutex<MmioTransport>>` to its `EventManager`. The
//!   transport watches its queue eventfds, an internal eventfd it uses to wake the loop, and,
//!   while the device is activated and healthy, the backend's
//!   [`VirtioBackend::backend_fd`]. vCPU threads and the event loop share the `Mutex`, so
//!   the backend is only ever called with it held.
//!
//! # What the guest can and cannot do
//!
//! Everything the driver writes is checked against the spec. Accesses of the wrong width,
//! misaligned or at unknown offsets, writes to read-only registers and reads of write-only
//! ones are ignored (reads return 0); state changes the spec does not allow are refused.
//! Each kind of misbehaviour is reported once on stderr, so a hostile guest cannot flood the
//! log. Queues are checked against guest memory at DRIVER_OK, and guest memory is only ever
//! reached through `vm-memory`, which bounds every access. A device that cannot go on (bad
//! queues, a failed activation, a backend error) sets DEVICE_NEEDS_RESET and waits for the
//! driver to reset it; nothing the guest does makes the transport panic.

mod event_handler;
mod queue;
pub mod registers;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;

use vm_memory::GuestAddressSpace;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use self::queue::{QueueSlot, TransportQueues};
use self::registers::{interrupt, status, Register};
use crate::devices::virtio::backend::{SharedMemory, VirtioBackend, VIRTIO_F_VERSION_1};

/// `VIRTIO_F_RING_EVENT_IDX` (virtio 1.2 §6): when the driver accepts it, the queues
/// suppress notifications with `used_event` / `avail_event`.
const VIRTIO_F_RING_EVENT_IDX: u64 = 1 << 29;

/// The most queues one transport serves (each costs an eventfd and an ioeventfd).
pub const MAX_QUEUES: usize = 1024;

/// Status bits the driver may write.
const DRIVER_STATUS_BITS: u32 =
    status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK | status::FAILED;

/// Why a transport cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The backend wants more queues than [`MAX_QUEUES`].
    #[error("the backend has {0} queues; a virtio-mmio transport serves at most {MAX_QUEUES}")]
    TooManyQueues(usize),
    /// The backend's queue size cannot be offered.
    #[error("the backend's maximum queue size {0} is not a power of two between 1 and 32768")]
    InvalidQueueSize(u16),
    /// An eventfd could not be created.
    #[error("creating the {what} eventfd: {source}")]
    EventFd {
        /// Which one.
        what: &'static str,
        /// Why it failed.
        source: io::Error,
    },
}

/// Kinds of guest misbehaviour and device trouble, each reported at most once. (Tests
/// take `Interrupt` to be the last.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Complaint {
    AccessWidth,
    Unaligned,
    UnknownOffset,
    ReadOnlyWrite,
    WriteOnlyRead,
    ConfigAccess,
    ConfigWrite,
    FeaturesWindow,
    FeaturesNotOffered,
    FeaturesRefused,
    StatusTransition,
    NoSuchQueue,
    QueueSetupWindow,
    QueueNum,
    Notify,
    QueueInvalid,
    Activation,
    Device,
    EventLoop,
    Interrupt,
}

impl Complaint {
    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// Reports each [`Complaint`] kind once.
#[derive(Debug)]
struct Complaints {
    /// Names the device in messages.
    label: String,
    /// Bit set of the kinds already reported.
    reported: u32,
}

impl Complaints {
    fn report(&mut self, kind: Complaint, message: fmt::Arguments<'_>) {
        if self.reported & kind.bit() != 0 {
            return;
        }
        self.reported |= kind.bit();
        eprintln!(
            "stage1-kvm: virtio-mmio: {}: {message} (not reported again)",
            self.label
        );
    }

    #[cfg(test)]
    fn has_reported(&self, kind: Complaint) -> bool {
        self.reported & kind.bit() != 0
    }
}

/// Direction of a register access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Read,
    Write,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Read => "read",
            Self::Write => "write",
        })
    }
}

/// What the backend is asked to do.
#[derive(Clone, Copy, Debug)]
enum Work {
    /// The driver notified a queue.
    Queue(usize),
    /// The backend's own fd is readable.
    BackendEvent,
}

/// A virtio device behind the virtio-mmio transport (module documentation: how to wire it).
pub struct MmioTransport {
    backend: Box<dyn VirtioBackend>,
    memory: SharedMemory,
    /// Written (after setting InterruptStatus) to interrupt the guest; the VMM's irqfd.
    interrupt: EventFd,
    queues: Vec<QueueSlot>,
    /// One per queue, for the VMM's ioeventfds; watched by the event loop.
    queue_events: Vec<EventFd>,
    /// Wakes the event loop so it watches or forgets the backend's fd (after an activation,
    /// a reset or a failure on a vCPU thread).
    registration_event: EventFd,
    device_type: u32,
    /// What we offer: the backend's features and VIRTIO_F_VERSION_1.
    device_features: u64,
    device_features_sel: u32,
    /// What the driver accepted so far (only offered bits).
    driver_features: u64,
    driver_features_sel: u32,
    queue_sel: u32,
    status: u32,
    interrupt_status: u32,
    config_generation: u32,
    /// The configuration the driver may have seen last; a difference bumps the generation.
    config_seen: Vec<u8>,
    /// DRIVER_OK succeeded: queues are live and the backend is activated.
    activated: bool,
    /// The backend was given features or activated since the last reset.
    backend_dirty: bool,
    /// The backend's fd is in the event loop's interest list.
    backend_fd_registered: bool,
    complaints: Complaints,
}

impl fmt::Debug for MmioTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmioTransport")
            .field("label", &self.complaints.label)
            .field("device_type", &self.device_type)
            .field("queues", &self.queues.len())
            .field("status", &format_args!("{:#x}", self.status))
            .field(
                "driver_features",
                &format_args!("{:#x}", self.driver_features),
            )
            .field("interrupt_status", &self.interrupt_status)
            .field("activated", &self.activated)
            .finish_non_exhaustive()
    }
}

impl MmioTransport {
    /// A transport for `backend`, whose queues live in `memory`. `interrupt` is an EventFd
    /// the VMM registers as an irqfd for this device's GSI.
    pub fn new(
        backend: Box<dyn VirtioBackend>,
        memory: SharedMemory,
        interrupt: EventFd,
    ) -> Result<Self, TransportError> {
        let num_queues = backend.num_queues();
        if num_queues > MAX_QUEUES {
            return Err(TransportError::TooManyQueues(num_queues));
        }
        let max_size = backend.max_queue_size();
        let queues = (0..num_queues)
            .map(|_| QueueSlot::new(max_size))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| TransportError::InvalidQueueSize(max_size))?;
        let new_event = |what| {
            EventFd::new(EFD_NONBLOCK).map_err(|source| TransportError::EventFd { what, source })
        };
        let queue_events = (0..num_queues)
            .map(|_| new_event("queue notification"))
            .collect::<Result<Vec<_>, _>>()?;
        let registration_event = new_event("event loop wake-up")?;
        let device_type = backend.device_type();
        Ok(Self {
            device_features: backend.features() | VIRTIO_F_VERSION_1,
            config_seen: backend.config(),
            backend,
            memory,
            interrupt,
            queues,
            queue_events,
            registration_event,
            device_type,
            device_features_sel: 0,
            driver_features: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            status: 0,
            interrupt_status: 0,
            config_generation: 0,
            activated: false,
            backend_dirty: false,
            backend_fd_registered: false,
            complaints: Complaints {
                label: format!("device type {device_type}"),
                reported: 0,
            },
        })
    }

    /// Names the device in log messages (e.g. `"vsock@0xd0000000"`); by default its type.
    pub fn set_label(&mut self, label: impl Into<String>) {
        self.complaints.label = label.into();
    }

    /// The virtio device ID, as DeviceID shows it.
    pub fn device_type(&self) -> u32 {
        self.device_type
    }

    /// One EventFd per queue: the VMM registers `queue_events()[i]` with `KVM_IOEVENTFD` at
    /// window base + 0x50 (QueueNotify), length 4, datamatch `i`.
    pub fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    /// Whether the device hit a fatal error (DEVICE_NEEDS_RESET set) and waits for a reset.
    pub fn is_failed(&self) -> bool {
        self.status & status::DEVICE_NEEDS_RESET != 0
    }

    /// Whether the driver set DRIVER_OK and the backend was activated (until a reset).
    pub fn is_activated(&self) -> bool {
        self.activated
    }

    /// The backend's configuration space changed: bumps ConfigGeneration and, once the
    /// driver is running the device, sends a configuration change notification.
    pub fn config_changed(&mut self) {
        self.config_seen = self.backend.config();
        self.config_generation = self.config_generation.wrapping_add(1);
        if self.is_running() {
            self.raise(interrupt::CONFIG_CHANGE);
        }
    }

    /// A read of `data.len()` bytes at `offset` within the window (from a vCPU thread).
    /// Whatever is not a valid read leaves `data` zeroed.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if is_config(offset) {
            self.read_config(offset - registers::CONFIG_OFFSET, data);
            return;
        }
        let Some(register) = self.register(offset, data.len(), Direction::Read) else {
            return;
        };
        let value = self.read_register(register);
        if let Ok(out) = <&mut [u8; 4]>::try_from(data) {
            *out = value.to_le_bytes();
        }
    }

    /// A write of `data` at `offset` within the window (from a vCPU thread).
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if is_config(offset) {
            // No backend has a driver-writable configuration field.
            self.complaints.report(
                Complaint::ConfigWrite,
                format_args!(
                    "write of {} bytes to configuration offset {:#x} ignored: the configuration is read-only",
                    data.len(),
                    offset - registers::CONFIG_OFFSET
                ),
            );
            return;
        }
        let Some(register) = self.register(offset, data.len(), Direction::Write) else {
            return;
        };
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return;
        };
        let value = u32::from_le_bytes(bytes);
        match register {
            Register::DeviceFeaturesSel => self.device_features_sel = value,
            Register::DriverFeaturesSel => self.driver_features_sel = value,
            Register::DriverFeatures => self.write_driver_features(value),
            Register::QueueSel => self.queue_sel = value,
            Register::QueueReady => self.write_queue_ready(value),
            Register::QueueNum
            | Register::QueueDescLow
            | Register::QueueDescHigh
            | Register::QueueDriverLow
            | Register::QueueDriverHigh
            | Register::QueueDeviceLow
            | Register::QueueDeviceHigh => self.write_queue_config(register, value),
            Register::QueueNotify => self.write_queue_notify(value),
            Register::InterruptAck => self.interrupt_status &= !value,
            Register::Status => self.write_status(value),
            // Read-only: refused by `register`.
            Register::MagicValue
            | Register::Version
            | Register::DeviceId
            | Register::VendorId
            | Register::DeviceFeatures
            | Register::QueueNumMax
            | Register::InterruptStatus
            | Register::ConfigGeneration => {}
        }
    }

    /// The control register a `width`-byte access at `offset` reaches, if the access is
    /// valid (virtio 1.2 §4.2.2.2: 32 bits wide and aligned, in the right direction).
    fn register(&mut self, offset: u64, width: usize, direction: Direction) -> Option<Register> {
        let kind = if width != 4 {
            Complaint::AccessWidth
        } else if !offset.is_multiple_of(4) {
            Complaint::Unaligned
        } else {
            match Register::at(offset) {
                None => Complaint::UnknownOffset,
                Some(r) if direction == Direction::Read && !r.readable() => {
                    Complaint::WriteOnlyRead
                }
                Some(r) if direction == Direction::Write && !r.writable() => {
                    Complaint::ReadOnlyWrite
                }
                Some(r) => return Some(r),
            }
        };
        let what = match kind {
            Complaint::AccessWidth => "registers take 32-bit accesses only",
            Complaint::Unaligned => "registers take aligned accesses only",
            Complaint::UnknownOffset => "no register there",
            Complaint::WriteOnlyRead => "the register is write-only",
            _ => "the register is read-only",
        };
        self.complaints.report(
            kind,
            format_args!("{direction} of {width} bytes at offset {offset:#x} ignored: {what}"),
        );
        None
    }

    fn read_register(&mut self, register: Register) -> u32 {
        match register {
            Register::MagicValue => registers::MAGIC_VALUE,
            Register::Version => registers::VERSION,
            Register::DeviceId => self.device_type,
            Register::VendorId => registers::VENDOR_ID,
            Register::DeviceFeatures => {
                feature_page(self.device_features, self.device_features_sel)
            }
            Register::QueueNumMax => self
                .selected_queue()
                .and_then(|q| self.queues.get(q))
                .map_or(0, |q| u32::from(q.max_size())),
            Register::QueueReady => self
                .selected_queue()
                .and_then(|q| self.queues.get(q))
                .map_or(0, |q| u32::from(q.ready)),
            Register::InterruptStatus => self.interrupt_status,
            Register::Status => self.status,
            Register::ConfigGeneration => {
                self.observe_config();
                self.config_generation
            }
            // Write-only: refused by `register`.
            Register::DeviceFeaturesSel
            | Register::DriverFeatures
            | Register::DriverFeaturesSel
            | Register::QueueSel
            | Register::QueueNum
            | Register::QueueNotify
            | Register::InterruptAck
            | Register::QueueDescLow
            | Register::QueueDescHigh
            | Register::QueueDriverLow
            | Register::QueueDriverHigh
            | Register::QueueDeviceLow
            | Register::QueueDeviceHigh => 0,
        }
    }

    /// Device configuration: 8-, 16-, 32- and 64-bit aligned reads; bytes past the end of
    /// the backend's configuration read as 0.
    fn read_config(&mut self, offset: u64, data: &mut [u8]) {
        let align: u64 = match data.len() {
            1 => 1,
            2 => 2,
            4 => 4,
            8 => 8,
            _ => 0,
        };
        if align == 0 || !offset.is_multiple_of(align) {
            self.complaints.report(
                Complaint::ConfigAccess,
                format_args!(
                    "read of {} bytes at configuration offset {offset:#x} ignored: 1, 2, 4 or 8 aligned bytes only",
                    data.len()
                ),
            );
            return;
        }
        self.observe_config();
        let Ok(start) = usize::try_from(offset) else {
            return;
        };
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = start
                .checked_add(i)
                .and_then(|at| self.config_seen.get(at))
                .copied()
                .unwrap_or(0);
        }
    }

    /// Reads the backend's configuration and bumps ConfigGeneration if it differs from what
    /// the driver could have seen before, so a driver reading it in several accesses between
    /// two ConfigGeneration reads never takes a torn value for a consistent one.
    fn observe_config(&mut self) {
        let config = self.backend.config();
        if config != self.config_seen {
            self.config_seen = config;
            self.config_generation = self.config_generation.wrapping_add(1);
        }
    }

    fn write_driver_features(&mut self, value: u32) {
        let current = self.status;
        let open = current & status::DRIVER != 0
            && current & (status::FEATURES_OK | status::FAILED | status::DEVICE_NEEDS_RESET) == 0;
        if !open {
            self.complaints.report(
                Complaint::FeaturesWindow,
                format_args!(
                    "DriverFeatures write with status {current:#x} ignored: features are negotiated after DRIVER and before FEATURES_OK"
                ),
            );
            return;
        }
        let page = self.driver_features_sel;
        let offered = feature_page(self.device_features, page);
        if value & !offered != 0 {
            self.complaints.report(
                Complaint::FeaturesNotOffered,
                format_args!(
                    "the driver accepted features {:#x} of page {page}, which are not offered; dropped",
                    value & !offered
                ),
            );
        }
        let shift = match page {
            0 => 0,
            1 => 32,
            _ => return,
        };
        let mask = u64::from(u32::MAX) << shift;
        self.driver_features =
            (self.driver_features & !mask) | (u64::from(value & offered) << shift);
    }

    /// The selected queue's index, if it exists.
    fn selected_queue(&self) -> Option<usize> {
        usize::try_from(self.queue_sel)
            .ok()
            .filter(|&index| index < self.queues.len())
    }

    /// Queues are set up after FEATURES_OK and before DRIVER_OK (virtio 1.2 §3.1.1).
    fn queue_setup_open(&self) -> bool {
        self.status & status::FEATURES_OK != 0
            && self.status & (status::DRIVER_OK | status::FAILED | status::DEVICE_NEEDS_RESET) == 0
    }

    fn write_queue_ready(&mut self, value: u32) {
        let sel = self.queue_sel;
        let current = self.status;
        let open = self.queue_setup_open();
        let Some(slot) = self.selected_queue().and_then(|q| self.queues.get_mut(q)) else {
            self.complaints.report(
                Complaint::NoSuchQueue,
                format_args!("QueueReady write for queue {sel}, which does not exist, ignored"),
            );
            return;
        };
        match value {
            // Stopping a queue is always allowed: from now on the device leaves it alone.
            0 => slot.stop(),
            1 if slot.ready => {}
            1 if open => slot.ready = true,
            _ => self.complaints.report(
                Complaint::QueueSetupWindow,
                format_args!(
                    "QueueReady = {value} for queue {sel} with status {current:#x} ignored: queues are enabled between FEATURES_OK and DRIVER_OK"
                ),
            ),
        }
    }

    fn write_queue_config(&mut self, register: Register, value: u32) {
        let sel = self.queue_sel;
        let current = self.status;
        let open = self.queue_setup_open();
        let Some(slot) = self.selected_queue().and_then(|q| self.queues.get_mut(q)) else {
            self.complaints.report(
                Complaint::NoSuchQueue,
                format_args!("{register:?} write for queue {sel}, which does not exist, ignored"),
            );
            return;
        };
        if !open || slot.ready {
            self.complaints.report(
                Complaint::QueueSetupWindow,
                format_args!(
                    "{register:?} write for queue {sel} (ready: {}) with status {current:#x} ignored: a queue is configured while not ready, between FEATURES_OK and DRIVER_OK",
                    slot.ready
                ),
            );
            return;
        }
        match register {
            Register::QueueNum => {
                let max = u32::from(slot.max_size());
                if value == 0 || value > max || !value.is_power_of_two() {
                    self.complaints.report(
                        Complaint::QueueNum,
                        format_args!(
                            "QueueNum {value} for queue {sel} is not a power of two between 1 and {max}: DRIVER_OK will fail"
                        ),
                    );
                }
                slot.size = value;
            }
            Register::QueueDescLow => set_low(&mut slot.desc, value),
            Register::QueueDescHigh => set_high(&mut slot.desc, value),
            Register::QueueDriverLow => set_low(&mut slot.driver, value),
            Register::QueueDriverHigh => set_high(&mut slot.driver, value),
            Register::QueueDeviceLow => set_low(&mut slot.device, value),
            Register::QueueDeviceHigh => set_high(&mut slot.device, value),
            _ => {}
        }
    }

    fn write_queue_notify(&mut self, value: u32) {
        match usize::try_from(value)
            .ok()
            .filter(|&index| index < self.queues.len())
        {
            Some(index) => self.queue_notified(index),
            None => self.complaints.report(
                Complaint::Notify,
                format_args!("QueueNotify for queue {value}, which does not exist, ignored"),
            ),
        }
    }

    /// The driver notified queue `index` (through QueueNotify or its ioeventfd).
    fn queue_notified(&mut self, index: usize) {
        if self.status & (status::DEVICE_NEEDS_RESET | status::FAILED) != 0 {
            // Broken or given up: the driver will reset the device.
            return;
        }
        if !self.activated {
            self.complaints.report(
                Complaint::Notify,
                format_args!("notification of queue {index} before DRIVER_OK ignored"),
            );
            return;
        }
        if !self.queues.get(index).is_some_and(QueueSlot::is_live) {
            self.complaints.report(
                Complaint::Notify,
                format_args!("notification of queue {index}, which is not ready, ignored"),
            );
            return;
        }
        self.run_backend(Work::Queue(index));
    }

    /// Driver-initiated status changes (virtio 1.2 §2.1, §3.1.1): 0 resets; otherwise the
    /// driver adds bits in order ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK, or FAILED at any
    /// time, and never clears one.
    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        // DEVICE_NEEDS_RESET is the device's: the driver neither sets nor clears it.
        let requested = value & !status::DEVICE_NEEDS_RESET;
        let held = old & !status::DEVICE_NEEDS_RESET;
        let added = requested & !held;
        let refusal = if requested & !DRIVER_STATUS_BITS != 0 {
            Some("reserved bits")
        } else if held & !requested != 0 {
            Some("only a reset (0) clears status bits")
        } else if added == 0 {
            return;
        } else if added & status::FAILED != 0 {
            self.status |= status::FAILED;
            return;
        } else if old & (status::FAILED | status::DEVICE_NEEDS_RESET) != 0 {
            Some("the device must be reset first")
        } else if added & status::DRIVER != 0 && requested & status::ACKNOWLEDGE == 0 {
            Some("DRIVER before ACKNOWLEDGE")
        } else if added & status::FEATURES_OK != 0 && requested & status::DRIVER == 0 {
            Some("FEATURES_OK before DRIVER")
        } else if added & status::DRIVER_OK != 0 && requested & status::FEATURES_OK == 0 {
            Some("DRIVER_OK before FEATURES_OK")
        } else {
            None
        };
        if let Some(why) = refusal {
            self.complaints.report(
                Complaint::StatusTransition,
                format_args!("status {old:#x} -> {value:#x} refused: {why}"),
            );
            return;
        }
        self.status |= added & (status::ACKNOWLEDGE | status::DRIVER);
        if added & status::FEATURES_OK != 0 {
            let accepted = self.driver_features;
            if accepted & VIRTIO_F_VERSION_1 == 0 {
                // The driver reads FEATURES_OK back and finds it clear (§3.1.1 step 6).
                self.complaints.report(
                    Complaint::FeaturesRefused,
                    format_args!(
                        "FEATURES_OK refused: the driver's features {accepted:#x} lack VIRTIO_F_VERSION_1, and this is a modern-only device"
                    ),
                );
                return;
            }
            self.status |= status::FEATURES_OK;
        }
        if added & status::DRIVER_OK != 0 {
            self.status |= status::DRIVER_OK;
            self.activate();
        }
    }

    /// DRIVER_OK: makes the ready queues live and activates the backend.
    fn activate(&mut self) {
        let event_idx = self.driver_features & VIRTIO_F_RING_EVENT_IDX != 0;
        let checked = {
            let memory = self.memory.memory();
            self.queues
                .iter_mut()
                .enumerate()
                .filter(|(_, slot)| slot.ready)
                .try_for_each(|(index, slot)| {
                    slot.activate(&memory, event_idx)
                        .map_err(|why| format!("queue {index}: {why}"))
                })
        };
        if let Err(why) = checked {
            self.fail(Complaint::QueueInvalid, format_args!("DRIVER_OK: {why}"));
            return;
        }
        self.backend_dirty = true;
        self.backend.ack_features(self.driver_features);
        if let Err(e) = self.backend.activate(self.memory.clone()) {
            self.fail(
                Complaint::Activation,
                format_args!("activation failed: {e}"),
            );
            return;
        }
        self.activated = true;
        self.wake_event_loop();
    }

    /// Status 0: back to the state the device was created in.
    fn reset(&mut self) {
        if self.backend_dirty {
            self.backend.reset();
            self.backend_dirty = false;
        }
        self.activated = false;
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.interrupt_status = 0;
        for slot in &mut self.queues {
            slot.reset();
        }
        // A notification from before the reset is not for the next driver.
        for event in &self.queue_events {
            drain(event);
        }
        if self.backend_fd_registered {
            self.wake_event_loop();
        }
    }

    /// Activated, and neither broken nor given up on by the driver.
    fn is_running(&self) -> bool {
        self.activated && self.status & (status::DEVICE_NEEDS_RESET | status::FAILED) == 0
    }

    fn run_backend(&mut self, work: Work) {
        let mut queues = TransportQueues {
            slots: &mut self.queues,
            memory: &self.memory,
            interrupt: &self.interrupt,
            interrupt_status: &mut self.interrupt_status,
        };
        let result = match work {
            Work::Queue(index) => self.backend.handle_queue(index, &mut queues),
            Work::BackendEvent => self.backend.handle_backend_event(&mut queues),
        };
        if let Err(e) = result {
            match work {
                Work::Queue(index) => {
                    self.fail(Complaint::Device, format_args!("queue {index}: {e}"));
                }
                Work::BackendEvent => {
                    self.fail(Complaint::Device, format_args!("backend event: {e}"));
                }
            }
        }
    }

    /// The device cannot go on: DEVICE_NEEDS_RESET, and the driver is told.
    fn fail(&mut self, kind: Complaint, message: fmt::Arguments<'_>) {
        self.complaints
            .report(kind, format_args!("{message}; the device needs a reset"));
        self.status |= status::DEVICE_NEEDS_RESET;
        // virtio 1.2 §2.1.2: after DRIVER_OK, DEVICE_NEEDS_RESET comes with a configuration
        // change notification.
        if self.status & status::DRIVER_OK != 0 {
            self.raise(interrupt::CONFIG_CHANGE);
        }
        self.wake_event_loop();
    }

    /// Sets `bit` in InterruptStatus and interrupts the guest.
    fn raise(&mut self, bit: u32) {
        self.interrupt_status |= bit;
        if let Err(e) = self.interrupt.write(1) {
            self.complaints.report(
                Complaint::Interrupt,
                format_args!("cannot interrupt the guest: {e}"),
            );
        }
    }

    /// Makes the event loop re-check whether it should watch the backend's fd.
    fn wake_event_loop(&mut self) {
        if self.backend.backend_fd().is_none() {
            return;
        }
        if let Err(e) = self.registration_event.write(1) {
            self.complaints.report(
                Complaint::EventLoop,
                format_args!("cannot wake the event loop: {e}"),
            );
        }
    }
}

/// Whether `offset` is in the device configuration part of the window.
fn is_config(offset: u64) -> bool {
    (registers::CONFIG_OFFSET..registers::WINDOW_SIZE).contains(&offset)
}

/// Feature bits `32 * page ..= 32 * page + 31` of `features`.
fn feature_page(features: u64, page: u32) -> u32 {
    let half = match page {
        0 => features & u64::from(u32::MAX),
        1 => features >> 32,
        _ => 0,
    };
    u32::try_from(half).unwrap_or(0)
}

fn set_low(address: &mut u64, low: u32) {
    *address = (*address & !u64::from(u32::MAX)) | u64::from(low);
}

fn set_high(address: &mut u64, high: u32) {
    *address = (*address & u64::from(u32::MAX)) | (u64::from(high) << 32);
}

/// Empties a non-blocking eventfd; an empty one is fine.
fn drain(event: &EventFd) {
    // EAGAIN when nothing is pending; there is nothing else a read of an eventfd can fail on.
    let _ = event.read();
}
