//! The CPUID each vCPU sees: KVM's supported set (`KVM_GET_SUPPORTED_CPUID`), made
//! consistent with the VM's topology and with what we emulate, then set per vCPU with
//! `KVM_SET_CPUID2`. Without that call KVM refuses long mode (EFER.LME faults), which every
//! guest enables at its PVH entry.
//!
//! What is changed, and why:
//! - leaf 0x1: initial APIC ID = vCPU index, logical processor count, CLFLUSH size, HTT for
//!   SMP, and the hypervisor bit (the guest is told it is a VM);
//! - leaves 0x4, 0xb, 0x1f: one thread per core, all vCPUs cores of one package, and the
//!   x2APIC ID of each vCPU;
//! - leaf 0x6: no energy-performance-bias MSR (not virtualized);
//! - leaf 0x7: no `IA32_ARCH_CAPABILITIES`, since we never set MSR 0x10a (some hosts, such as
//!   PVM, refuse it; QEMU's `-cpu host,-arch-capabilities` makes the same choice);
//! - leaf 0xa: no performance monitoring (no vPMU is exposed).

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

/// Feature bits by leaf and register.
mod bits {
    /// CPUID.1:ECX.HYPERVISOR.
    pub const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
    /// CPUID.1:EDX.HTT: more than one logical processor per package.
    pub const LEAF1_EDX_HTT: u32 = 1 << 28;
    /// CPUID.6:ECX.EPB (energy performance bias).
    pub const LEAF6_ECX_EPB: u32 = 1 << 3;
    /// CPUID.(7,0):EDX.ARCH_CAPABILITIES.
    pub const LEAF7_EDX_ARCH_CAPABILITIES: u32 = 1 << 29;
}

/// CLFLUSH line size in 8-byte units (64 bytes), CPUID.1:EBX[15:8].
const CLFLUSH_SIZE: u32 = 8;

/// Topology level types of leaves 0xb/0x1f.
const LEVEL_TYPE_SMT: u32 = 1;
const LEVEL_TYPE_CORE: u32 = 2;

/// Where a vCPU sits in the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuTopology {
    /// The vCPU's index, which is also its APIC ID.
    pub index: u8,
    /// How many vCPUs the VM has.
    pub count: u8,
}

/// The entries for vCPU `topology` derived from KVM's supported `entries`.
pub fn vcpu_entries(entries: &[kvm_cpuid_entry2], topology: VcpuTopology) -> Vec<kvm_cpuid_entry2> {
    let mut entries = entries.to_vec();
    let index = u32::from(topology.index);
    let count = u32::from(topology.count.max(1));
    // Bits needed to number `count` cores: the x2APIC ID shift of the core level.
    let core_shift = u32::BITS - (count - 1).leading_zeros();
    for entry in &mut entries {
        match entry.function {
            0x1 => {
                entry.ebx =
                    (entry.ebx & 0xff) | (CLFLUSH_SIZE << 8) | (count << 16) | (index << 24);
                entry.ecx |= bits::LEAF1_ECX_HYPERVISOR;
                if count > 1 {
                    entry.edx |= bits::LEAF1_EDX_HTT;
                } else {
                    entry.edx &= !bits::LEAF1_EDX_HTT;
                }
            }
            0x4 => {
                let level = (entry.eax >> 5) & 0x7;
                // EAX[25:14]: logical processors sharing this cache - 1 (L1/L2 per core,
                // L3 per package); EAX[31:26]: cores per package - 1.
                let sharing = if level >= 3 { count - 1 } else { 0 };
                entry.eax = (entry.eax & 0x3fff) | ((sharing & 0xfff) << 14) | ((count - 1) << 26);
            }
            0x6 => entry.ecx &= !bits::LEAF6_ECX_EPB,
            0x7 if entry.index == 0 => entry.edx &= !bits::LEAF7_EDX_ARCH_CAPABILITIES,
            0xa => {
                entry.eax = 0;
                entry.ebx = 0;
                entry.ecx = 0;
                entry.edx = 0;
            }
            0xb | 0x1f => {
                let (eax, ebx, ecx) = match entry.index {
                    0 => (0, 1, (LEVEL_TYPE_SMT << 8)),
                    1 => (core_shift, count, (LEVEL_TYPE_CORE << 8) | 1),
                    n => (0, 0, n & 0xff),
                };
                entry.eax = eax;
                entry.ebx = ebx;
                entry.ecx = ecx;
                entry.edx = index;
            }
            _ => {}
        }
    }
    entries
}

/// [`vcpu_entries`] as the FAM structure `KVM_SET_CPUID2` takes.
pub fn vcpu_cpuid(supported: &CpuId, topology: VcpuTopology) -> Result<CpuId, CpuidError> {
    CpuId::from_entries(&vcpu_entries(supported.as_slice(), topology))
        .map_err(|_| CpuidError::TooManyEntries(supported.as_slice().len()))
}

/// Why a CPUID set could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpuidError {
    /// More entries than KVM accepts.
    #[error("{0} CPUID entries are more than KVM accepts")]
    TooManyEntries(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32, regs: [u32; 4]) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            flags: 0,
            eax: regs[0],
            ebx: regs[1],
            ecx: regs[2],
            edx: regs[3],
            padding: [0; 3],
        }
    }

    fn find(entries: &[kvm_cpuid_entry2], function: u32, index: u32) -> kvm_cpuid_entry2 {
        *entries
            .iter()
            .find(|e| e.function == function && e.index == index)
            .unwrap()
    }

    /// A plausible Intel host: leaves 0, 1, 4 (L1d, L3), 6, 7, 0xa, 0xb (3 subleaves),
    /// 0x4000_0000 (KVM).
    fn host() -> Vec<kvm_cpuid_entry2> {
        vec![
            entry(0x0, 0, [0x1f, 0x756e_6547, 0x6c65_746e, 0x4965_6e69]),
            entry(0x1, 0, [0x906ea, 0xff_10_08_07, 0x7ffa_fbff, 0xbfeb_fbff]),
            entry(0x4, 0, [0xfc00_4121, 0x01c0_003f, 0x3f, 0]),
            entry(0x4, 3, [0xfc0f_c163, 0x02c0_003f, 0x1fff, 0x6]),
            entry(0x6, 0, [0x4, 0, 0x9, 0]),
            entry(0x7, 0, [0, 0x029c_6fbf, 0, 0x9c00_0400 | (1 << 29)]),
            entry(0xa, 0, [0x0730_0404, 0, 0, 0x603]),
            entry(0xb, 0, [1, 2, 0x100, 0xaa]),
            entry(0xb, 1, [4, 12, 0x201, 0xaa]),
            entry(0xb, 2, [0, 0, 0x2, 0xaa]),
            entry(
                0x4000_0000,
                0,
                [0x4000_0001, 0x4b4d_564b, 0x564b_4d56, 0x4d],
            ),
        ]
    }

    #[test]
    fn each_vcpu_gets_its_apic_id_and_the_vm_size() {
        for (index, count) in [(0, 1), (1, 2), (5, 8), (31, 32)] {
            let entries = vcpu_entries(&host(), VcpuTopology { index, count });
            let leaf1 = find(&entries, 0x1, 0);
            assert_eq!(leaf1.ebx >> 24, u32::from(index));
            assert_eq!((leaf1.ebx >> 16) & 0xff, u32::from(count));
            assert_eq!((leaf1.ebx >> 8) & 0xff, 8, "64-byte CLFLUSH");
            assert_eq!(leaf1.ebx & 0xff, 0x07, "brand index kept");
            assert_eq!(leaf1.edx & bits::LEAF1_EDX_HTT != 0, count > 1);
            for sub in 0..3 {
                assert_eq!(find(&entries, 0xb, sub).edx, u32::from(index), "x2APIC ID");
            }
        }
    }

    #[test]
    fn the_topology_is_one_package_of_single_thread_cores() {
        let entries = vcpu_entries(&host(), VcpuTopology { index: 2, count: 6 });
        let smt = find(&entries, 0xb, 0);
        assert_eq!((smt.eax, smt.ebx, smt.ecx), (0, 1, 0x100));
        let core = find(&entries, 0xb, 1);
        assert_eq!(
            (core.eax, core.ebx, core.ecx),
            (3, 6, 0x201),
            "6 cores need 3 bits"
        );
        let end = find(&entries, 0xb, 2);
        assert_eq!((end.eax, end.ebx, end.ecx & 0xff00), (0, 0, 0));
        let l1 = find(&entries, 0x4, 0);
        assert_eq!((l1.eax >> 26, (l1.eax >> 14) & 0xfff), (5, 0));
        assert_eq!(l1.eax & 0x3fff, 0x121, "cache type and level kept");
        let l3 = find(&entries, 0x4, 3);
        assert_eq!((l3.eax >> 26, (l3.eax >> 14) & 0xfff), (5, 5));
        let one = vcpu_entries(&host(), VcpuTopology { index: 0, count: 1 });
        assert_eq!(find(&one, 0xb, 1).eax, 0);
    }

    #[test]
    fn the_guest_knows_it_is_virtual_and_sees_no_unemulated_features() {
        let entries = vcpu_entries(&host(), VcpuTopology { index: 0, count: 1 });
        assert_ne!(find(&entries, 0x1, 0).ecx & bits::LEAF1_ECX_HYPERVISOR, 0);
        assert_eq!(
            find(&entries, 0x7, 0).edx & bits::LEAF7_EDX_ARCH_CAPABILITIES,
            0
        );
        assert_eq!(find(&entries, 0x7, 0).edx, 0x9c00_0400, "other bits kept");
        assert_eq!(find(&entries, 0x6, 0).ecx, 0x1);
        let pmu = find(&entries, 0xa, 0);
        assert_eq!((pmu.eax, pmu.ebx, pmu.ecx, pmu.edx), (0, 0, 0, 0));
        // Leaves we do not touch pass through.
        assert_eq!(
            find(&entries, 0x4000_0000, 0),
            find(&host(), 0x4000_0000, 0)
        );
        assert_eq!(find(&entries, 0x0, 0), find(&host(), 0x0, 0));
        assert_eq!(entries.len(), host().len());
    }

    #[test]
    fn the_fam_structure_holds_every_entry() {
        let supported = CpuId::from_entries(&host()).unwrap();
        let cpuid = vcpu_cpuid(&supported, VcpuTopology { index: 1, count: 2 }).unwrap();
        assert_eq!(cpuid.as_slice().len(), host().len());
        assert_eq!(find(cpuid.as_slice(), 0x1, 0).ebx >> 24, 1);
    }
}
