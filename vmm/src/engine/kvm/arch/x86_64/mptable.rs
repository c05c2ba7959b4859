//! The Intel MultiProcessor Specification 1.4 table: how a guest without ACPI (ours: no
//! ACPI, Linux with `CONFIG_X86_MPPARSE`) finds its CPUs, the IOAPIC and the interrupt
//! routing. It lives in the last KiB of base memory, where Linux looks for the floating
//! pointer. Layout after Linux's `asm/mpspec_def.h` and Firecracker's `mptable.rs`: a
//! processor entry per vCPU (APIC ID = index, the first is the boot processor), one ISA
//! bus, the IOAPIC with its 24 pins, each ISA IRQ n routed to pin n, and the local APIC's
//! LINT0 as ExtINT (the PIC) and LINT1 as NMI.

use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::layout::{APIC_START, IOAPIC_START, IRQ_MAX, MPTABLE_MAX_SIZE, MPTABLE_START};

const MPF_SIGNATURE: &[u8; 4] = b"_MP_";
const MPC_SIGNATURE: &[u8; 4] = b"PCMP";
const MPC_SPEC: u8 = 4;
const MPC_OEM: &[u8; 8] = b"S1KVM   ";
const MPC_PRODUCT_ID: &[u8; 12] = b"000000000000";

const MP_PROCESSOR: u8 = 0;
const MP_BUS: u8 = 1;
const MP_IOAPIC: u8 = 2;
const MP_INTSRC: u8 = 3;
const MP_LINTSRC: u8 = 4;

const CPU_ENABLED: u8 = 1;
const CPU_BOOTPROCESSOR: u8 = 2;
/// Family 6 as the processor signature, FPU and APIC as its features.
const CPU_STEPPING: u32 = 0x600;
const CPU_FEATURE_FPU: u32 = 1;
const CPU_FEATURE_APIC: u32 = 1 << 9;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const MPC_APIC_USABLE: u8 = 1;

const MP_IRQ_INT: u8 = 0;
const MP_IRQ_NMI: u8 = 1;
const MP_IRQ_EXTINT: u8 = 3;

/// Sizes of the structures (Linux's `mpspec_def.h`).
const MPF_SIZE: usize = 16;
const MPC_HEADER_SIZE: usize = 44;

/// Why the table could not be written.
#[derive(Debug, thiserror::Error)]
pub enum MptableError {
    /// Too many vCPUs for the space below 640 KiB.
    #[error("an MP table for {vcpus} vCPUs needs {size} bytes, more than the {MPTABLE_MAX_SIZE} reserved")]
    TooBig {
        /// vCPUs asked for.
        vcpus: u8,
        /// Bytes needed.
        size: usize,
    },
    /// Guest memory refused the write.
    #[error("writing the MP table at {MPTABLE_START:#x}: {0}")]
    Write(vm_memory::GuestMemoryError),
}

/// The IOAPIC's ID: after the vCPUs' APIC IDs.
pub fn ioapic_id(vcpus: u8) -> u8 {
    vcpus.saturating_add(1)
}

/// The table for `vcpus` vCPUs, as it is placed at [`MPTABLE_START`]: the floating pointer,
/// then the configuration table.
pub fn mptable_bytes(vcpus: u8) -> Result<Vec<u8>, MptableError> {
    let ioapic = ioapic_id(vcpus);
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    for cpu in 0..vcpus {
        let flags = CPU_ENABLED | if cpu == 0 { CPU_BOOTPROCESSOR } else { 0 };
        entries.extend_from_slice(&[MP_PROCESSOR, cpu, APIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_STEPPING.to_le_bytes());
        entries.extend_from_slice(&(CPU_FEATURE_APIC | CPU_FEATURE_FPU).to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[MP_BUS, 0]);
    entries.extend_from_slice(b"ISA   ");
    entries.extend_from_slice(&[MP_IOAPIC, ioapic, IOAPIC_VERSION, MPC_APIC_USABLE]);
    entries.extend_from_slice(&u32::try_from(IOAPIC_START).unwrap_or(0).to_le_bytes());
    count += 2;
    for irq in 0..=u8::try_from(IRQ_MAX).unwrap_or(23) {
        // type, irqtype, irqflag (conforming polarity and trigger), bus, bus irq, IOAPIC,
        // its pin.
        entries.extend_from_slice(&[MP_INTSRC, MP_IRQ_INT, 0, 0, 0, irq, ioapic, irq]);
        count += 1;
    }
    // LINT0 of the boot processor is the PIC's ExtINT; LINT1 of every APIC (0xff) is NMI.
    entries.extend_from_slice(&[MP_LINTSRC, MP_IRQ_EXTINT, 0, 0, 0, 0, 0, 0]);
    entries.extend_from_slice(&[MP_LINTSRC, MP_IRQ_NMI, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let table_len = MPC_HEADER_SIZE + entries.len();
    let size = MPF_SIZE + table_len;
    if size > MPTABLE_MAX_SIZE {
        return Err(MptableError::TooBig { vcpus, size });
    }
    let table_addr =
        u32::try_from(MPTABLE_START).unwrap_or(0) + u32::try_from(MPF_SIZE).unwrap_or(0);

    let mut mpf = Vec::with_capacity(MPF_SIZE);
    mpf.extend_from_slice(MPF_SIGNATURE);
    mpf.extend_from_slice(&table_addr.to_le_bytes());
    // Length in 16-byte units, spec revision 1.4, checksum, no default configuration.
    mpf.extend_from_slice(&[1, MPC_SPEC, 0, 0, 0, 0, 0, 0]);
    mpf[10] = checksum(&mpf);

    let mut table = Vec::with_capacity(table_len);
    table.extend_from_slice(MPC_SIGNATURE);
    table.extend_from_slice(&u16::try_from(table_len).unwrap_or(0).to_le_bytes());
    table.extend_from_slice(&[MPC_SPEC, 0]);
    table.extend_from_slice(MPC_OEM);
    table.extend_from_slice(MPC_PRODUCT_ID);
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    table.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&u32::try_from(APIC_START).unwrap_or(0).to_le_bytes());
    table.extend_from_slice(&0u32.to_le_bytes()); // extended table length, checksum
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    mpf.extend_from_slice(&table);
    Ok(mpf)
}

/// The byte that makes `bytes` sum to zero (mod 256), with the checksum byte itself zero.
fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |sum, b| sum.wrapping_add(*b))
        .wrapping_neg()
}

/// Writes the table for `vcpus` vCPUs into guest memory.
pub fn write_mptable<M: GuestMemory>(memory: &M, vcpus: u8) -> Result<(), MptableError> {
    let bytes = mptable_bytes(vcpus)?;
    memory
        .write_slice(&bytes, GuestAddress(MPTABLE_START))
        .map_err(MptableError::Write)
}

#[cfg(test)]
mod tests {
    use vm_memory::GuestMemoryMmap;

    use super::*;

    const MPC_CPU_SIZE: usize = 20;
    const MPC_SMALL_ENTRY_SIZE: usize = 8;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
    }

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([b[at], b[at + 1]])
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    /// The entries of the table as (type, bytes).
    fn entries(bytes: &[u8]) -> Vec<&[u8]> {
        let mut rest = &bytes[MPF_SIZE + MPC_HEADER_SIZE..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let len = if rest[0] == MP_PROCESSOR {
                MPC_CPU_SIZE
            } else {
                MPC_SMALL_ENTRY_SIZE
            };
            out.push(&rest[..len]);
            rest = &rest[len..];
        }
        out
    }

    #[test]
    fn the_floating_pointer_and_table_have_valid_checksums_and_links() {
        for vcpus in [1, 2, 32] {
            let bytes = mptable_bytes(vcpus).unwrap();
            assert_eq!(&bytes[..4], MPF_SIGNATURE);
            assert_eq!(sum(&bytes[..MPF_SIZE]), 0);
            assert_eq!(u64::from(u32_at(&bytes, 4)), MPTABLE_START + 16);
            assert_eq!(bytes[9], 4, "spec 1.4");
            let table = &bytes[MPF_SIZE..];
            assert_eq!(&table[..4], MPC_SIGNATURE);
            assert_eq!(usize::from(u16_at(table, 4)), table.len());
            assert_eq!(sum(table), 0);
            assert_eq!(u64::from(u32_at(table, 36)), APIC_START);
            assert_eq!(usize::from(u16_at(table, 34)), entries(&bytes).len());
        }
    }

    #[test]
    fn every_vcpu_is_listed_with_the_first_as_boot_processor() {
        let bytes = mptable_bytes(4).unwrap();
        let cpus: Vec<_> = entries(&bytes)
            .into_iter()
            .filter(|e| e[0] == MP_PROCESSOR)
            .collect();
        assert_eq!(cpus.len(), 4);
        for (i, cpu) in cpus.iter().enumerate() {
            assert_eq!(usize::from(cpu[1]), i, "APIC ID");
            assert_eq!(cpu[3], if i == 0 { 3 } else { 1 });
        }
    }

    #[test]
    fn isa_irqs_go_to_the_ioapic_pins_of_the_same_number() {
        let bytes = mptable_bytes(2).unwrap();
        let all = entries(&bytes);
        let ioapic = all.iter().find(|e| e[0] == MP_IOAPIC).unwrap();
        assert_eq!(ioapic[1], ioapic_id(2));
        assert_eq!(u64::from(u32_at(ioapic, 4)), IOAPIC_START);
        let routes: Vec<_> = all.iter().filter(|e| e[0] == MP_INTSRC).collect();
        assert_eq!(routes.len(), 24);
        for (pin, route) in routes.iter().enumerate() {
            assert_eq!(
                (usize::from(route[5]), route[6], usize::from(route[7])),
                (pin, 3, pin)
            );
        }
        let lints: Vec<_> = all.iter().filter(|e| e[0] == MP_LINTSRC).collect();
        assert_eq!((lints[0][1], lints[0][7]), (MP_IRQ_EXTINT, 0));
        assert_eq!(
            (lints[1][1], lints[1][6], lints[1][7]),
            (MP_IRQ_NMI, 0xff, 1)
        );
    }

    #[test]
    fn the_largest_vm_fits_below_640_kib_and_is_written_there() {
        let bytes = mptable_bytes(32).unwrap();
        assert!(bytes.len() <= MPTABLE_MAX_SIZE);
        assert!(matches!(
            mptable_bytes(60),
            Err(MptableError::TooBig { vcpus: 60, .. })
        ));
        let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        write_mptable(&memory, 2).unwrap();
        let mut signature = [0u8; 4];
        memory
            .read_slice(&mut signature, GuestAddress(MPTABLE_START))
            .unwrap();
        assert_eq!(&signature, MPF_SIGNATURE);
    }
}
