//! The vCPU state at the PVH entry point (Xen's HVM direct boot ABI, as Linux's
//! `arch/x86/platform/pvh/head.S` expects it): 32-bit protected mode with paging off, flat
//! 4 GiB code and data segments, interrupts off, `%ebx` = the guest-physical address of
//! `struct hvm_start_info`. Only the boot vCPU gets it; the others wait for INIT/SIPI.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::gdt::{gdt_entry, kvm_segment_from_gdt};
use super::layout::{BOOT_GDT_START, BOOT_IDT_START, PVH_INFO_START};

/// CR0.PE: protected mode.
const X86_CR0_PE: u64 = 0x1;
/// RFLAGS bit 1 is reserved and always set.
const RFLAGS_RESERVED: u64 = 0x2;

/// The x87 control word and MXCSR a CPU has after reset (FNINIT / power-on values).
const FPU_CONTROL_WORD: u16 = 0x37f;
const MXCSR_DEFAULT: u32 = 0x1f80;

/// The boot GDT: null, flat 32-bit code (0x08), flat data (0x10), a TSS (0x18).
pub fn boot_gdt() -> [u64; 4] {
    [
        gdt_entry(0, 0, 0),
        gdt_entry(0xc09b, 0, 0xffff_ffff),
        gdt_entry(0xc093, 0, 0xffff_ffff),
        gdt_entry(0x008b, 0, 0x67),
    ]
}

/// Why the boot state could not be written to guest memory.
#[derive(Debug, thiserror::Error)]
#[error("writing the boot {what} at {addr:#x} into guest memory: {source}")]
pub struct BootTableError {
    what: &'static str,
    addr: u64,
    source: vm_memory::GuestMemoryError,
}

/// Writes the boot GDT and an empty IDT where [`pvh_sregs`] points the vCPU.
pub fn write_boot_tables<M: GuestMemory>(memory: &M) -> Result<(), BootTableError> {
    for (i, entry) in boot_gdt().iter().enumerate() {
        let addr = BOOT_GDT_START + 8 * u64::try_from(i).unwrap_or(0);
        memory
            .write_obj(*entry, GuestAddress(addr))
            .map_err(|source| BootTableError {
                what: "GDT",
                addr,
                source,
            })?;
    }
    memory
        .write_obj(0u64, GuestAddress(BOOT_IDT_START))
        .map_err(|source| BootTableError {
            what: "IDT",
            addr: BOOT_IDT_START,
            source,
        })
}

/// General-purpose registers at the PVH entry point `entry`.
pub fn pvh_regs(entry: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rbx: PVH_INFO_START,
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    }
}

/// Special registers for the PVH entry, starting from the vCPU's current ones (which keep
/// what KVM set up, such as the APIC base).
pub fn pvh_sregs(mut sregs: kvm_sregs) -> kvm_sregs {
    let gdt = boot_gdt();
    let code = kvm_segment_from_gdt(gdt[1], 1);
    let data = kvm_segment_from_gdt(gdt[2], 2);
    let tss = kvm_segment_from_gdt(gdt[3], 3);
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = u16::try_from(std::mem::size_of_val(&gdt) - 1).unwrap_or(u16::MAX);
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = u16::try_from(std::mem::size_of::<u64>() - 1).unwrap_or(u16::MAX);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    sregs.cr0 = X86_CR0_PE;
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    sregs
}

/// The FPU as after reset.
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: FPU_CONTROL_WORD,
        mxcsr: MXCSR_DEFAULT,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::GuestMemoryMmap;

    use super::*;

    #[test]
    fn the_entry_gets_the_start_info_in_ebx_and_interrupts_off() {
        let regs = pvh_regs(0x10_0040);
        assert_eq!(regs.rip, 0x10_0040);
        assert_eq!(regs.rbx, PVH_INFO_START);
        assert_eq!(regs.rflags, 0x2, "IF clear");
    }

    #[test]
    fn protected_mode_without_paging_and_flat_segments() {
        let before = kvm_sregs {
            apic_base: 0xfee0_0900,
            cr0: 0x6000_0010,
            ..Default::default()
        };
        let sregs = pvh_sregs(before);
        assert_eq!(sregs.cr0, X86_CR0_PE);
        assert_eq!((sregs.cr4, sregs.efer), (0, 0));
        assert_eq!(sregs.apic_base, 0xfee0_0900, "kept");
        assert_eq!((sregs.cs.selector, sregs.cs.db, sregs.cs.l), (0x08, 1, 0));
        assert_eq!((sregs.cs.base, sregs.cs.limit), (0, 0xffff_ffff));
        for seg in [sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss] {
            assert_eq!(
                (seg.selector, seg.type_, seg.limit),
                (0x10, 0x3, 0xffff_ffff)
            );
        }
        assert_eq!(sregs.tr.selector, 0x18);
        assert_eq!((sregs.gdt.base, sregs.gdt.limit), (BOOT_GDT_START, 31));
        assert_eq!((sregs.idt.base, sregs.idt.limit), (BOOT_IDT_START, 7));
    }

    #[test]
    fn the_tables_are_written_where_the_registers_point() {
        let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        memory
            .write_obj(0xffu64, GuestAddress(BOOT_IDT_START))
            .unwrap();
        write_boot_tables(&memory).unwrap();
        let code: u64 = memory.read_obj(GuestAddress(BOOT_GDT_START + 8)).unwrap();
        assert_eq!(code, boot_gdt()[1]);
        let idt: u64 = memory.read_obj(GuestAddress(BOOT_IDT_START)).unwrap();
        assert_eq!(idt, 0);
        let tiny = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x400)]).unwrap();
        assert!(write_boot_tables(&tiny).is_err());
    }

    #[test]
    fn the_fpu_starts_with_its_reset_values() {
        let fpu = boot_fpu();
        assert_eq!((fpu.fcw, fpu.mxcsr), (0x37f, 0x1f80));
    }
}
