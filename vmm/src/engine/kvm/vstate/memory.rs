//! Guest memory: anonymous private mappings (vm-memory `GuestMemoryMmap`), one per RAM
//! region of the layout. Nothing is touched until the guest or a loader writes it, so a
//! large VM costs only what it uses.

use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::VstateError;
use crate::engine::kvm::arch::x86_64::layout::ram_regions;

/// Maps `mem_bytes` of guest memory laid out as [`ram_regions`] says.
pub fn create_guest_memory(mem_bytes: u64) -> Result<GuestMemoryMmap, VstateError> {
    let error = |source| VstateError::Memory {
        size: mem_bytes,
        source,
    };
    let ranges: Vec<(GuestAddress, usize)> = ram_regions(mem_bytes)
        .into_iter()
        .map(|(start, size)| (start, usize::try_from(size).unwrap_or(usize::MAX)))
        .collect();
    GuestMemoryMmap::from_ranges(&ranges).map_err(error)
}

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestMemory, GuestMemoryRegion};

    use super::*;

    #[test]
    fn memory_follows_the_layout_and_is_not_touched_up_front() {
        let gib = 1u64 << 30;
        let memory = create_guest_memory(4 * gib).unwrap();
        let regions: Vec<_> = memory.iter().map(|r| (r.start_addr().0, r.len())).collect();
        assert_eq!(
            regions,
            [(0, 0xd000_0000), (1 << 32, 4 * gib - 0xd000_0000)]
        );
        memory.write_obj(0xabcd_u32, GuestAddress(1 << 32)).unwrap();
        assert!(
            memory.read_obj::<u32>(GuestAddress(0xd000_0000)).is_err(),
            "the hole"
        );
        let rss = std::fs::read_to_string("/proc/self/status").unwrap();
        let rss_kib: u64 = rss
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        assert!(
            rss_kib < 1 << 20,
            "4 GiB of guest memory made RSS {rss_kib} KiB"
        );
    }
}
