//! GDT entries and the KVM segment registers they describe (after Firecracker's
//! `arch/x86_64/gdt.rs`).

use kvm_bindings::kvm_segment;

/// A GDT entry from its flags (access byte and the granularity/size nibble, as
/// `0xGSAA`-style `flags`), base and limit.
pub fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((u64::from(base) & 0xff00_0000) << (56 - 24))
        | ((u64::from(flags) & 0x0000_f0ff) << 40)
        | ((u64::from(limit) & 0x000f_0000) << (48 - 16))
        | ((u64::from(base) & 0x00ff_ffff) << 16)
        | (u64::from(limit) & 0x0000_ffff)
}

fn base(entry: u64) -> u64 {
    ((entry & 0xff00_0000_0000_0000) >> 32)
        | ((entry & 0x0000_00ff_0000_0000) >> 16)
        | ((entry & 0x0000_0000_ffff_0000) >> 16)
}

/// The limit in bytes: with the granularity bit set the 20-bit limit counts 4 KiB pages.
fn limit(entry: u64) -> u32 {
    let raw = ((entry & 0x000f_0000_0000_0000) >> 32) | (entry & 0x0000_0000_0000_ffff);
    // 20 bits: always fits.
    let raw = u32::try_from(raw).unwrap_or(u32::MAX);
    if flag(entry, 55) == 1 {
        (raw << 12) | 0xfff
    } else {
        raw
    }
}

fn flag(entry: u64, bit: u32) -> u8 {
    u8::from(entry & (1 << bit) != 0)
}

/// The segment register state KVM takes for the descriptor `entry` at GDT slot
/// `table_index`.
pub fn kvm_segment_from_gdt(entry: u64, table_index: u8) -> kvm_segment {
    let present = flag(entry, 47);
    kvm_segment {
        base: base(entry),
        limit: limit(entry),
        selector: u16::from(table_index) * 8,
        // Bits 40..44: the 4-bit type.
        type_: u8::try_from((entry >> 40) & 0xf).unwrap_or(0),
        present,
        dpl: u8::try_from((entry >> 45) & 0x3).unwrap_or(0),
        db: flag(entry, 54),
        s: flag(entry, 44),
        l: flag(entry, 53),
        g: flag(entry, 55),
        avl: flag(entry, 52),
        padding: 0,
        unusable: u8::from(present == 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_32_bit_code_segment_decodes_as_such() {
        let entry = gdt_entry(0xc09b, 0, 0xffff_ffff);
        assert_eq!(entry, 0x00cf_9b00_0000_ffff);
        let seg = kvm_segment_from_gdt(entry, 1);
        assert_eq!(seg.selector, 0x08);
        assert_eq!((seg.base, seg.limit), (0, 0xffff_ffff));
        assert_eq!((seg.type_, seg.s, seg.present, seg.dpl), (0xb, 1, 1, 0));
        assert_eq!((seg.db, seg.l, seg.g, seg.unusable), (1, 0, 1, 0));
    }

    #[test]
    fn base_limit_and_flags_round_trip() {
        let entry = gdt_entry(0xa09b, 0x1234_5678, 0xabcde);
        let seg = kvm_segment_from_gdt(entry, 3);
        assert_eq!(seg.base, 0x1234_5678);
        assert_eq!(seg.limit, 0xabcd_efff, "4 KiB granularity");
        assert_eq!((seg.l, seg.db, seg.selector), (1, 0, 0x18));
        let byte_granular = kvm_segment_from_gdt(gdt_entry(0x008b, 0, 0x67), 3);
        assert_eq!((byte_granular.limit, byte_granular.type_), (0x67, 0xb));
        assert_eq!(byte_granular.s, 0, "a TSS is a system segment");
    }

    #[test]
    fn a_null_descriptor_is_unusable() {
        let seg = kvm_segment_from_gdt(0, 0);
        assert_eq!((seg.present, seg.unusable), (0, 1));
    }
}
