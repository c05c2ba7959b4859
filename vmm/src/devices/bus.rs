//! An address space of devices: the port I/O bus and the MMIO bus of the `kvm` engine.
//!
//! A vCPU exit on a port or an MMIO address is dispatched to the device whose range holds
//! the whole access, with the offset into that range. Ranges never overlap (inserting an
//! overlapping one is refused), and a range may be reserved for something that is not a
//! device (e.g. the exit port, which the vCPU handles itself) so that nothing is placed
//! there by mistake. An access nobody claims is reported to the caller, which answers it
//! like an empty bus: reads all-ones, writes ignored.

use std::collections::BTreeMap;
use std::sync::Arc;

/// A device on a bus. Accesses arrive from any vCPU thread, so a device handles its own
/// locking (an `impl BusDevice for Mutex<MyDevice>` is the usual way).
pub trait BusDevice: Send + Sync {
    /// A read of `data.len()` bytes at `offset` into the device's range.
    fn read(&self, offset: u64, data: &mut [u8]);
    /// A write of `data` at `offset` into the device's range.
    fn write(&self, offset: u64, data: &[u8]);
}

/// Why a range cannot be placed on a bus.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The range is empty or wraps around the address space.
    #[error("invalid bus range {base:#x}+{len:#x} for {name}")]
    InvalidRange {
        /// What was being placed.
        name: String,
        /// Start of the range.
        base: u64,
        /// Its length.
        len: u64,
    },
    /// The range overlaps one already on the bus.
    #[error("bus range {base:#x}+{len:#x} for {name} overlaps {other} at {other_base:#x}+{other_len:#x}")]
    Overlap {
        /// What was being placed.
        name: String,
        /// Start of the range.
        base: u64,
        /// Its length.
        len: u64,
        /// What is already there.
        other: String,
        /// Start of that range.
        other_base: u64,
        /// Its length.
        other_len: u64,
    },
}

struct Entry {
    len: u64,
    name: String,
    /// `None` for a reserved range.
    device: Option<Arc<dyn BusDevice>>,
}

/// Devices by address range.
#[derive(Default)]
pub struct Bus {
    /// Keyed by the start of each range.
    entries: BTreeMap<u64, Entry>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        for (base, entry) in &self.entries {
            list.entry(&format_args!(
                "{}@{base:#x}+{:#x}{}",
                entry.name,
                entry.len,
                if entry.device.is_none() {
                    " (reserved)"
                } else {
                    ""
                }
            ));
        }
        list.finish()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Places `device`, called `name` in errors, at `[base, base + len)`.
    pub fn insert(
        &mut self,
        name: &str,
        device: Arc<dyn BusDevice>,
        base: u64,
        len: u64,
    ) -> Result<(), BusError> {
        self.place(name, Some(device), base, len)
    }

    /// Reserves `[base, base + len)` for `name`: no device may be placed there, and
    /// accesses to it are not dispatched (the caller handles them before the bus).
    pub fn reserve(&mut self, name: &str, base: u64, len: u64) -> Result<(), BusError> {
        self.place(name, None, base, len)
    }

    fn place(
        &mut self,
        name: &str,
        device: Option<Arc<dyn BusDevice>>,
        base: u64,
        len: u64,
    ) -> Result<(), BusError> {
        let end = match base.checked_add(len) {
            Some(end) if len > 0 => end,
            _ => {
                return Err(BusError::InvalidRange {
                    name: name.to_owned(),
                    base,
                    len,
                })
            }
        };
        // The nearest range starting at or below `base`, and the first one above it.
        let below = self.entries.range(..=base).next_back();
        let above = self.entries.range(base..).find(|(b, _)| **b != base);
        let clash = below
            .filter(|(b, e)| **b + e.len > base)
            .or(above.filter(|(b, _)| **b < end));
        if let Some((other_base, other)) = clash {
            return Err(BusError::Overlap {
                name: name.to_owned(),
                base,
                len,
                other: other.name.clone(),
                other_base: *other_base,
                other_len: other.len,
            });
        }
        self.entries.insert(
            base,
            Entry {
                len,
                name: name.to_owned(),
                device,
            },
        );
        Ok(())
    }

    /// The device whose range holds `[addr, addr + len)`, and the offset into it.
    fn find(&self, addr: u64, len: usize) -> Option<(&dyn BusDevice, u64)> {
        let (base, entry) = self.entries.range(..=addr).next_back()?;
        let offset = addr - base;
        let len = u64::try_from(len).ok()?;
        let fits = offset.checked_add(len).is_some_and(|end| end <= entry.len);
        let device = entry.device.as_deref()?;
        fits.then_some((device, offset))
    }

    /// Dispatches a read; false if no device claims the whole access (`data` untouched).
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((device, offset)) => {
                device.read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Dispatches a write; false if no device claims the whole access.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((device, offset)) => {
                device.write(offset, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A device that records writes and answers reads with its offset.
    #[derive(Default)]
    pub(crate) struct Recorder {
        pub(crate) writes: Mutex<Vec<(u64, Vec<u8>)>>,
    }

    impl BusDevice for Recorder {
        fn read(&self, offset: u64, data: &mut [u8]) {
            data.fill(u8::try_from(offset).unwrap_or(0xee));
        }

        fn write(&self, offset: u64, data: &[u8]) {
            self.writes.lock().unwrap().push((offset, data.to_vec()));
        }
    }

    #[test]
    fn accesses_reach_the_device_with_their_offset() {
        let mut bus = Bus::new();
        let a = Arc::new(Recorder::default());
        let b = Arc::new(Recorder::default());
        bus.insert("a", a.clone(), 0x3f8, 8).unwrap();
        bus.insert("b", b.clone(), 0x1000, 0x1000).unwrap();
        let mut byte = [0u8];
        assert!(bus.read(0x3fd, &mut byte));
        assert_eq!(byte, [5]);
        assert!(bus.write(0x1070, &[1, 2, 3, 4]));
        assert_eq!(*b.writes.lock().unwrap(), [(0x70, vec![1, 2, 3, 4])]);
        assert!(a.writes.lock().unwrap().is_empty());
    }

    #[test]
    fn unknown_addresses_and_accesses_past_a_device_are_not_claimed() {
        let mut bus = Bus::new();
        let dev = Arc::new(Recorder::default());
        bus.insert("dev", dev.clone(), 0x1000, 0x100).unwrap();
        let mut word = [0xaa; 4];
        assert!(!bus.read(0xfff, &mut word[..1]));
        assert!(!bus.read(0x1100, &mut word));
        // Starts inside but ends past the range.
        assert!(!bus.read(0x10fe, &mut word));
        assert_eq!(
            word, [0xaa; 4],
            "an unclaimed read must not touch the buffer"
        );
        assert!(!bus.write(0x10fd, &[0; 4]));
        assert!(bus.write(0x10fc, &[0; 4]));
        assert!(!Bus::new().write(0, &[0]));
    }

    #[test]
    fn overlapping_ranges_are_refused_and_named() {
        let mut bus = Bus::new();
        let dev = Arc::new(Recorder::default());
        bus.insert("serial", dev.clone(), 0x3f8, 8).unwrap();
        for (base, len) in [
            (0x3f8, 1),
            (0x3f0, 9),
            (0x3ff, 4),
            (0x3fa, 2),
            (0x300, 0x200),
        ] {
            let err = bus.insert("other", dev.clone(), base, len).unwrap_err();
            assert!(
                matches!(&err, BusError::Overlap { other, .. } if other == "serial"),
                "{base:#x}+{len}: {err:?}"
            );
        }
        // Adjacent ranges are fine.
        bus.insert("below", dev.clone(), 0x3f0, 8).unwrap();
        bus.insert("above", dev.clone(), 0x400, 1).unwrap();
        let err = bus.insert("x", dev.clone(), 0x3f9, 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bus range 0x3f9+0x1 for x overlaps serial at 0x3f8+0x8"
        );
    }

    #[test]
    fn empty_and_wrapping_ranges_are_refused() {
        let mut bus = Bus::new();
        let dev = Arc::new(Recorder::default());
        assert!(matches!(
            bus.insert("empty", dev.clone(), 0x10, 0),
            Err(BusError::InvalidRange { .. })
        ));
        assert!(matches!(
            bus.insert("wrap", dev, u64::MAX, 2),
            Err(BusError::InvalidRange { .. })
        ));
    }

    #[test]
    fn reserved_ranges_refuse_devices_and_are_not_dispatched() {
        let mut bus = Bus::new();
        let dev = Arc::new(Recorder::default());
        bus.reserve("exit port", 0xf4, 4).unwrap();
        assert!(matches!(
            bus.insert("dev", dev, 0xf4, 1),
            Err(BusError::Overlap { other, .. }) if other == "exit port"
        ));
        assert!(!bus.write(0xf4, &[0]));
        assert!(format!("{bus:?}").contains("exit port@0xf4+0x4 (reserved)"));
    }
}
