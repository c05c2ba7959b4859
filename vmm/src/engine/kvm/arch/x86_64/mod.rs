//! x86_64: the memory layout, the PVH entry state (registers, GDT), CPUID, MSRs, the local
//! APIC wiring, the MP table and the PVH boot information.

pub mod cpuid;
pub mod gdt;
pub mod lapic;
pub mod layout;
pub mod mptable;
pub mod msr;
pub mod pvh;
pub mod regs;
