//! Builds a VM from a [`VmSpec`]: the only place that knows the order things are put
//! together in (after Firecracker's `builder.rs`).
//!
//! 1. check that the kernel and initramfs fit the guest memory (before loading anything);
//! 2. open KVM, create the VM, map and register guest memory, then create the irqchip and
//!    PIT — in that order: measured on our (PVM) hosts, the first memory slot takes
//!    ~60 µs on a fresh VM but ~5 ms once the irqchip and PIT exist (it then waits for an
//!    SRCU grace period they started), which was most of the time to the first marker;
//! 3. load the kernel through its PVH entry, then the initramfs at the top of low RAM;
//! 4. place the devices on the buses (COM1 with its irqfd, the boot-marker port, the
//!    reserved exit port, each virtio device behind its virtio-mmio transport) and write
//!    the command line listing the virtio-mmio devices;
//! 5. write the PVH start info and memory map, the MP table and the boot GDT/IDT;
//! 6. create and configure the vCPUs (CPUID, MSRs, LAPIC, FPU; the PVH entry on vCPU 0);
//! 7. start the event loop, then the vCPU threads.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::{load_cmdline, KernelLoader};
use vm_memory::{Bytes, GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::arch::x86_64::cpuid::{vcpu_cpuid, CpuidError, VcpuTopology};
use super::arch::x86_64::layout::{
    self, PlacementError, CMDLINE_MAX_SIZE, CMDLINE_START, HIMEM_START, VIRTIO_MMIO_WINDOW,
};
use super::arch::x86_64::mptable::{write_mptable, MptableError};
use super::arch::x86_64::pvh::{write_boot_params, PvhError};
use super::arch::x86_64::regs::{write_boot_tables, BootTableError};
use super::event_loop::{EventLoop, EventLoopError};
use super::exit::IoBuses;
use super::running::RunningVm;
use super::vcpus::{VcpuThreadError, VcpuThreads};
use super::virtio::{attach_devices, VirtioError, VirtioSlot};
use super::vstate::kvm::KvmContext;
use super::vstate::memory::create_guest_memory;
use super::vstate::vm::Vm;
use super::vstate::VstateError;
use crate::boot::PvhKernel;
use crate::devices::bus::BusError;
use crate::devices::legacy::serial::{self, SerialDevice};
use crate::devices::pseudo::boot_marker::{self, BootMarkerDevice};
use crate::devices::pseudo::exit_port;
use crate::engine::mailbox::Message;
use crate::engine::{VirtioDevice, VmSpec};

/// Why a VM could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Kernel and initramfs do not fit the guest memory.
    #[error(transparent)]
    TooSmall(#[from] PlacementError),
    /// A KVM operation failed.
    #[error(transparent)]
    Kvm(#[from] VstateError),
    /// A boot file could not be read.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// linux-loader refused the kernel.
    #[error("loading kernel {}: {source}", path.display())]
    KernelLoad {
        /// The kernel.
        path: PathBuf,
        /// Why.
        source: linux_loader::loader::Error,
    },
    /// linux-loader found no PVH entry (our own check did).
    #[error("kernel {}: linux-loader found no PVH entry point ({cap})", path.display())]
    NoPvhEntry {
        /// The kernel.
        path: PathBuf,
        /// What linux-loader reported.
        cap: PvhBootCapability,
    },
    /// The initramfs could not be copied into guest memory.
    #[error("loading initramfs {} at {addr:#x}: {source}", path.display())]
    InitramfsLoad {
        /// The initramfs.
        path: PathBuf,
        /// Where it was going.
        addr: u64,
        /// Why.
        source: vm_memory::GuestMemoryError,
    },
    /// The command line is invalid or too long.
    #[error("kernel command line {cmdline:?}: {reason}")]
    Cmdline {
        /// The command line.
        cmdline: String,
        /// Why.
        reason: String,
    },
    /// CPUID could not be set up.
    #[error(transparent)]
    Cpuid(#[from] CpuidError),
    /// The MP table could not be written.
    #[error(transparent)]
    Mptable(#[from] MptableError),
    /// The PVH boot information could not be written.
    #[error(transparent)]
    Pvh(#[from] PvhError),
    /// The boot GDT/IDT could not be written.
    #[error(transparent)]
    BootTables(#[from] BootTableError),
    /// Devices could not be placed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A virtio device could not be attached.
    #[error(transparent)]
    Virtio(#[from] VirtioError),
    /// An eventfd could not be created.
    #[error("creating the eventfd of {what}: {source}")]
    Eventfd {
        /// Its user.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The event loop could not be started.
    #[error(transparent)]
    EventLoop(#[from] EventLoopError),
    /// The vCPU threads could not be started.
    #[error(transparent)]
    VcpuThreads(#[from] VcpuThreadError),
}

/// Builds the VM described by `spec`, whose kernel passed [`PvhKernel::check`], with
/// `devices` on the KVM device at `kvm_path`, and starts it. Console lines, markers and the
/// guest's end are sent to `report`.
pub fn build_and_start(
    kvm_path: &Path,
    spec: &VmSpec,
    kernel: &PvhKernel,
    devices: Vec<VirtioDevice>,
    report: &Sender<Message>,
) -> Result<RunningVm, BuildError> {
    let mem_bytes = u64::from(spec.mem_mib) << 20;
    let initramfs = match &spec.initramfs {
        Some(path) => Some((path.as_path(), file_size(path)?)),
        None => None,
    };
    let placement =
        layout::place_boot_files(mem_bytes, kernel.load_end, initramfs.map(|(_, size)| size))?;

    let kvm = KvmContext::open(kvm_path)?;
    kvm.check_vcpus(spec.vcpus)?;
    let supported_cpuid = kvm.supported_cpuid()?;
    let vm = Vm::create(&kvm)?;
    let memory = create_guest_memory(mem_bytes)?;
    vm.register_memory(&memory)?;
    vm.create_irqchip_and_pit()?;

    let entry = load_kernel(&memory, &kernel.path)?;
    let initramfs = match (initramfs, placement.initramfs) {
        (Some((path, size)), Some(addr)) => {
            load_initramfs(&memory, path, addr, size)?;
            Some((addr, size))
        }
        _ => None,
    };

    // From here on the memory is shared with the device transports.
    let shared = GuestMemoryAtomic::new(memory);
    let memory = shared.memory();

    let (mut io, serial) = legacy_devices(&vm, report)?;
    let mut events = EventLoop::new()?;
    let virtio_slots = attach_devices(&vm, &shared, devices, &mut io, &mut events)?;
    let cmdline = kernel_cmdline(&spec.cmdline(), &virtio_slots)?;
    load_cmdline(&*memory, GuestAddress(CMDLINE_START), &cmdline).map_err(|e| {
        BuildError::Cmdline {
            cmdline: spec.cmdline(),
            reason: e.to_string(),
        }
    })?;
    write_boot_params(&*memory, mem_bytes, initramfs)?;
    write_mptable(&*memory, spec.vcpus)?;
    write_boot_tables(&*memory)?;
    drop(memory);

    let mut vcpus = Vec::with_capacity(usize::from(spec.vcpus));
    for index in 0..spec.vcpus {
        let vcpu = vm.create_vcpu(index)?;
        let topology = VcpuTopology {
            index,
            count: spec.vcpus,
        };
        vcpu.configure(&vcpu_cpuid(&supported_cpuid, topology)?)?;
        if index == 0 {
            vcpu.configure_pvh_entry(entry)?;
        }
        vcpus.push(vcpu);
    }

    let events = events.start(report.clone())?;
    let vcpus = VcpuThreads::start(vcpus, Arc::new(io), report)?;
    Ok(RunningVm {
        vcpus,
        events,
        serial,
        _vm: vm,
        _memory: shared,
    })
}

fn file_size(path: &Path) -> Result<u64, BuildError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| BuildError::Io {
            what: "reading the size of initramfs",
            path: path.to_owned(),
            source,
        })
}

/// Loads the ELF kernel at its physical addresses and returns its PVH entry point.
fn load_kernel(memory: &GuestMemoryMmap, path: &Path) -> Result<u64, BuildError> {
    let mut file = File::open(path).map_err(|source| BuildError::Io {
        what: "opening kernel",
        path: path.to_owned(),
        source,
    })?;
    let loaded =
        Elf::load(memory, None, &mut file, Some(GuestAddress(HIMEM_START))).map_err(|source| {
            BuildError::KernelLoad {
                path: path.to_owned(),
                source,
            }
        })?;
    match loaded.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(entry) => Ok(entry.0),
        cap => Err(BuildError::NoPvhEntry {
            path: path.to_owned(),
            cap,
        }),
    }
}

fn load_initramfs(
    memory: &GuestMemoryMmap,
    path: &Path,
    addr: GuestAddress,
    size: u64,
) -> Result<(), BuildError> {
    let mut file = File::open(path).map_err(|source| BuildError::Io {
        what: "opening initramfs",
        path: path.to_owned(),
        source,
    })?;
    let count = usize::try_from(size).unwrap_or(usize::MAX);
    memory
        .read_exact_volatile_from(addr, &mut file, count)
        .map_err(|source| BuildError::InitramfsLoad {
            path: path.to_owned(),
            addr: addr.0,
            source,
        })
}

/// COM1 (its output becomes console lines, its interrupt an irqfd on IRQ 4), the
/// boot-marker port, and the exit port reserved for the vCPUs.
fn legacy_devices(
    vm: &Vm,
    report: &Sender<Message>,
) -> Result<(IoBuses, Arc<SerialDevice>), BuildError> {
    let mut io = IoBuses::default();
    let interrupt = EventFd::new(libc::EFD_NONBLOCK).map_err(|source| BuildError::Eventfd {
        what: "COM1",
        source,
    })?;
    vm.register_irqfd(&interrupt, serial::COM1_IRQ)?;
    let lines = report.clone();
    let serial = Arc::new(SerialDevice::new(
        interrupt,
        Box::new(move |line| {
            let _ = lines.send(Message::Console(line));
        }),
    ));
    io.pio.insert(
        "COM1",
        serial.clone(),
        u64::from(serial::COM1_PORT),
        u64::from(serial::PORT_COUNT),
    )?;
    let markers = report.clone();
    let marker_device = BootMarkerDevice::new(Box::new(move |byte, at| {
        let _ = markers.send(Message::Marker(byte, at));
    }));
    io.pio.insert(
        "boot markers",
        Arc::new(marker_device),
        u64::from(boot_marker::PORT),
        1,
    )?;
    io.pio.reserve(
        "exit port",
        u64::from(exit_port::PORT),
        u64::from(exit_port::PORT_COUNT),
    )?;
    Ok((io, serial))
}

/// The spec's command line with a `virtio_mmio.device=4K@<base>:<gsi>` per device.
fn kernel_cmdline(base: &str, virtio_slots: &[VirtioSlot]) -> Result<Cmdline, BuildError> {
    let error = |e: linux_loader::cmdline::Error| BuildError::Cmdline {
        cmdline: base.to_owned(),
        reason: e.to_string(),
    };
    if base.len() >= CMDLINE_MAX_SIZE {
        return Err(BuildError::Cmdline {
            cmdline: base.to_owned(),
            reason: format!(
                "{} bytes, more than the {} Linux takes",
                base.len(),
                CMDLINE_MAX_SIZE - 1
            ),
        });
    }
    let mut cmdline = Cmdline::try_from(base, CMDLINE_MAX_SIZE).map_err(error)?;
    for slot in virtio_slots {
        cmdline
            .add_virtio_mmio_device(VIRTIO_MMIO_WINDOW, GuestAddress(slot.base), slot.gsi, None)
            .map_err(error)?;
    }
    Ok(cmdline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kvm::arch::x86_64::layout::virtio_mmio_slot;

    fn slot(index: usize) -> VirtioSlot {
        let (base, gsi) = virtio_mmio_slot(index).unwrap();
        VirtioSlot { base, gsi }
    }

    #[test]
    fn each_virtio_device_is_listed_on_the_command_line() {
        let slots: Vec<_> = (0..2).map(slot).collect();
        let cmdline = kernel_cmdline("console=ttyS0 quiet", &slots).unwrap();
        assert_eq!(
            cmdline.as_cstring().unwrap().to_str().unwrap(),
            "console=ttyS0 quiet virtio_mmio.device=4K@0xd0000000:5 \
             virtio_mmio.device=4K@0xd0001000:6"
        );
        let none = kernel_cmdline("console=ttyS0", &[]).unwrap();
        assert_eq!(
            none.as_cstring().unwrap().to_str().unwrap(),
            "console=ttyS0"
        );
    }

    #[test]
    fn a_command_line_too_long_for_linux_is_refused() {
        let long = "x".repeat(CMDLINE_MAX_SIZE);
        let err = kernel_cmdline(&long, &[]).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("2048 bytes, more than the 2047 Linux takes"),
            "{err}"
        );
        let full = "x".repeat(CMDLINE_MAX_SIZE - 1);
        assert!(kernel_cmdline(&full, &[]).is_ok());
        let err = kernel_cmdline(&full, &[slot(0)]).unwrap_err();
        assert!(err.to_string().contains("too long"), "{err}");
    }
}
