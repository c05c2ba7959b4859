//! The KVM VM: its memory slots, the in-kernel irqchip (PIC, IOAPIC, LAPICs) and PIT,
//! interrupt eventfds (irqfd) and notification eventfds (ioeventfd).

use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{IoEventAddress, VmFd};
use vm_memory::{GuestMemory, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use super::kvm::KvmContext;
use super::vcpu::Vcpu;
use super::{ioctl, VstateError};
use crate::engine::kvm::arch::x86_64::layout::KVM_TSS_ADDRESS;

/// A KVM VM.
#[derive(Debug)]
pub struct Vm {
    fd: VmFd,
}

impl Vm {
    /// Creates the VM and its TSS area.
    pub fn create(kvm: &KvmContext) -> Result<Self, VstateError> {
        let fd = kvm.kvm().create_vm().map_err(ioctl("KVM_CREATE_VM"))?;
        let tss = usize::try_from(KVM_TSS_ADDRESS).unwrap_or(usize::MAX);
        fd.set_tss_address(tss)
            .map_err(ioctl(format!("KVM_SET_TSS_ADDR {KVM_TSS_ADDRESS:#x}")))?;
        Ok(Self { fd })
    }

    /// Creates the in-kernel irqchip (PIC, IOAPIC, and a LAPIC per vCPU to come), then
    /// the PIT: KVM wants the irqchip first, and both before any vCPU.
    pub fn create_irqchip_and_pit(&self) -> Result<(), VstateError> {
        let fd = &self.fd;
        fd.create_irq_chip().map_err(ioctl("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            // Port 0x61's speaker bits are emulated as a dummy: Linux pokes them to calibrate.
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit).map_err(ioctl("KVM_CREATE_PIT2"))
    }

    /// Hands every region of `memory` to KVM as a memory slot.
    pub fn register_memory(&self, memory: &GuestMemoryMmap) -> Result<(), VstateError> {
        for (slot, region) in memory.iter().enumerate() {
            let slot = u32::try_from(slot).unwrap_or(u32::MAX);
            let host = region.as_ptr() as u64;
            let slot_region = kvm_userspace_memory_region {
                slot,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host,
            };
            // SAFETY: the host range [userspace_addr, +memory_size) is a live mapping owned
            // by `memory`, which outlives the VM's use of it: the VM and every vCPU are
            // torn down (threads joined, fds closed) before the engine drops the memory.
            unsafe { self.fd.set_user_memory_region(slot_region) }.map_err(ioctl(format!(
                "KVM_SET_USER_MEMORY_REGION slot {slot} at {:#x}+{:#x}",
                region.start_addr().0,
                region.len()
            )))?;
        }
        Ok(())
    }

    /// Makes a write to `fd` raise interrupt `gsi` (KVM_IRQFD).
    pub fn register_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<(), VstateError> {
        self.fd
            .register_irqfd(fd, gsi)
            .map_err(ioctl(format!("KVM_IRQFD for GSI {gsi}")))
    }

    /// Makes a 32-bit guest write of `datamatch` to MMIO `addr` signal `fd` in the kernel,
    /// without an exit to us (KVM_IOEVENTFD).
    pub fn register_mmio_ioevent(
        &self,
        fd: &EventFd,
        addr: u64,
        datamatch: u32,
    ) -> Result<(), VstateError> {
        self.fd
            .register_ioevent(fd, &IoEventAddress::Mmio(addr), datamatch)
            .map_err(ioctl(format!(
                "KVM_IOEVENTFD at {addr:#x} for value {datamatch}"
            )))
    }

    /// Creates vCPU `index` (its APIC ID is the same number).
    pub fn create_vcpu(&self, index: u8) -> Result<Vcpu, VstateError> {
        let fd = self
            .fd
            .create_vcpu(u64::from(index))
            .map_err(ioctl(format!("KVM_CREATE_VCPU {index}")))?;
        Ok(Vcpu::new(fd, index))
    }
}
