//! The exit port: a guest with no power-off path of its own (the test guest) ends the VM by
//! writing its result to [`PORT`], the port QEMU's `isa-debug-exit` device uses, so the
//! same guest ends cleanly under both. `0` is success, anything else a failure. Our VMM
//! reserves the port and handles the write in the vCPU, which stops the VM at once.

/// The exit port.
pub const PORT: u16 = 0xf4;
/// Ports it covers (QEMU's `iosize=4`).
pub const PORT_COUNT: u16 = 4;

/// The value of a write to the port: the bytes written, little-endian (an `outb` is one
/// byte, an `outl` four).
pub fn value(data: &[u8]) -> u32 {
    data.iter()
        .take(4)
        .rev()
        .fold(0, |acc, byte| (acc << 8) | u32::from(*byte))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_of_any_width_are_little_endian_values() {
        assert_eq!(value(&[0]), 0);
        assert_eq!(value(&[1]), 1);
        assert_eq!(value(&[0x34, 0x12]), 0x1234);
        assert_eq!(value(&[0, 0, 0, 0x80]), 0x8000_0000);
        assert_eq!(value(&[]), 0);
    }
}
