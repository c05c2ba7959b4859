//! Local APIC set-up: LINT0 delivers the PIC's interrupts (ExtINT) and LINT1 NMIs, the
//! wiring of a PC that the MP table also describes (Firecracker's `set_lint`).

use kvm_bindings::kvm_lapic_state;

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn reg(state: &kvm_lapic_state, offset: usize) -> u32 {
    let mut bytes = [0u8; 4];
    for (b, r) in bytes.iter_mut().zip(&state.regs[offset..offset + 4]) {
        *b = r.to_ne_bytes()[0];
    }
    u32::from_le_bytes(bytes)
}

fn set_reg(state: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (r, b) in state.regs[offset..offset + 4]
        .iter_mut()
        .zip(value.to_le_bytes())
    {
        *r = i8::from_ne_bytes([b]);
    }
}

fn with_delivery_mode(lvt: u32, mode: u32) -> u32 {
    (lvt & !0x700) | (mode << 8)
}

/// `state` with LINT0 as ExtINT and LINT1 as NMI; everything else kept.
pub fn with_lint_modes(mut state: kvm_lapic_state) -> kvm_lapic_state {
    let lint0 = reg(&state, APIC_LVT0);
    set_reg(
        &mut state,
        APIC_LVT0,
        with_delivery_mode(lint0, APIC_MODE_EXTINT),
    );
    let lint1 = reg(&state, APIC_LVT1);
    set_reg(
        &mut state,
        APIC_LVT1,
        with_delivery_mode(lint1, APIC_MODE_NMI),
    );
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint0_is_extint_lint1_is_nmi_and_other_bits_stay() {
        let mut state = kvm_lapic_state::default();
        // Masked (bit 16), fixed delivery, vector 0x30; and a register next to them.
        set_reg(&mut state, APIC_LVT0, 0x0001_0030);
        set_reg(&mut state, APIC_LVT1, 0x0001_0400);
        set_reg(&mut state, 0x370, 0xdead_beef);
        let state = with_lint_modes(state);
        assert_eq!(reg(&state, APIC_LVT0), 0x0001_0730);
        assert_eq!(reg(&state, APIC_LVT1), 0x0001_0400);
        assert_eq!(reg(&state, 0x370), 0xdead_beef);
    }
}
