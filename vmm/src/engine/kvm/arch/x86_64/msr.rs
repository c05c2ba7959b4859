//! The model-specific registers every vCPU starts with (Firecracker's boot set): the
//! SYSCALL/SYSENTER MSRs cleared, the TSC at zero, fast strings on, and write-back as the
//! default memory type with MTRRs enabled.
//!
//! `IA32_ARCH_CAPABILITIES` (0x10a) is never set: some KVM hosts (PVM) fail the whole
//! `KVM_SET_MSRS` call for it, and CPUID does not advertise it (see `cpuid.rs`).

use kvm_bindings::{kvm_msr_entry, Msrs};

/// `IA32_ARCH_CAPABILITIES`: the MSR we must never set.
pub const MSR_IA32_ARCH_CAPABILITIES: u32 = 0x10a;

const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// `IA32_MISC_ENABLE.FAST_STRING`.
const MISC_ENABLE_FAST_STRING: u64 = 1;
/// `MTRRdefType`: MTRRs enabled (bit 11), default type write-back (6).
const MTRR_ENABLE_WRITE_BACK: u64 = (1 << 11) | 6;

/// The boot MSRs, as (index, value).
pub fn boot_msrs() -> Vec<(u32, u64)> {
    vec![
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WRITE_BACK),
    ]
}

/// [`boot_msrs`] as the FAM structure `KVM_SET_MSRS` takes.
pub fn boot_msr_entries() -> Msrs {
    let entries: Vec<kvm_msr_entry> = boot_msrs()
        .into_iter()
        .map(|(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    // A fixed handful, far below KVM_MAX_MSR_ENTRIES.
    Msrs::from_entries(&entries).unwrap_or_else(|_| unreachable!("{} MSRs", entries.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_capabilities_is_never_set() {
        assert!(boot_msrs()
            .iter()
            .all(|(index, _)| *index != MSR_IA32_ARCH_CAPABILITIES));
        assert!(boot_msr_entries()
            .as_slice()
            .iter()
            .all(|e| e.index != MSR_IA32_ARCH_CAPABILITIES));
    }

    #[test]
    fn the_boot_set_is_firecrackers() {
        let msrs = boot_msrs();
        let value = |index| msrs.iter().find(|(i, _)| *i == index).map(|(_, v)| *v);
        assert_eq!(value(MSR_MTRR_DEF_TYPE), Some(0x806));
        assert_eq!(value(MSR_IA32_MISC_ENABLE), Some(1));
        assert_eq!(value(MSR_IA32_TSC), Some(0));
        assert_eq!(value(MSR_LSTAR), Some(0));
        let mut indices: Vec<u32> = msrs.iter().map(|(i, _)| *i).collect();
        indices.sort_unstable();
        indices.dedup();
        assert_eq!(indices.len(), msrs.len(), "no MSR twice");
        assert_eq!(boot_msr_entries().as_slice().len(), msrs.len());
    }
}
