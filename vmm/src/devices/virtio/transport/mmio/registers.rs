//! The virtio-mmio register file, version 2 ("modern"): offsets and access directions of
//! virtio 1.2 §4.2.2 table 4.1, and the status and interrupt bits the transport uses
//! (§2.1, §4.2.2).

/// Size of one device's MMIO window: control registers, then device configuration.
pub const WINDOW_SIZE: u64 = 0x1000;
/// Offset of the device-specific configuration space within the window.
pub const CONFIG_OFFSET: u64 = 0x100;
/// The largest configuration space the window can show.
pub const CONFIG_SPACE_SIZE: u64 = WINDOW_SIZE - CONFIG_OFFSET;
/// Offset of QueueNotify: where the VMM attaches one ioeventfd per queue.
pub const QUEUE_NOTIFY_OFFSET: u64 = 0x050;

/// MagicValue: "virt" in little-endian ASCII.
pub const MAGIC_VALUE: u32 = 0x7472_6976;
/// Version: 2 is the modern (virtio 1.x) register layout; we offer no legacy transport.
pub const VERSION: u32 = 2;
/// VendorID: "s1kv" in little-endian ASCII, ours (QEMU's is "QEMU", 0x554d4551). Drivers
/// only report it.
pub const VENDOR_ID: u32 = 0x766b_3173;

/// Device status bits (§2.1). The driver sets the first four in order.
pub mod status {
    /// The guest noticed the device.
    pub const ACKNOWLEDGE: u32 = 0x01;
    /// The guest knows how to drive the device.
    pub const DRIVER: u32 = 0x02;
    /// The driver is set up and ready to drive the device.
    pub const DRIVER_OK: u32 = 0x04;
    /// The driver acknowledged the features it understands; negotiation is complete.
    pub const FEATURES_OK: u32 = 0x08;
    /// Set by the device: it hit an error it cannot recover from without a reset.
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    /// Set by the driver: it gave up on the device.
    pub const FAILED: u32 = 0x80;
}

/// InterruptStatus / InterruptACK bits (§4.2.2).
pub mod interrupt {
    /// A used buffer notification: some queue has new used buffers.
    pub const USED_BUFFER: u32 = 0x1;
    /// A configuration change notification (also sent on DEVICE_NEEDS_RESET).
    pub const CONFIG_CHANGE: u32 = 0x2;
}

/// One control register (all are 32 bits wide).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Register {
    /// 0x000 R.
    MagicValue,
    /// 0x004 R.
    Version,
    /// 0x008 R.
    DeviceId,
    /// 0x00c R.
    VendorId,
    /// 0x010 R: 32 feature bits of the page DeviceFeaturesSel selects.
    DeviceFeatures,
    /// 0x014 W.
    DeviceFeaturesSel,
    /// 0x020 W: 32 feature bits of the page DriverFeaturesSel selects.
    DriverFeatures,
    /// 0x024 W.
    DriverFeaturesSel,
    /// 0x030 W: the queue the Queue* registers refer to.
    QueueSel,
    /// 0x034 R: 0 if the selected queue does not exist.
    QueueNumMax,
    /// 0x038 W.
    QueueNum,
    /// 0x044 RW.
    QueueReady,
    /// 0x050 W: a queue index (no VIRTIO_F_NOTIFICATION_DATA).
    QueueNotify,
    /// 0x060 R.
    InterruptStatus,
    /// 0x064 W.
    InterruptAck,
    /// 0x070 RW.
    Status,
    /// 0x080 W.
    QueueDescLow,
    /// 0x084 W.
    QueueDescHigh,
    /// 0x090 W (the available ring).
    QueueDriverLow,
    /// 0x094 W.
    QueueDriverHigh,
    /// 0x0a0 W (the used ring).
    QueueDeviceLow,
    /// 0x0a4 W.
    QueueDeviceHigh,
    /// 0x0fc R.
    ConfigGeneration,
}

impl Register {
    /// The register at `offset`, if there is one. Registers we do not implement (legacy
    /// GuestPageSize/QueueAlign/QueuePFN, the shared memory and QueueReset registers of
    /// features we never offer) are unknown offsets.
    pub fn at(offset: u64) -> Option<Self> {
        Some(match offset {
            0x000 => Self::MagicValue,
            0x004 => Self::Version,
            0x008 => Self::DeviceId,
            0x00c => Self::VendorId,
            0x010 => Self::DeviceFeatures,
            0x014 => Self::DeviceFeaturesSel,
            0x020 => Self::DriverFeatures,
            0x024 => Self::DriverFeaturesSel,
            0x030 => Self::QueueSel,
            0x034 => Self::QueueNumMax,
            0x038 => Self::QueueNum,
            0x044 => Self::QueueReady,
            QUEUE_NOTIFY_OFFSET => Self::QueueNotify,
            0x060 => Self::InterruptStatus,
            0x064 => Self::InterruptAck,
            0x070 => Self::Status,
            0x080 => Self::QueueDescLow,
            0x084 => Self::QueueDescHigh,
            0x090 => Self::QueueDriverLow,
            0x094 => Self::QueueDriverHigh,
            0x0a0 => Self::QueueDeviceLow,
            0x0a4 => Self::QueueDeviceHigh,
            0x0fc => Self::ConfigGeneration,
            _ => return None,
        })
    }

    /// Whether the driver may read it (direction R or RW).
    pub fn readable(self) -> bool {
        matches!(
            self,
            Self::MagicValue
                | Self::Version
                | Self::DeviceId
                | Self::VendorId
                | Self::DeviceFeatures
                | Self::QueueNumMax
                | Self::QueueReady
                | Self::InterruptStatus
                | Self::Status
                | Self::ConfigGeneration
        )
    }

    /// Whether the driver may write it (direction W or RW).
    pub fn writable(self) -> bool {
        !self.readable() || matches!(self, Self::QueueReady | Self::Status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_register_is_at_its_offset_and_has_a_direction() {
        let mut found = 0;
        for offset in (0..CONFIG_OFFSET).step_by(4) {
            if let Some(register) = Register::at(offset) {
                found += 1;
                assert!(register.readable() || register.writable(), "{register:?}");
            }
        }
        assert_eq!(found, 23);
        assert_eq!(Register::at(0x050), Some(Register::QueueNotify));
        assert_eq!(Register::at(0x0fc), Some(Register::ConfigGeneration));
        // Legacy-only registers do not exist in version 2.
        for legacy in [0x028, 0x03c, 0x040] {
            assert_eq!(Register::at(legacy), None);
        }
        // Read-write registers are exactly QueueReady and Status.
        let rw: Vec<_> = (0..CONFIG_OFFSET)
            .step_by(4)
            .filter_map(Register::at)
            .filter(|r| r.readable() && r.writable())
            .collect();
        assert_eq!(rw, [Register::QueueReady, Register::Status]);
        assert!(!Register::QueueNotify.readable());
        assert!(!Register::QueueNumMax.writable());
    }

    #[test]
    fn ids_spell_their_names() {
        assert_eq!(&MAGIC_VALUE.to_le_bytes(), b"virt");
        assert_eq!(&VENDOR_ID.to_le_bytes(), b"s1kv");
    }
}
