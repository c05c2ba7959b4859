//! Boot markers: the guest writes one byte to [`PORT`] at each boot phase, and the host
//! timestamps it. Our VMM traps the port; under QEMU an `isa-debugcon` device on the same
//! port streams the bytes to us. The guest agent writes the same values
//! (`guest-agent/src/marker.rs`), and the test guest writes its own range.

use std::time::Instant;

use crate::devices::bus::BusDevice;

/// The I/O port markers are written to.
pub const PORT: u16 = 0xe9;

/// A boot marker value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Marker {
    /// The guest agent's `/init` started: the kernel's part of boot is over.
    AgentStarted,
    /// The agent mounted its file systems and is ready.
    AgentReady,
    /// The agent is powering off after a clean run.
    ShutdownClean,
    /// The agent failed (error or panic) and is resetting the VM.
    AgentFailed,
    /// The test guest started.
    TestGuestStarted,
    /// The test guest probed its devices.
    TestGuestProbed,
    /// The test guest is about to exit successfully.
    TestGuestDone,
    /// A value we do not know (reported, never trusted).
    Unknown(u8),
}

impl From<u8> for Marker {
    fn from(value: u8) -> Self {
        match value {
            0x10 => Self::AgentStarted,
            0x11 => Self::AgentReady,
            0x1e => Self::ShutdownClean,
            0x1f => Self::AgentFailed,
            0x20 => Self::TestGuestStarted,
            0x21 => Self::TestGuestProbed,
            0x2f => Self::TestGuestDone,
            other => Self::Unknown(other),
        }
    }
}

impl Marker {
    /// The byte the guest wrote.
    pub fn value(self) -> u8 {
        match self {
            Self::AgentStarted => 0x10,
            Self::AgentReady => 0x11,
            Self::ShutdownClean => 0x1e,
            Self::AgentFailed => 0x1f,
            Self::TestGuestStarted => 0x20,
            Self::TestGuestProbed => 0x21,
            Self::TestGuestDone => 0x2f,
            Self::Unknown(value) => value,
        }
    }

    /// A short name for output.
    pub fn name(self) -> &'static str {
        match self {
            Self::AgentStarted => "agent-started",
            Self::AgentReady => "agent-ready",
            Self::ShutdownClean => "shutdown-clean",
            Self::AgentFailed => "agent-failed",
            Self::TestGuestStarted => "test-guest-started",
            Self::TestGuestProbed => "test-guest-probed",
            Self::TestGuestDone => "test-guest-done",
            Self::Unknown(_) => "unknown",
        }
    }

    /// Whether the marker is the guest's final verdict on its run.
    pub fn is_verdict(self) -> bool {
        matches!(
            self,
            Self::ShutdownClean | Self::AgentFailed | Self::TestGuestDone
        )
    }
}

/// Markers in the order they arrived, with the host time of each.
#[derive(Clone, Debug, Default)]
pub struct MarkerLog {
    entries: Vec<(Marker, Instant)>,
}

impl MarkerLog {
    /// Records a marker seen now.
    pub fn record(&mut self, marker: Marker, at: Instant) {
        self.entries.push((marker, at));
    }

    /// When `marker` was first seen.
    pub fn first(&self, marker: Marker) -> Option<Instant> {
        self.entries
            .iter()
            .find(|(m, _)| *m == marker)
            .map(|(_, t)| *t)
    }

    /// The last verdict marker, if the guest gave one.
    pub fn verdict(&self) -> Option<Marker> {
        self.entries
            .iter()
            .rev()
            .map(|(m, _)| *m)
            .find(|m| m.is_verdict())
    }

    /// Every marker seen, in order.
    pub fn entries(&self) -> &[(Marker, Instant)] {
        &self.entries
    }
}

/// Where marker bytes go, with the host time each arrived.
pub type MarkerSink = Box<dyn Fn(u8, Instant) + Send + Sync>;

/// The marker port as a port-I/O bus device (the `kvm` engine's; under QEMU it is an
/// `isa-debugcon`). Every byte written is timestamped at once, on the vCPU thread that
/// trapped it. Reads return the port number, as QEMU's and Bochs' debug console do, so a
/// guest can tell the port is there.
pub struct BootMarkerDevice {
    sink: MarkerSink,
}

impl std::fmt::Debug for BootMarkerDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootMarkerDevice").finish_non_exhaustive()
    }
}

impl BootMarkerDevice {
    /// A device passing each byte to `sink`.
    pub fn new(sink: MarkerSink) -> Self {
        Self { sink }
    }
}

impl BusDevice for BootMarkerDevice {
    fn read(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0xe9);
    }

    fn write(&self, _offset: u64, data: &[u8]) {
        let at = Instant::now();
        for byte in data {
            (self.sink)(*byte, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_timestamps_every_byte_and_answers_reads() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&seen);
        let before = Instant::now();
        let device =
            BootMarkerDevice::new(Box::new(move |b, at| sink.lock().unwrap().push((b, at))));
        device.write(0, &[0x20]);
        device.write(0, &[0x21, 0x2f]);
        let seen = seen.lock().unwrap();
        let bytes: Vec<u8> = seen.iter().map(|(b, _)| *b).collect();
        assert_eq!(bytes, [0x20, 0x21, 0x2f]);
        assert!(seen.iter().all(|(_, at)| *at >= before));
        let mut byte = [0];
        device.read(0, &mut byte);
        assert_eq!(byte, [0xe9]);
    }

    #[test]
    fn decodes_known_values_and_keeps_unknown_ones() {
        assert_eq!(Marker::from(0x10), Marker::AgentStarted);
        assert_eq!(Marker::from(0x1e), Marker::ShutdownClean);
        assert_eq!(Marker::from(0x2f), Marker::TestGuestDone);
        assert_eq!(Marker::from(0x99), Marker::Unknown(0x99));
        for value in 0..=u8::MAX {
            assert_eq!(Marker::from(value).value(), value);
        }
        assert_eq!(Marker::TestGuestProbed.name(), "test-guest-probed");
    }

    #[test]
    fn the_last_verdict_wins_and_first_finds_the_earliest() {
        let t0 = Instant::now();
        let t1 = t0 + std::time::Duration::from_millis(5);
        let mut log = MarkerLog::default();
        assert_eq!(log.verdict(), None);
        log.record(Marker::AgentStarted, t0);
        log.record(Marker::AgentFailed, t0);
        log.record(Marker::AgentStarted, t1);
        log.record(Marker::ShutdownClean, t1);
        assert_eq!(log.verdict(), Some(Marker::ShutdownClean));
        assert_eq!(log.first(Marker::AgentStarted), Some(t0));
        assert_eq!(log.first(Marker::AgentReady), None);
    }
}
