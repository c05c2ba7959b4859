//! The guest-physical memory map of our VMs (Firecracker's, for a PVH guest).
//!
//! ```text
//! 0x0000_0500  boot GDT (4 entries)        0x0000_0520  boot IDT (empty)
//! 0x0000_6000  hvm_start_info              0x0000_6040  module list (the initramfs)
//! 0x0000_7000  E820-style memory map       0x0002_0000  kernel command line
//! 0x0009_fc00  MP table (last KiB of base memory, where Linux's MPPARSE looks)
//! 0x0010_0000  the kernel (its ELF says where: the test guest at 1 MiB, Linux at 16 MiB)
//!   …          the initramfs, at the top of low RAM
//! 0xd000_0000  MMIO hole to 4 GiB: virtio-mmio windows, IOAPIC 0xfec0_0000, LAPIC 0xfee0_0000
//! 4 GiB        the rest of RAM, if the VM has more than 3.25 GiB
//! ```

use vm_memory::GuestAddress;

/// Where the kernel may start: above the legacy first MiB.
pub const HIMEM_START: u64 = 0x10_0000;
/// The GDT the vCPUs boot with.
pub const BOOT_GDT_START: u64 = 0x500;
/// The (empty) IDT the vCPUs boot with.
pub const BOOT_IDT_START: u64 = 0x520;
/// `struct hvm_start_info`; `%ebx` points here at the PVH entry.
pub const PVH_INFO_START: u64 = 0x6000;
/// The PVH module list (one entry: the initramfs).
pub const MODLIST_START: u64 = 0x6040;
/// The PVH memory map.
pub const MEMMAP_START: u64 = 0x7000;
/// Most memory map entries we write (room up to the next page).
pub const MEMMAP_MAX_ENTRIES: usize = 0x1000 / 24;
/// The kernel command line, NUL-terminated.
pub const CMDLINE_START: u64 = 0x2_0000;
/// Longest command line (Linux's x86 `COMMAND_LINE_SIZE`), including the NUL.
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// The MP floating pointer and table.
pub const MPTABLE_START: u64 = 0x9_fc00;
/// Room for the MP table: up to the end of base memory at 640 KiB.
pub const MPTABLE_MAX_SIZE: usize = 0x400;

/// Start of the 32-bit MMIO hole (no RAM from here to 4 GiB).
pub const MMIO_HOLE_START: u64 = 0xd000_0000;
/// First address above 4 GiB.
pub const FIRST_ADDR_PAST_32BITS: u64 = 1 << 32;
/// Where virtio-mmio device windows are placed, one page each.
pub const VIRTIO_MMIO_START: u64 = MMIO_HOLE_START;
/// Size of one virtio-mmio window.
pub const VIRTIO_MMIO_WINDOW: u64 = 0x1000;
/// Room for virtio-mmio windows (below the IOAPIC).
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000_0000;
/// The IOAPIC's MMIO base (in-kernel irqchip).
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// The local APICs' MMIO base (in-kernel irqchip).
pub const APIC_START: u64 = 0xfee0_0000;
/// Three pages KVM needs for the TSS on Intel (`KVM_SET_TSS_ADDR`), in the hole.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;

/// First GSI for virtio-mmio devices (0–4 are the PIT, keyboard, cascade, COM2, COM1).
pub const IRQ_BASE: u32 = 5;
/// Last GSI: the IOAPIC has 24 pins.
pub const IRQ_MAX: u32 = 23;

/// Page size for placing the initramfs.
pub const PAGE_SIZE: u64 = 0x1000;

/// The RAM regions of a VM with `mem_bytes` of memory: everything below the MMIO hole,
/// and what does not fit there above 4 GiB.
pub fn ram_regions(mem_bytes: u64) -> Vec<(GuestAddress, u64)> {
    let low = mem_bytes.min(MMIO_HOLE_START);
    let mut regions = vec![(GuestAddress(0), low)];
    if mem_bytes > low {
        regions.push((GuestAddress(FIRST_ADDR_PAST_32BITS), mem_bytes - low));
    }
    regions
}

/// The end of RAM below 4 GiB, where the kernel and initramfs must fit.
pub fn low_ram_end(mem_bytes: u64) -> u64 {
    mem_bytes.min(MMIO_HOLE_START)
}

/// Where the boot files go, decided before anything is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootPlacement {
    /// The initramfs's address (page-aligned, at the top of low RAM), if there is one.
    pub initramfs: Option<GuestAddress>,
}

/// Why the boot files do not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The kernel image itself reaches past low RAM.
    #[error("guest memory too small: the kernel is loaded up to {} but the VM has {} of RAM below the MMIO hole", mib(*kernel_end), mib(*low_ram))]
    KernelTooBig {
        /// Where the kernel's last segment ends.
        kernel_end: u64,
        /// RAM below the MMIO hole.
        low_ram: u64,
    },
    /// Kernel and initramfs together do not fit.
    #[error("guest memory too small: the kernel (loaded up to {}) and the initramfs ({}) need {} of RAM below the MMIO hole but the VM has {}", mib(*kernel_end), mib(*initramfs_size), mib(*needed), mib(*low_ram))]
    InitramfsTooBig {
        /// Where the kernel's last segment ends.
        kernel_end: u64,
        /// The initramfs's size.
        initramfs_size: u64,
        /// What both need.
        needed: u64,
        /// RAM below the MMIO hole.
        low_ram: u64,
    },
}

/// A size in MiB for messages: whole numbers as such, others with one decimal.
fn mib(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        #[allow(clippy::cast_precision_loss)] // a message, sizes far below 2^52
        let value = bytes as f64 / MIB as f64;
        format!("{value:.1} MiB")
    }
}

/// Places the initramfs at the top of low RAM, above the kernel that ends at `kernel_end`.
pub fn place_boot_files(
    mem_bytes: u64,
    kernel_end: u64,
    initramfs_size: Option<u64>,
) -> Result<BootPlacement, PlacementError> {
    let low_ram = low_ram_end(mem_bytes);
    if kernel_end > low_ram {
        return Err(PlacementError::KernelTooBig {
            kernel_end,
            low_ram,
        });
    }
    let Some(size) = initramfs_size else {
        return Ok(BootPlacement { initramfs: None });
    };
    let too_big = || PlacementError::InitramfsTooBig {
        kernel_end,
        initramfs_size: size,
        needed: kernel_end.saturating_add(size),
        low_ram,
    };
    let start = low_ram.checked_sub(size).ok_or_else(too_big)? & !(PAGE_SIZE - 1);
    if start < kernel_end {
        return Err(too_big());
    }
    Ok(BootPlacement {
        initramfs: Some(GuestAddress(start)),
    })
}

/// The virtio-mmio window and GSI of the `index`th device, if there is room.
pub fn virtio_mmio_slot(index: usize) -> Option<(u64, u32)> {
    let index32 = u32::try_from(index).ok()?;
    let gsi = IRQ_BASE.checked_add(index32).filter(|g| *g <= IRQ_MAX)?;
    let offset = u64::from(index32) * VIRTIO_MMIO_WINDOW;
    (offset < VIRTIO_MMIO_SIZE).then_some((VIRTIO_MMIO_START + offset, gsi))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn small_vms_have_one_region_large_ones_continue_above_4_gib() {
        assert_eq!(ram_regions(64 * MIB), [(GuestAddress(0), 64 * MIB)]);
        assert_eq!(
            ram_regions(MMIO_HOLE_START),
            [(GuestAddress(0), MMIO_HOLE_START)]
        );
        assert_eq!(
            ram_regions(4096 * MIB),
            [
                (GuestAddress(0), MMIO_HOLE_START),
                (
                    GuestAddress(FIRST_ADDR_PAST_32BITS),
                    4096 * MIB - MMIO_HOLE_START
                )
            ]
        );
        let total: u64 = ram_regions(5000 * MIB).iter().map(|(_, s)| s).sum();
        assert_eq!(total, 5000 * MIB);
    }

    #[test]
    fn boot_structures_sit_below_the_kernel_and_do_not_overlap() {
        let areas = [
            (BOOT_GDT_START, 4 * 8),
            (BOOT_IDT_START, 8),
            (PVH_INFO_START, 56),
            (MODLIST_START, 32),
            (MEMMAP_START, (MEMMAP_MAX_ENTRIES * 24) as u64),
            (CMDLINE_START, CMDLINE_MAX_SIZE as u64),
            (MPTABLE_START, MPTABLE_MAX_SIZE as u64),
        ];
        for (i, (a, alen)) in areas.iter().enumerate() {
            assert!(a + alen <= HIMEM_START);
            for (b, blen) in &areas[i + 1..] {
                assert!(
                    a + alen <= *b || b + blen <= *a,
                    "{a:#x} and {b:#x} overlap"
                );
            }
        }
        assert_eq!(MPTABLE_START + MPTABLE_MAX_SIZE as u64, 0xa_0000);
    }

    #[test]
    fn the_mmio_hole_holds_the_devices_and_the_apics() {
        let (first, gsi) = virtio_mmio_slot(0).unwrap();
        assert_eq!((first, gsi), (0xd000_0000, 5));
        assert_eq!(virtio_mmio_slot(1), Some((0xd000_1000, 6)));
        assert_eq!(virtio_mmio_slot(18), Some((0xd001_2000, 23)));
        assert_eq!(virtio_mmio_slot(19), None, "out of IOAPIC pins");
        const {
            assert!(VIRTIO_MMIO_START + VIRTIO_MMIO_SIZE <= IOAPIC_START);
            assert!(IOAPIC_START < APIC_START && APIC_START < KVM_TSS_ADDRESS);
            assert!(KVM_TSS_ADDRESS + 3 * PAGE_SIZE <= FIRST_ADDR_PAST_32BITS);
        }
    }

    #[test]
    fn the_initramfs_goes_to_the_top_of_low_ram_page_aligned() {
        let placed = place_boot_files(64 * MIB, 2 * MIB, Some(MIB + 5)).unwrap();
        let at = placed.initramfs.unwrap().0;
        assert_eq!(at % PAGE_SIZE, 0);
        assert!(at + MIB + 5 <= 64 * MIB && at >= 62 * MIB - PAGE_SIZE);
        // Above the hole only low RAM counts.
        let placed = place_boot_files(8192 * MIB, 30 * MIB, Some(MIB)).unwrap();
        assert!(placed.initramfs.unwrap().0 + MIB <= MMIO_HOLE_START);
        assert_eq!(
            place_boot_files(64 * MIB, 2 * MIB, None).unwrap(),
            BootPlacement { initramfs: None }
        );
    }

    #[test]
    fn boot_files_too_big_for_memory_are_refused_with_their_sizes() {
        let err = place_boot_files(64 * MIB, 2 * MIB, Some(100 * MIB)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "guest memory too small: the kernel (loaded up to 2 MiB) and the initramfs \
             (100 MiB) need 102 MiB of RAM below the MMIO hole but the VM has 64 MiB"
        );
        let err = place_boot_files(64 * MIB, 63 * MIB, Some(MIB * 3 / 2)).unwrap_err();
        assert!(err.to_string().contains("initramfs (1.5 MiB)"), "{err}");
        // Exactly full is fine, one byte more is not.
        assert!(place_boot_files(64 * MIB, 60 * MIB, Some(4 * MIB)).is_ok());
        assert!(place_boot_files(64 * MIB, 60 * MIB, Some(4 * MIB + 1)).is_err());
        assert!(matches!(
            place_boot_files(64 * MIB, 65 * MIB, None),
            Err(PlacementError::KernelTooBig { .. })
        ));
    }
}
