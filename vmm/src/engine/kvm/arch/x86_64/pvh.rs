//! The PVH boot information (Xen's `hvm_start_info`, version 1) that `%ebx` points to at the
//! entry: where the command line is, the memory map, and the initramfs as module 0. Written
//! with linux-loader's `PvhBootConfigurator`.

use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{GuestAddress, GuestMemory};

use super::layout::{
    ram_regions, CMDLINE_START, HIMEM_START, MEMMAP_MAX_ENTRIES, MEMMAP_START, MODLIST_START,
    MPTABLE_START, PVH_INFO_START,
};

/// `XEN_HVM_START_MAGIC_VALUE`.
pub const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
/// E820 type of usable RAM.
pub const E820_RAM: u32 = 1;

/// The memory map: base memory below the MP table, RAM from 1 MiB to the MMIO hole, and
/// RAM above 4 GiB if any. The first MiB above the MP table (legacy ROM and VGA areas in a
/// PC) is left out.
pub fn memmap(mem_bytes: u64) -> Vec<hvm_memmap_table_entry> {
    let ram = |addr: u64, size: u64| hvm_memmap_table_entry {
        addr,
        size,
        type_: E820_RAM,
        reserved: 0,
    };
    let mut entries = Vec::new();
    for (start, size) in ram_regions(mem_bytes) {
        let (start, end) = (start.0, start.0 + size);
        if start == 0 {
            entries.push(ram(0, MPTABLE_START.min(end)));
            if end > HIMEM_START {
                entries.push(ram(HIMEM_START, end - HIMEM_START));
            }
        } else {
            entries.push(ram(start, size));
        }
    }
    entries
}

/// The boot parameters for a VM of `mem_bytes` whose initramfs, if any, is `(address, size)`.
pub fn boot_params(mem_bytes: u64, initramfs: Option<(GuestAddress, u64)>) -> BootParams {
    let memmap = memmap(mem_bytes);
    debug_assert!(memmap.len() <= MEMMAP_MAX_ENTRIES);
    let start_info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: 1,
        cmdline_paddr: CMDLINE_START,
        memmap_paddr: MEMMAP_START,
        memmap_entries: u32::try_from(memmap.len()).unwrap_or(0),
        nr_modules: u32::from(initramfs.is_some()),
        modlist_paddr: if initramfs.is_some() {
            MODLIST_START
        } else {
            0
        },
        ..Default::default()
    };
    let mut params = BootParams::new(&start_info, GuestAddress(PVH_INFO_START));
    params.set_sections(&memmap, GuestAddress(MEMMAP_START));
    if let Some((addr, size)) = initramfs {
        let module = hvm_modlist_entry {
            paddr: addr.0,
            size,
            ..Default::default()
        };
        params.set_modules(&[module], GuestAddress(MODLIST_START));
    }
    params
}

/// Why the boot information could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing the PVH boot information: {0}")]
pub struct PvhError(linux_loader::configurator::Error);

/// Writes [`boot_params`] into guest memory.
pub fn write_boot_params<M: GuestMemory>(
    memory: &M,
    mem_bytes: u64,
    initramfs: Option<(GuestAddress, u64)>,
) -> Result<(), PvhError> {
    PvhBootConfigurator::write_bootparams(&boot_params(mem_bytes, initramfs), memory)
        .map_err(PvhError)
}

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestMemoryMmap};

    use super::*;
    use crate::engine::kvm::arch::x86_64::layout::FIRST_ADDR_PAST_32BITS;

    const MIB: u64 = 1 << 20;

    fn memory(size: u64) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), usize::try_from(size).unwrap())]).unwrap()
    }

    #[test]
    fn the_memory_map_skips_the_legacy_area_and_the_mmio_hole() {
        let map = memmap(64 * MIB);
        let ranges: Vec<_> = map.iter().map(|e| (e.addr, e.size, e.type_)).collect();
        assert_eq!(ranges, [(0, MPTABLE_START, 1), (HIMEM_START, 63 * MIB, 1)]);
        let big = memmap(4096 * MIB);
        assert_eq!(big.len(), 3);
        assert_eq!(big[1].addr + big[1].size, 0xd000_0000);
        assert_eq!(big[2].addr, FIRST_ADDR_PAST_32BITS);
        assert_eq!(big[2].size, 4096 * MIB - 0xd000_0000);
    }

    #[test]
    fn start_info_points_at_the_cmdline_memmap_and_initramfs() {
        let mem = memory(64 * MIB);
        let initramfs = (GuestAddress(60 * MIB), 123_456);
        write_boot_params(&mem, 64 * MIB, Some(initramfs)).unwrap();
        let info: hvm_start_info = mem.read_obj(GuestAddress(PVH_INFO_START)).unwrap();
        assert_eq!((info.magic, info.version), (XEN_HVM_START_MAGIC, 1));
        assert_eq!(info.cmdline_paddr, CMDLINE_START);
        assert_eq!((info.memmap_paddr, info.memmap_entries), (MEMMAP_START, 2));
        assert_eq!((info.nr_modules, info.modlist_paddr), (1, MODLIST_START));
        assert_eq!(info.rsdp_paddr, 0, "no ACPI");
        let module: hvm_modlist_entry = mem.read_obj(GuestAddress(MODLIST_START)).unwrap();
        assert_eq!((module.paddr, module.size), (60 * MIB, 123_456));
        let second: hvm_memmap_table_entry = mem.read_obj(GuestAddress(MEMMAP_START + 24)).unwrap();
        assert_eq!((second.addr, second.type_), (HIMEM_START, E820_RAM));
    }

    #[test]
    fn without_an_initramfs_there_are_no_modules() {
        let mem = memory(64 * MIB);
        write_boot_params(&mem, 64 * MIB, None).unwrap();
        let info: hvm_start_info = mem.read_obj(GuestAddress(PVH_INFO_START)).unwrap();
        assert_eq!((info.nr_modules, info.modlist_paddr), (0, 0));
    }

    #[test]
    fn writing_outside_guest_memory_fails() {
        let tiny = memory(0x1000);
        assert!(write_boot_params(&tiny, 64 * MIB, None).is_err());
    }
}
